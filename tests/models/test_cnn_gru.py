"""CNN-GRU specifics: the clip feature is the GRU state at each clip's last real frame, and padded steps (at the end
or anywhere) neither update the state nor reach a real output: they carry it (classemo/models/cnn_gru.py)."""

from __future__ import annotations

import pytest
import torch

from classemo.models import create_model
from classemo.models.cnn_gru import CNNGRU

NUM_CLASSES = 4


def _model(**kwargs: object) -> CNNGRU:
    torch.manual_seed(0)
    return create_model("cnn_gru_tiny", num_classes=NUM_CLASSES, image_size=32, num_frames=4, **kwargs)


def _reference(model: CNNGRU, clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain nn.GRU on one unpadded clip (T, D) -> per-step outputs (T, H) and final state (H,)."""
    outputs, last = model.temporal.gru(clip.unsqueeze(0))
    return outputs[0], last[-1, 0]


def test_clip_feature_is_the_state_at_the_last_real_frame() -> None:
    model = _model().eval()
    lengths = [3, 1, 6, 2]
    mask = torch.arange(6).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, T)
    features = torch.randn(len(lengths), 6, model.embed_dim)
    features[~mask] = torch.randn(int((~mask).sum()), model.embed_dim) * 100  # garbage at padding
    with torch.no_grad():
        steps, last = model.temporal(features, mask)
        out = model.forward_temporal(features, mask)
        for b, n in enumerate(lengths):
            ref_steps, ref_last = _reference(model, features[b, :n])
            torch.testing.assert_close(last[b], ref_last, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(steps[b, :n], ref_steps, atol=1e-5, rtol=1e-4)
            # padded steps carry the last real state
            torch.testing.assert_close(steps[b, n:], ref_last.expand(6 - n, -1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["logits"], model.head(last))
    torch.testing.assert_close(out["frame_logits"], model.head(steps))
    torch.testing.assert_close(out["va"], torch.tanh(model.va_head(last)))


def test_the_gru_is_recurrent_so_frame_order_matters() -> None:
    model = _model().eval()
    features = torch.randn(1, 4, model.embed_dim)
    with torch.no_grad():
        forward = model.forward_temporal(features)["logits"]
        backward = model.forward_temporal(features.flip(1))["logits"]
    assert not torch.allclose(forward, backward, atol=1e-4)


@pytest.mark.parametrize("pattern", ["TFTTFF", "FFTFTT", "TFFFFT", "FTFTFT"])
def test_a_mask_that_is_not_a_prefix_skips_the_padded_steps(pattern: str) -> None:
    model = _model().eval()
    mask = torch.tensor([[c == "T" for c in pattern]])
    features = torch.randn(1, len(pattern), model.embed_dim)
    real = mask[0].nonzero().flatten()
    with torch.no_grad():
        steps, last = model.temporal(features, mask)
        ref_steps, ref_last = _reference(model, features[0, real])
    torch.testing.assert_close(last[0], ref_last, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(steps[0, real], ref_steps, atol=1e-5, rtol=1e-4)
    for t in range(len(pattern)):  # a padded step shows the state of the last real frame before it, or h_0 = 0
        if not mask[0, t]:
            before = real[real < t]
            expected = steps[0, before[-1]] if len(before) else torch.zeros_like(ref_last)
            torch.testing.assert_close(steps[0, t], expected)


def test_padding_is_invisible_in_training_mode_with_dropout_between_gru_layers() -> None:
    model = _model(drop_rate=0.5, num_layers=3).train()
    features = torch.randn(3, 4, model.embed_dim)
    mask = torch.tensor([[True, True, True, False], [True, False, False, False], [True] * 4])
    longer = torch.cat([features, torch.randn(3, 3, model.embed_dim) * 50], dim=1)
    longer_mask = torch.cat([mask, torch.zeros(3, 3, dtype=torch.bool)], dim=1)
    torch.manual_seed(3)
    a = model.forward_temporal(features, mask)
    torch.manual_seed(3)
    b = model.forward_temporal(longer, longer_mask)
    torch.manual_seed(4)
    c = model.forward_temporal(features, mask)
    for key in ("logits", "va"):
        torch.testing.assert_close(b[key], a[key])
    torch.testing.assert_close(b["frame_logits"][:, :4][mask], a["frame_logits"][mask])
    assert not torch.allclose(c["logits"], a["logits"]), "dropout is active in training mode"
