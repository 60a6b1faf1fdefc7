"""FAN specifics: self- and relation-attention weights over real frames only, the published weighted sums for f_v'
and f_v, and a clip of identical frames whose global feature is the frame's own (classemo/models/fan.py)."""

from __future__ import annotations

import numpy as np
import torch

from classemo.checkpoint import save_model_checkpoint
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.models.fan import FAN
from classemo.predictor import Predictor

NUM_CLASSES = 4


def _model(**kwargs: object) -> FAN:
    torch.manual_seed(0)
    return create_model("fan_tiny", num_classes=NUM_CLASSES, image_size=32, num_frames=4, **kwargs)


def _padded(model: FAN, lengths: list[int], num_frames: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.arange(num_frames).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, T)
    features = torch.randn(len(lengths), num_frames, model.embed_dim)
    features[~mask] = torch.randn(int((~mask).sum()), model.embed_dim) * 100  # garbage at padding
    return features, mask


def test_attention_weights_lie_in_0_1_vanish_at_padding_and_sum_to_1_over_real_frames() -> None:
    model = _model().eval()
    features, mask = _padded(model, [2, 5, 1, 3])
    with torch.no_grad():
        att = model.temporal(features, mask)
        weights = model.forward_temporal(features, mask)["frame_weights"]
    for key in ("alpha", "beta"):
        assert ((att[key] > 0) & (att[key] < 1))[mask].all(), key
        assert (att[key][~mask] == 0).all(), key
    assert (weights >= 0).all() and (weights <= 1).all()
    assert (weights[~mask] == 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(4))
    # the published ratio alpha_i beta_i / sum_j alpha_j beta_j
    product = att["alpha"] * att["beta"]
    torch.testing.assert_close(weights, product / product.sum(dim=1, keepdim=True))


def test_global_and_video_features_are_the_published_weighted_sums_over_real_frames() -> None:
    model = _model().eval()
    features, mask = _padded(model, [3, 1, 5])
    d = model.embed_dim
    with torch.no_grad():
        att = model.temporal(features, mask)
        out = model.forward_temporal(features, mask)
        for b, n in enumerate(mask.sum(dim=1).tolist()):
            f = features[b, :n]  # (n, D), real frames only
            alpha = torch.sigmoid(f @ model.temporal.q0.weight[0])  # (n,)
            global_feature = (alpha[:, None] * f).sum(0) / alpha.sum()  # f_v'
            pairs = torch.cat([f, global_feature.expand(n, d)], dim=-1)  # (n, 2D)
            beta = torch.sigmoid(pairs @ model.temporal.q1.weight[0])
            video = ((alpha * beta)[:, None] * pairs).sum(0) / (alpha * beta).sum()  # f_v
            torch.testing.assert_close(att["pairs"][b, :n], pairs, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(att["video"][b], video, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out["logits"][b], model.head(video), atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out["frame_logits"][b, :n], model.head(pairs), atol=1e-4, rtol=1e-4)


def test_a_clip_of_identical_frames_has_global_feature_equal_to_the_frame() -> None:
    model = _model().eval()
    image = torch.randn(1, 1, 3, 32, 32)
    frames = image.expand(1, 4, 3, 32, 32).contiguous()
    with torch.no_grad():
        features = model.forward_features(frames)  # (1, 4, D), identical rows
        att = model.temporal(features, torch.ones(1, 4, dtype=torch.bool))
        out = model(frames)
    d = model.embed_dim
    torch.testing.assert_close(att["pairs"][..., d:], att["pairs"][..., :d])  # f_v' = f_i
    torch.testing.assert_close(att["video"][0], att["pairs"][0, 0])
    torch.testing.assert_close(out["frame_weights"], torch.full((1, 4), 0.25))
    torch.testing.assert_close(out["frame_logits"][0], out["logits"].expand(4, -1))


def test_saturated_sigmoids_still_give_normalised_weights() -> None:
    model = _model().eval()
    with torch.no_grad():
        model.temporal.q0.weight.fill_(-1.0)  # alpha underflows to 0 in float32 for positive features
        features = torch.rand(2, 4, model.embed_dim) * 10 + 5
        mask = torch.tensor([[True, True, False, False], [True] * 4])
        att = model.temporal(features, mask)
        out = model.forward_temporal(features, mask)
    assert (torch.sigmoid(features @ model.temporal.q0.weight[0]) == 0).all(), "the naive ratio would be 0 / 0"
    assert all(torch.isfinite(v).all() for v in out.values())
    torch.testing.assert_close(att["weights"].sum(dim=1), torch.ones(2))
    assert (att["weights"][~mask] == 0).all()


def test_bf16_predictor_keeps_the_frame_attention_in_float32(tmp_path) -> None:
    model = _model().eval()
    path = save_model_checkpoint(model, tmp_path / "fan", labels=LabelSet(("happy", "sad", "anger", "neutral")))
    rng = np.random.default_rng(0)
    clips = [[rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n)] for n in (1, 3)]
    full = Predictor.from_checkpoint(path, device="cpu", dtype="float32").predict(clips)
    half = Predictor.from_checkpoint(path, device="cpu", dtype="bf16")
    assert next(half.model.temporal.parameters()).dtype == torch.float32
    for a, b in zip(full, half.predict(clips)):
        np.testing.assert_allclose(b.probs, a.probs, atol=0.05)
