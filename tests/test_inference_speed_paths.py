"""Fast inference paths keep their answers: bf16 vs fp32 agreement, dtype selection, and the video feature cache."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch

from classemo.data.transforms import frames_to_tensor, pad_clips
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.predictor import (
    CALIBRATION_MIN_SPEEDUP,
    ClipPrediction,
    Predictor,
    checkpoint_config,
    cpu_supports_bf16,
    resolve_dtype,
)

LABELS = LabelSet(("happy", "sad", "anger", "neutral"))
COLOURS = np.array([(230, 180, 40), (40, 80, 220), (220, 40, 40), (130, 130, 130)], np.float32)
ARCH = dict(image_size=32, patch_size=8, num_frames=4, embed_dim=64, depth=2, num_heads=2, num_clusters=4,
            temporal_heads=2, temporal_depth=1)
# Stated bf16 tolerances (docs/performance.md): top-1 agreement with fp32 >= 99% and every class / frame
# probability within 0.03 and V/A within 0.05 of fp32, on a trained model. bf16 keeps 8 mantissa bits (~0.4%
# relative per rounding); the temporal part and heads stay fp32, so the error is what the spatial features carry.
MIN_AGREEMENT, PROB_TOL, VA_TOL = 0.99, 0.03, 0.05


def _coloured_clips(n: int, seed: int, noise: float = 40.0) -> tuple[list[np.ndarray], np.ndarray]:
    """`n` clips of 1..4 frames: random textures tinted with their class colour (a learnable, non-trivial task)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(LABELS)
    clips = []
    for label in labels:
        length = int(rng.integers(1, ARCH["num_frames"] + 1))
        texture = rng.uniform(0, 255, size=(length, 32, 32, 3))
        tint = rng.uniform(0.25, 0.6)  # weak tints make some clips genuinely ambiguous
        frames = tint * COLOURS[label] + (1 - tint) * texture + rng.normal(0, noise, size=texture.shape)
        clips.append(np.clip(frames, 0, 255).astype(np.uint8))
    return clips, labels


@pytest.fixture(scope="module")
def trained() -> torch.nn.Module:
    """A small classemo_tiny trained for a few dozen steps: confident where the colour is clear, unsure elsewhere."""
    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=len(LABELS), **ARCH)
    clips, labels = _coloured_clips(48, seed=0)
    x, mask = pad_clips([frames_to_tensor(list(c), image_size=32) for c in clips], ARCH["num_frames"])
    y = torch.from_numpy(labels).long()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(x, mask)["logits"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _max_diff(a: Sequence[ClipPrediction], b: Sequence[ClipPrediction], field: str) -> float:
    return max(float(np.abs(np.asarray(getattr(p, field)) - np.asarray(getattr(q, field))).max()) for p, q in zip(a, b))


def test_bf16_agrees_with_fp32_on_a_trained_model(trained) -> None:
    config = checkpoint_config(trained, labels=LABELS)
    clips, labels = _coloured_clips(200, seed=1)  # held-out clips
    full = Predictor(trained, config, device="cpu", dtype="float32").predict(clips)
    half_predictor = Predictor(trained, config, device="cpu", dtype=torch.bfloat16)
    half = half_predictor.predict(clips)

    # The trained model is meaningful (not near-uniform), so agreement measures something.
    accuracy = np.mean([LABELS.names.index(p.label) == y for p, y in zip(full, labels)])
    assert accuracy >= 0.8, f"fp32 accuracy {accuracy:.2f}: the fixture model did not learn"
    assert np.median([p.probs.max() for p in full]) > 0.6
    # bf16 really ran: the spatial weights are bf16, the temporal part and heads fp32.
    assert half_predictor.model.backbone.vit.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in half_predictor.model.backbone.vit.patch_embed.parameters())
    assert half_predictor.model.head.weight.dtype == torch.float32
    assert next(trained.parameters()).dtype == torch.float32  # the caller's model was copied, not cast

    agreement = np.mean([a.label == b.label for a, b in zip(full, half)])
    assert agreement >= MIN_AGREEMENT, f"top-1 agreement {agreement:.3f}"
    assert _max_diff(full, half, "probs") <= PROB_TOL
    assert _max_diff(full, half, "frame_probs") <= PROB_TOL
    assert _max_diff(full, half, "frame_valence") <= VA_TOL
    assert max(abs(a.valence - b.valence) + abs(a.arousal - b.arousal) for a, b in zip(full, half)) <= VA_TOL
    assert _max_diff(full, half, "probs") > 0  # it is a different computation, not fp32 under another name


def test_bf16_batching_changes_results_only_within_tolerance(trained) -> None:
    config = checkpoint_config(trained, labels=LABELS)
    clips, _ = _coloured_clips(24, seed=2)
    one = Predictor(trained, config, device="cpu", dtype="bf16", batch_size=1).predict(clips)
    many = Predictor(trained, config, device="cpu", dtype="bf16", batch_size=24).predict(clips)
    assert _max_diff(one, many, "probs") <= PROB_TOL
    assert _max_diff(one, many, "frame_valence") <= VA_TOL


def test_auto_dtype_follows_the_cpu_flags_and_a_timing(tmp_path) -> None:
    with_bf16 = tmp_path / "bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    amx = tmp_path / "amx"
    amx.write_text("flags\t\t: fpu avx512f amx_tile amx_bf16\n")
    without = tmp_path / "plain"
    without.write_text("flags\t\t: fpu sse avx2 fma avx512f avx512bw\n")
    assert cpu_supports_bf16(with_bf16) and cpu_supports_bf16(amx) and not cpu_supports_bf16(without)

    cpu = torch.device("cpu")
    candidate = torch.bfloat16 if cpu_supports_bf16() else torch.float32
    assert resolve_dtype("auto", cpu) == candidate
    assert resolve_dtype("fp32", cpu) == torch.float32 and resolve_dtype(torch.bfloat16, cpu) == torch.bfloat16
    model = create_model("classemo_tiny", num_classes=len(LABELS), **ARCH)
    auto = Predictor(model, checkpoint_config(model, labels=LABELS), device="cpu")
    if candidate == torch.float32:
        assert auto.dtype == torch.float32 and auto.dtype_calibration is None
    else:  # bf16-capable CPU: "auto" keeps bf16 only where this model's spatial stream measured faster in it
        cal = auto.dtype_calibration
        assert cal["float32_ms"] > 0 and cal["bf16_ms"] > 0
        faster = cal["float32_ms"] >= CALIBRATION_MIN_SPEEDUP * cal["bf16_ms"]
        assert auto.dtype == (torch.bfloat16 if faster else torch.float32)
        assert cal["dtype"] == ("bf16" if faster else "float32")
        # Timed once per architecture and thread count: a second Predictor reuses the measurement.
        assert Predictor(model, checkpoint_config(model, labels=LABELS), device="cpu").dtype_calibration is cal
    assert Predictor(model, checkpoint_config(model, labels=LABELS), device="cpu", dtype="fp32").dtype_calibration \
        is None
    with pytest.raises(ValueError, match="unknown dtype 'half-ish'"):
        resolve_dtype("half-ish", cpu)
    with pytest.raises(ValueError, match="floating-point"):
        Predictor(model, checkpoint_config(model, labels=LABELS), device="cpu", dtype=torch.int8)


class RecordingPredictor(Predictor):
    """A real Predictor that also keeps what the video pipeline asked of it, to check the feature cache."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.crops: list[np.ndarray] = []
        self.features: list[np.ndarray] = []
        self.embed_calls = 0
        self.windows: list[np.ndarray] = []
        self.window_preds: list[ClipPrediction] = []

    def embed_frames(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        feats = super().embed_frames(frames)
        self.embed_calls += 1
        self.crops.extend(np.array(f) for f in frames)
        self.features.extend(feats)
        return feats

    def predict_features(self, seqs: Sequence[np.ndarray]) -> list[ClipPrediction]:
        preds = super().predict_features(seqs)
        self.windows.extend(np.array(s) for s in seqs)
        self.window_preds.extend(preds)
        return preds


def test_video_feature_cache_equals_recomputing_every_window(tmp_path: Path) -> None:
    from classemo.data.synth_classroom import make_classroom_video
    from classemo.video.pipeline import PROB_PREFIX, analyze_video

    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7)
    predictor = RecordingPredictor(model, checkpoint_config(model, labels=LabelSet.paper()), device="cpu",
                                   dtype="float32")
    video = tmp_path / "class.mp4"
    make_classroom_video(video, scenario="lively", num_students=3, seconds=2.4, fps=5, seed=3, size=(480, 270))
    res = analyze_video(video, predictor, out_dir=tmp_path / "out", fps=5, window=4, stride=1, progress=False,
                        embed_batch=8, teacher="none")

    detections = res.summary["analysis"]["face_detections"]
    assert len(res.tracks) >= 2, res.tracks  # a multi-track video
    # Each detected face is embedded exactly once, crops of several frames and tracks per call ...
    assert len(predictor.crops) == detections
    assert predictor.embed_calls < res.summary["analysis"]["frames_with_faces"]
    # ... while the overlapping windows (stride 1) use each frame's features several times.
    assert sum(len(w) for w in predictor.windows) > 2 * detections

    # Recompute every window from its crops through the full model and compare with the cached path.
    by_feature = {f.tobytes(): c for f, c in zip(predictor.features, predictor.crops)}
    clips = [[by_feature[row.tobytes()] for row in w] for w in predictor.windows]
    fresh = Predictor.predict(predictor, clips)
    for cached, again in zip(predictor.window_preds, fresh, strict=True):
        np.testing.assert_allclose(cached.probs, again.probs, atol=1e-5)
        np.testing.assert_allclose(cached.frame_probs, again.frame_probs, atol=1e-5)
        np.testing.assert_allclose([cached.valence, cached.arousal], [again.valence, again.arousal], atol=1e-5)
        np.testing.assert_allclose(cached.frame_valence, again.frame_valence, atol=1e-5)
        np.testing.assert_allclose(cached.frame_arousal, again.frame_arousal, atol=1e-5)
    # The timeline holds those cached predictions (one row per window of a kept track).
    cached_probs = np.stack([p.probs for p in predictor.window_preds])  # (W, C)
    timeline_probs = res.timeline[[f"{PROB_PREFIX}{n}" for n in predictor.labels]].to_numpy()  # (R, C)
    assert 0 < len(timeline_probs) <= len(cached_probs)
    assert np.abs(timeline_probs[:, None] - cached_probs[None]).max(-1).min(-1).max() < 1e-6


def test_compiled_spatial_stream_matches_eager() -> None:
    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=len(LABELS), **dict(ARCH, depth=1))
    config = checkpoint_config(model, labels=LABELS)
    clips, _ = _coloured_clips(6, seed=3)
    eager = Predictor(model, config, device="cpu", dtype="float32").predict(clips)
    compiled = Predictor(model, config, device="cpu", dtype="float32", compile=True)
    assert compiled.compiled
    got = compiled.predict(clips)
    assert _max_diff(eager, got, "probs") < 1e-4 and _max_diff(eager, got, "frame_valence") < 1e-4
