"""Inference precision (`classemo.precision`): bf16 agrees with fp32 within the stated tolerances, and "auto" picks
bf16 only where the CPU has it natively and it measures faster."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest
import torch

from classemo.checkpoint import checkpoint_config
from classemo.data.transforms import frames_to_tensor, pad_clips
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.precision import CALIBRATION_MIN_SPEEDUP, cpu_supports_bf16, fold_batchnorm, resolve_dtype
from classemo.predictor import ClipPrediction, Predictor

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


def test_folded_batchnorm_computes_the_same_spatial_features_and_leaves_the_model_as_it_was() -> None:
    torch.manual_seed(0)
    model = create_model("classemo_tiny", num_classes=7, image_size=32, num_frames=2, stem_depth=[1, 2],
                         embed_dim=32, depth=1, num_heads=2, num_clusters=4, temporal_depth=1, temporal_heads=2,
                         patch_size=4)
    for m in model.modules():  # running statistics as training leaves them, not BatchNorm's identity at init
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2), m.weight.data.uniform_(0.5, 2)
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    stem = list(folded.backbone.vit.patch_embed.proj)
    assert folded is not model and not any(isinstance(m, torch.nn.BatchNorm2d) for m in stem)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.backbone.vit.patch_embed.proj) == 3
    x = torch.randn(5, 3, 32, 32)
    with torch.inference_mode():
        want, got = model.forward_spatial(x)["features"], folded.forward_spatial(x)["features"]
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    no_bn = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    assert fold_batchnorm(no_bn) is no_bn
