"""`classemo evaluate`'s scorer: metrics on a dataset split, and a warning when the data's crops differ from the
model's."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from classemo.checkpoint import save_model_checkpoint
from classemo.evaluate import evaluate_dataset
from classemo.faces import FaceSettings
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.predictor import Predictor


def _checkpoint(directory: Path, face: FaceSettings | None) -> Path:
    import torch

    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7, image_size=32, num_frames=4)
    return save_model_checkpoint(model, directory, labels=LabelSet.paper(), face=face)


def test_scores_the_split_as_the_predictor_does(tiny_dataset: Path, tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    from classemo.data.format import read_split
    from classemo.data.transforms import decode_image

    ckpt = _checkpoint(tmp_path / "same", FaceSettings(size=32))  # the synthetic data records the default settings
    with caplog.at_level(logging.WARNING):
        out = evaluate_dataset(str(ckpt), str(tiny_dataset), split="test", device="cpu")
    assert "face crops made differently" not in caplog.text
    table = read_split(tiny_dataset, "test")
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    preds = predictor.predict([[decode_image(f) for f in frames] for frames in table.column("frames").to_pylist()])
    want = np.mean([p.label == lab for p, lab in zip(preds, table.column("label").to_pylist())])
    assert out["accuracy"] == pytest.approx(want) and out["split"] == "test" and out["labels"] == predictor.labels


def test_warns_when_the_data_was_cropped_differently(tiny_dataset: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    ckpt = _checkpoint(tmp_path / "haar", None)  # an old checkpoint: Haar, unaligned
    with caplog.at_level(logging.WARNING):
        evaluate_dataset(str(ckpt), str(tiny_dataset), split="val", device="cpu")
    assert "face crops made differently from the model's training crops" in caplog.text
    assert "detector: 'yunet' here vs 'haar' in training" in caplog.text


def test_batches_and_va_targets_do_not_change_the_numbers(tiny_dataset: Path, tmp_path: Path) -> None:
    """Slices of the split give the numbers of one pass; the V/A targets are the dataset's, NaN where missing."""
    from classemo.data.batches import clip_va, eval_frames
    from classemo.data.format import read_split

    ckpt = _checkpoint(tmp_path / "m", FaceSettings(size=32))
    whole = evaluate_dataset(str(ckpt), str(tiny_dataset), split="val", device="cpu", batch_size=64)
    parts = evaluate_dataset(str(ckpt), str(tiny_dataset), split="val", device="cpu", batch_size=3)
    for k in ("accuracy", "uar", "valence_rmse", "arousal_rmse", "num_samples"):
        assert parts[k] == pytest.approx(whole[k], nan_ok=True), k
    table = read_split(tiny_dataset, "val")
    predictor = Predictor.from_checkpoint(ckpt, device="cpu")
    preds = predictor.predict([eval_frames(f, predictor.num_frames) for f in table.column("frames").to_pylist()])
    va_true, va_pred = clip_va(table), np.array([[p.valence, p.arousal] for p in preds])
    annotated = np.array([s == "annotated" for s in table.column("va_source").to_pylist()])
    assert annotated.any()  # the synthetic data carries V/A
    rmse = float(np.sqrt(np.nanmean((va_pred[annotated, 0] - va_true[annotated, 0]) ** 2)))
    assert whole["valence_rmse"] == pytest.approx(rmse, rel=1e-4)


def test_the_command_logs_the_split_it_scored(tiny_dataset: Path, tmp_path: Path, mlflow_uri: str) -> None:
    import json

    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from classemo.cli import app
    from classemo.data.dataset import inspect_dataset, split_digest

    ckpt = _checkpoint(tmp_path / "m", FaceSettings(size=32))
    res = CliRunner().invoke(app, ["evaluate", "--model", str(ckpt), "--data", str(tiny_dataset), "--split", "val"])
    assert res.exit_code == 0, res.output
    client = MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name("classemo-evaluate")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([exp.experiment_id])
    (di,) = run.inputs.dataset_inputs
    assert [(t.key, t.value) for t in di.tags] == [("mlflow.data.context", "val")]
    assert di.dataset.digest == split_digest(inspect_dataset(str(tiny_dataset)), "val")
    assert json.loads(di.dataset.source) == {"uri": str(tiny_dataset)} and "val_accuracy" in run.data.metrics
    assert "val_ece" in run.data.metrics and "             ece: " in res.output


def test_calibrate_checkpoint_fits_the_split_and_the_predictor_applies_it(tiny_dataset: Path,
                                                                          tmp_path: Path) -> None:
    """The temperature is fitted on the split's clip logits through `Predictor`, written into config.json, and then
    read back: the same accuracy, the split's ECE as recorded."""
    from classemo.calibration import expected_calibration_error, fit_temperature
    from classemo.evaluate import calibrate_checkpoint, split_logits

    ckpt = _checkpoint(tmp_path / "m", FaceSettings(size=32))
    before = evaluate_dataset(str(ckpt), str(tiny_dataset), split="val", device="cpu")
    logits, targets = split_logits(Predictor.from_checkpoint(ckpt, device="cpu"), str(tiny_dataset), "val")
    record = calibrate_checkpoint(ckpt, str(tiny_dataset), split="val", device="cpu")
    assert record["fitted_on"] == "val" and record["num_clips"] == len(targets) == before["num_samples"]
    assert record["temperature"] == pytest.approx(fit_temperature(logits, targets))
    assert record["ece_before"] == pytest.approx(before["ece"], abs=1e-5)
    assert json.loads((ckpt / "config.json").read_text())["calibration"] == record
    after = evaluate_dataset(str(ckpt), str(tiny_dataset), split="val", device="cpu")
    assert Predictor.from_checkpoint(ckpt).temperature == record["temperature"]
    assert after["accuracy"] == before["accuracy"] and after["uar"] == before["uar"]
    assert after["ece"] == pytest.approx(record["ece_after"], abs=1e-5)
    probs = torch.from_numpy(logits / record["temperature"]).softmax(-1)
    assert after["ece"] == pytest.approx(expected_calibration_error(probs, targets), abs=1e-5)
    # Refitting starts from the model's own logits, not the calibrated ones: the same temperature.
    assert calibrate_checkpoint(ckpt, str(tiny_dataset), split="val", device="cpu") == pytest.approx(record)
    # A dataset without validation clips: nothing to fit on, the job keeps T = 1.
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    manifest["counts"]["val"] = 0
    (tmp_path / "no-val").mkdir()
    (tmp_path / "no-val" / "manifest.json").write_text(json.dumps(manifest))
    assert calibrate_checkpoint(ckpt, str(tmp_path / "no-val"), split="val") is None
