"""The paper's comparison models (Tables 1-2) against the clip-model contract (classemo.models.base).

Every model: builds through `create_model`, runs clips of every length 1..T (and mixed lengths in one padded batch),
returns the contract's outputs, is unchanged by padding, gets a gradient in every parameter, overfits a 16-clip
batch under the unified loss, and saves and reloads through `Predictor` with identical outputs. Model-specific
behaviour (FAN's attention weights, LBVCNN's fixed binary filters, ...) is tested in each model's own file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from classemo.checkpoint import save_model_checkpoint
from classemo.data.transforms import frames_to_tensor, pad_clips
from classemo.labels import LabelSet
from classemo.losses import UnifiedLoss
from classemo.models import create_model, list_models
from classemo.models.base import ClipModel
from classemo.predictor import Predictor

COMPARISON = ["cnn_gru_tiny", "lbvcnn_tiny", "convlstm_tiny", "fan_tiny"]
LARGER = ["cnn_gru_base", "lbvcnn_base", "convlstm_base", "fan_base"]  # GPU presets, built at a small input here
LABELS = LabelSet(("happy", "sad", "anger", "neutral"))
NUM_FRAMES = 4
SIZE = 32  # every test feeds 32 px crops so that the file runs in seconds on 2 cores


def _build(name: str, **kwargs: object) -> ClipModel:
    torch.manual_seed(0)
    return create_model(name, num_classes=len(LABELS), image_size=SIZE, num_frames=NUM_FRAMES, **kwargs)


def _clips(lengths: list[int], num_frames: int = NUM_FRAMES, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(len(lengths), num_frames, 3, SIZE, SIZE, generator=g)
    mask = torch.arange(num_frames).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, T) True = real
    frames[~mask] = 0.0
    return frames, mask


def test_the_four_comparison_models_and_their_gpu_presets_are_registered() -> None:
    assert set(COMPARISON + LARGER) <= set(list_models())


@pytest.mark.parametrize("name", COMPARISON + LARGER)
def test_forward_returns_the_contract_for_every_clip_length(name: str) -> None:
    model = _build(name).eval()
    assert isinstance(model, ClipModel) and model.model_name == name
    c, d = len(LABELS), model.embed_dim
    lengths = list(range(1, NUM_FRAMES + 1))
    frames, mask = _clips(lengths)
    with torch.no_grad():
        out = model(frames, mask)
        for t in lengths:  # each length alone, unpadded
            alone = model(frames[t - 1:t, :t])
            torch.testing.assert_close(alone["logits"], out["logits"][t - 1:t], atol=1e-5, rtol=1e-4)
    b = len(lengths)
    shapes = {"logits": (b, c), "va": (b, 2), "frame_logits": (b, NUM_FRAMES, c), "frame_va": (b, NUM_FRAMES, 2),
              "features": (b, NUM_FRAMES, d)}
    assert {k: tuple(out[k].shape) for k in shapes} == shapes
    for key in shapes:
        assert torch.isfinite(out[key]).all(), key
    assert out["va"].abs().max() <= 1 and out["frame_va"].abs().max() <= 1
    assert out.get("vit_logits") is None and out.get("vlad_logits") is None, "the paper's auxiliary heads are absent"
    assert model.default_cfg["image_size"] == SIZE and model.default_cfg["num_frames"] == NUM_FRAMES


@pytest.mark.parametrize("name", COMPARISON)
@pytest.mark.parametrize("train", [False, True])
def test_padding_changes_no_output(name: str, train: bool) -> None:
    model = _build(name).train(train)
    frames, mask = _clips([2, 3], num_frames=3)
    garbage = torch.cat([frames, torch.randn(2, 2, 3, SIZE, SIZE) * 10], dim=1)
    longer = torch.cat([mask, torch.zeros(2, 2, dtype=torch.bool)], dim=1)
    garbage[:, :3][~mask] = torch.randn_like(garbage[:, :3][~mask]) * 10
    torch.manual_seed(1)
    a = model(frames, mask)
    torch.manual_seed(1)
    b = model(garbage, longer)
    for key in ("logits", "va"):
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b["frame_logits"][:, :3][mask], a["frame_logits"][mask], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", COMPARISON)
def test_forward_is_spatial_then_temporal(name: str) -> None:
    model = _build(name).eval()
    frames, mask = _clips([3, 1])
    with torch.no_grad():
        out = model(frames, mask)
        feats = model.forward_features(frames, mask)
        temporal = model.forward_temporal(feats, mask)
        spatial = model.forward_spatial(frames[0, :3])
    torch.testing.assert_close(spatial["features"], out["features"][0, :3])
    for key in ("logits", "va", "frame_logits", "frame_va"):
        torch.testing.assert_close(temporal[key], out[key])


@pytest.mark.parametrize("name", COMPARISON)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = _build(name).train()
    frames, mask = _clips([3, 2, 4])
    out = model(frames, mask)
    loss = UnifiedLoss(lambda_va=1.0)(out, {"label": torch.tensor([0, 1, 2]), "va": torch.zeros(3, 2),
                                            "mask": mask})["total"]
    loss = loss + out["frame_logits"][mask].logsumexp(-1).mean() + out["frame_va"][mask].square().mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    zero = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0]
    assert not missing, f"no gradient: {missing}"
    assert not zero, f"zero gradient: {zero}"


def _synthetic_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """16 clips of fixed random textures tinted with their class colour, 1 to 4 frames each."""
    rng = np.random.default_rng(seed)
    colours = np.array([(230, 180, 40), (40, 80, 220), (220, 40, 40), (130, 130, 130)], np.float32)
    labels = np.arange(16) % len(LABELS)
    clips = []
    for label in labels:
        texture = rng.uniform(0, 255, size=(SIZE, SIZE, 3))
        frames = [np.clip(0.5 * colours[label] + 0.5 * texture + rng.normal(0, 12, texture.shape), 0, 255)
                  .astype(np.uint8) for _ in range(int(rng.integers(1, NUM_FRAMES + 1)))]
        clips.append(frames_to_tensor(frames, image_size=SIZE))
    x, mask = pad_clips(clips, NUM_FRAMES)
    va = torch.tensor([LABELS.default_va[LABELS.names[i]] for i in labels], dtype=torch.float32)
    return x, mask, torch.from_numpy(labels).long(), va


@pytest.mark.parametrize("name", COMPARISON)
def test_overfits_a_16_clip_batch_under_the_unified_loss(name: str) -> None:
    x, mask, label, va = _synthetic_batch()
    model = _build(name)
    loss_fn = UnifiedLoss(lambda_va=0.5)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    accuracy, first = 0.0, None
    for step in range(60):
        model.train()
        losses = loss_fn(model(x, mask), {"label": label, "va": va, "mask": mask})
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        first = first if first is not None else losses["total"].item()
        if step % 5 == 4:
            model.eval()
            with torch.no_grad():
                accuracy = float((model(x, mask)["logits"].argmax(-1) == label).float().mean())
            if accuracy == 1.0:
                break
    assert accuracy == 1.0, f"{name}: training accuracy {accuracy:.2f} after {step + 1} steps"
    assert losses["total"].item() < first


@pytest.mark.parametrize("name", COMPARISON)
def test_predictor_round_trip_gives_the_models_own_outputs(name: str, tmp_path) -> None:
    model = _build(name).eval()
    path = save_model_checkpoint(model, tmp_path / name, labels=LABELS)
    predictor = Predictor.from_checkpoint(path, device="cpu", dtype="float32")
    rng = np.random.default_rng(0)
    clips = [[rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)] for n in (1, 4, 2)]
    preds = predictor.predict(clips)
    x, mask = pad_clips([frames_to_tensor(c, image_size=SIZE) for c in clips], NUM_FRAMES)
    with torch.no_grad():
        out = model(x, mask)
    for b, (pred, n) in enumerate(zip(preds, (1, 4, 2))):
        np.testing.assert_allclose(pred.probs, out["logits"][b].softmax(-1).numpy(), atol=1e-5)
        np.testing.assert_allclose([pred.valence, pred.arousal], out["va"][b].numpy(), atol=1e-5)
        np.testing.assert_allclose(pred.frame_probs, out["frame_logits"][b, :n].softmax(-1).numpy(), atol=1e-5)
    # The video path embeds frames once and reruns only the temporal part: the same answer.
    feats = predictor.embed_frames(clips[1])
    again = predictor.predict_features([feats])[0]
    np.testing.assert_allclose(again.probs, preds[1].probs, atol=1e-5)
    # bf16 spatial part, float32 temporal part (`float32_modules`): runs, and stays near the float32 answer.
    bf16 = Predictor.from_checkpoint(path, device="cpu", dtype="bf16").predict(clips)
    for a, b in zip(bf16, preds):
        np.testing.assert_allclose(a.probs, b.probs, atol=0.05)


@pytest.mark.parametrize("name", COMPARISON)
def test_reset_classifier_and_bad_input(name: str) -> None:
    model = _build(name).eval()
    model.reset_classifier(3)
    frames, mask = _clips([2])
    with torch.no_grad():
        out = model(frames, mask)
    assert model.num_classes == 3 and out["logits"].shape == (1, 3) and out["frame_logits"].shape[-1] == 3
    with pytest.raises(ValueError, match=r"frames must have shape \(B, T, 3, 32, 32\)"):
        model(torch.randn(1, 2, 3, 16, 16))
    with pytest.raises(ValueError, match="no real frame"):
        model(torch.randn(2, 2, 3, SIZE, SIZE), torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="features must have shape"):
        model.forward_temporal(torch.randn(1, 2, model.embed_dim + 1))
