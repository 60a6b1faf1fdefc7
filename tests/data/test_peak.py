"""The one peak-frame rule: the annotated peak, the intensity fallback, and the decoders' use of it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from classemo.data.batches import DecodeFrames
from classemo.data.peak import intensity_peak_index, select_peak_index
from classemo.data.transforms import decode_image
from classemo.labels import LabelSet
from classemo.synth.clips import synth_clips
from classemo.synth.face import FaceIdentity
from classemo.synth.render import render_face


@pytest.fixture(scope="module")
def synth_rows() -> list[dict]:
    labels = LabelSet(("happy", "sad", "anger", "fear", "disgust"))  # no neutral: every clip has an apex
    return list(synth_clips(clips_per_class=3, num_frames=9, image_size=48, seed=3, subjects=6, labels=labels))


def test_annotated_peak_is_used(synth_rows: list[dict]) -> None:
    for row in synth_rows:
        frames = [decode_image(b) for b in row["frames"]]
        assert select_peak_index(frames, row["peak_index"]) == row["peak_index"]


def _posed_clip(expression: str, apex: int, seed: int, num_frames: int = 9) -> list[np.ndarray]:
    """A clip with a known apex: one identity, camera and pose; the intensity rises to 1 at `apex` and falls."""
    ident = FaceIdentity.random(np.random.default_rng([seed, 0]), f"s{seed}")
    noise = np.random.default_rng([seed, 1])
    frames = []
    for t in range(num_frames):
        intensity = float(np.exp(-0.5 * ((t - apex) / 1.5) ** 2))
        # The same nuisance seed every frame: a static camera and head, as in posed-expression datasets.
        img = render_face(ident, expression, intensity, size=48, rng=np.random.default_rng([seed, 2]), jitter=0.5)
        frames.append(np.clip(img + noise.normal(0, 3.0, img.shape), 0, 255).astype(np.uint8))  # sensor noise
    return frames


def test_intensity_rule_finds_the_apex_within_one_frame() -> None:
    cases = [(expr, apex, seed) for seed, (expr, apex) in enumerate(
        (e, a) for e in ("happy", "sad", "anger", "fear", "disgust", "positive") for a in (3, 5, 7))]
    errors = [abs(select_peak_index(_posed_clip(expr, apex, seed), None) - apex) for expr, apex, seed in cases]
    assert max(errors) <= 1, f"intensity rule misses the apex by {errors}"


def test_out_of_range_peak_index_falls_back_to_the_rule(synth_rows: list[dict], caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    frames = [decode_image(b) for b in synth_rows[0]["frames"]]
    with caplog.at_level(logging.WARNING, logger="classemo.data.peak"):
        assert select_peak_index(frames, 99) == intensity_peak_index(frames)
    assert "outside a clip of 9 frames" in caplog.text
    with pytest.raises(ValueError, match="empty clip"):
        intensity_peak_index([])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        intensity_peak_index([np.zeros((8, 8), np.uint8)])


def test_encoded_frames_are_decoded_only_for_the_fallback(synth_rows: list[dict]) -> None:
    row = synth_rows[1]
    assert select_peak_index(row["frames"], row["peak_index"]) == row["peak_index"]
    decoded = [decode_image(b) for b in row["frames"]]
    assert select_peak_index(row["frames"], None) == intensity_peak_index(decoded)


def test_the_decoders_use_the_rule(synth_rows: list[dict]) -> None:
    import pyarrow as pa

    rows = pa.Table.from_pylist([{"frames": r["frames"], "peak_index": r["peak_index"], "label_idx": r["label_idx"],
                                  "valence": None, "arousal": None, "va_source": None} for r in synth_rows[:3]])
    out = DecodeFrames(image_size=24)(rows)
    assert list(out["peak_index"]) == [r["peak_index"] for r in synth_rows[:3]]
    assert list(out["va_source"]) == [2, 2, 2] and np.isnan(out["va"]).all()  # missing V/A: "none", NaN
