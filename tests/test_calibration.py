"""Temperature scaling and ECE on synthetic logits with a known answer; `Predictor` applies a checkpoint's temperature
(softer probabilities, the same labels) and refuses a bad one."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from classemo.calibration import expected_calibration_error, fit_calibration, fit_temperature, plot_reliability
from classemo.checkpoint import CheckpointError, checkpoint_config, save_model_checkpoint, write_calibration
from classemo.labels import LabelSet
from classemo.metrics import MetricAccumulator
from classemo.models import create_model
from classemo.predictor import Predictor

LABELS = LabelSet(("happy", "sad", "neutral"))
SMALL = dict(image_size=32, patch_size=8, num_frames=4, embed_dim=32, depth=1, num_heads=2, num_clusters=4,
             temporal_heads=2, temporal_depth=1)


def _calibrated_set(n: int = 6000, num_classes: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, num_classes, generator=g, dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)
    return logits, labels


def test_fit_recovers_a_known_temperature() -> None:
    logits, labels = _calibrated_set()
    assert fit_temperature(3 * logits, labels) == pytest.approx(3.0, rel=0.1)  # over-confident by 3x
    assert fit_temperature(logits / 2, labels.numpy()) == pytest.approx(0.5, rel=0.1)  # under-confident
    assert fit_temperature(logits, labels) == pytest.approx(1.0, rel=0.1)
    assert fit_temperature(3 * logits, labels) == fit_temperature(3 * logits, labels)  # deterministic


def test_soft_targets_work() -> None:
    logits, _ = _calibrated_set()
    votes = logits.softmax(-1)  # the true distribution itself: the NLL minimum is at exactly T = 3 for 3x logits
    assert fit_temperature(3 * logits, votes) == pytest.approx(3.0, rel=0.02)
    labels = votes.argmax(-1)
    assert expected_calibration_error(votes, votes) == pytest.approx(expected_calibration_error(votes, labels))
    with pytest.raises(ValueError, match="sum to 1"):
        fit_temperature(logits, votes * 2)


def test_ece_is_small_when_calibrated_and_large_when_over_confident() -> None:
    logits, labels = _calibrated_set()
    assert expected_calibration_error(logits.softmax(-1), labels) < 0.03
    assert expected_calibration_error((4 * logits).softmax(-1), labels) > 0.15
    # By hand on four samples, 2 bins: confidences 0.9, 0.8 (right, wrong) in [0.5, 1), 0.4, 0.4 (both right) below.
    probs = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1], [0.4, 0.3, 0.3], [0.3, 0.4, 0.3]])
    want = 0.5 * abs(0.5 - 0.85) + 0.5 * abs(1.0 - 0.4)
    assert expected_calibration_error(probs, [0, 2, 0, 1], num_bins=2) == pytest.approx(want)


def test_fit_calibration_records_the_split_and_improves_it() -> None:
    logits, labels = _calibrated_set(seed=1)
    record = fit_calibration(3 * logits, labels, fitted_on="val")
    assert record["method"] == "temperature" and record["fitted_on"] == "val" and record["num_clips"] == 6000
    assert record["ece_after"] < 0.03 < 0.15 < record["ece_before"]
    assert plot_reliability((3 * logits).softmax(-1), labels)[:8] == b"\x89PNG\r\n\x1a\n"


def test_empty_or_broken_input_raises() -> None:
    with pytest.raises(ValueError, match="N >= 1"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="N >= 1"):
        expected_calibration_error(np.zeros((0, 3)), np.zeros(0, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.full((2, 3), np.nan), [0, 1])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        fit_temperature(np.zeros((2, 3)), [0, 3])
    with pytest.raises(ValueError, match="3 samples"):
        fit_temperature(np.zeros((2, 3)), [0, 1, 2])


def test_the_metric_accumulator_reports_ece() -> None:
    logits, labels = _calibrated_set()
    acc = MetricAccumulator(5)
    acc.update((4 * logits[:3000]).float(), labels[:3000])  # logits: softmaxed by the accumulator
    acc.update((4 * logits[3000:]).softmax(-1), labels[3000:])  # probabilities: kept
    want = expected_calibration_error((4 * logits).softmax(-1), labels)
    assert acc.compute()["ece"] == pytest.approx(want, abs=1e-5) and want > 0.15


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("classemo_tiny", num_classes=len(LABELS), **SMALL).eval()


def _clips() -> list[list[np.ndarray]]:
    rng = np.random.default_rng(0)
    return [[rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(n)] for n in (1, 4, 2, 3)]


def test_predictor_applies_the_checkpoint_temperature(model, tmp_path) -> None:
    plain = Predictor(model, checkpoint_config(model, labels=LABELS), device="cpu", dtype="float32")
    assert plain.temperature == 1.0
    path = save_model_checkpoint(model, tmp_path / "ckpt", labels=LABELS)
    write_calibration(path, {"method": "temperature", "temperature": 3.0, "fitted_on": "val", "num_clips": 10})
    assert json.loads((path / "config.json").read_text())["calibration"]["temperature"] == 3.0
    calibrated = Predictor.from_checkpoint(path, device="cpu", dtype="float32")
    assert calibrated.temperature == 3.0
    for a, b in zip(plain.predict(_clips()), calibrated.predict(_clips())):
        assert a.label == b.label and a.probs.argmax() == b.probs.argmax()
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-6)  # the logits are the model's own, before T
        np.testing.assert_allclose(b.probs, torch.from_numpy(a.logits / 3.0).softmax(-1).numpy(), atol=1e-6)
        assert b.probs.max() < a.probs.max() and b.probs.min() > a.probs.min()  # softer
        assert (b.frame_probs.max(1) < a.frame_probs.max(1)).all()
        np.testing.assert_array_equal(a.frame_probs.argmax(1), b.frame_probs.argmax(1))


@pytest.mark.parametrize("bad", [0.0, -1.5, math.inf, math.nan, "warm", None])
def test_a_bad_temperature_is_a_checkpoint_error(model, bad) -> None:
    config = {**checkpoint_config(model, labels=LABELS), "calibration": {"method": "temperature", "temperature": bad}}
    with pytest.raises(CheckpointError, match=f"temperature must be a finite number > 0, got {bad!r}"):
        Predictor(model, config, device="cpu")
    with pytest.raises(CheckpointError, match="method 'temperature'"):
        Predictor(model, {**config, "calibration": {"method": "isotonic"}}, device="cpu")
