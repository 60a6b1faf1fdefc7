"""The unified model, parametrised over the registry: shapes, padding, gradients, determinism, switches.

The learning test (classemo_tiny overfits a batch under the unified loss) lives in test_learning.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from classemo.models import create_model, list_models
from classemo.models.classemo_net import ClassEmoNet

NUM_CLASSES = 5
PRESETS = list_models("classemo_")
# classemo_tiny runs as registered; the larger presets keep their widths and depths but see small images.
SMALL_INPUT = {"classemo_tiny": {}, "classemo_small": {"image_size": 32}, "classemo_base": {"image_size": 32}}


def _build(name: str, **kwargs: object) -> ClassEmoNet:
    torch.manual_seed(0)
    return create_model(name, num_classes=NUM_CLASSES, **dict(SMALL_INPUT[name], **kwargs))


def _clips(model: ClassEmoNet, lengths: list[int], num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    s = model.image_size
    frames = torch.randn(len(lengths), num_frames, 3, s, s)
    mask = torch.arange(num_frames).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)  # (B, T) True = real
    frames[~mask] = 0.0
    return frames, mask


def test_registry_lists_the_three_presets() -> None:
    assert {"classemo_tiny", "classemo_small", "classemo_base"} <= set(PRESETS)
    assert set(PRESETS) <= set(SMALL_INPUT), "add new presets to SMALL_INPUT so they are tested"
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        create_model("nope")


@pytest.mark.parametrize("name", PRESETS)
def test_forward_shapes_with_padding_and_no_nan(name: str) -> None:
    model = _build(name).eval()
    frames, mask = _clips(model, [4, 2, 1], num_frames=4)
    with torch.no_grad():
        out = model(frames, mask)
    d, c = model.embed_dim, NUM_CLASSES
    expected = {
        "logits": (3, c), "va": (3, 2), "frame_logits": (3, 4, c), "frame_va": (3, 4, 2),
        "vit_logits": (3, 4, c), "vlad_logits": (3, 4, c), "peak_logits": (3, 4, c), "features": (3, 4, d),
    }
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    for key, value in out.items():
        assert torch.isfinite(value).all(), key
    assert out["va"].abs().max() <= 1 and out["frame_va"].abs().max() <= 1
    assert model.default_cfg == {
        "image_size": model.image_size, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
        "num_frames": model.num_frames,
    }


@pytest.mark.parametrize("name", PRESETS)
def test_every_parameter_gets_a_gradient(name: str) -> None:
    model = _build(name).train()
    # The non-local output BN starts at 0 (identity block), which blocks gradients to phi/rho/h by design;
    # open it so the test can see that every weight is wired to the outputs.
    for module in model.modules():
        if hasattr(module, "phi"):
            torch.nn.init.constant_(module.out[1].weight, 0.5)
    frames, mask = _clips(model, [3, 2], num_frames=3)
    out = model(frames, mask)
    target = torch.tensor([0, 1])
    real = mask.reshape(-1)
    loss = (
        F.cross_entropy(out["logits"], target)
        + out["va"].square().mean()
        + out["frame_logits"].reshape(-1, NUM_CLASSES)[real].logsumexp(-1).mean()
        + out["frame_va"].reshape(-1, 2)[real].square().mean()
        + out["vit_logits"].reshape(-1, NUM_CLASSES)[real].logsumexp(-1).mean()
        + out["vlad_logits"].reshape(-1, NUM_CLASSES)[real].logsumexp(-1).mean()
        + model.forward_peak(frames[0, :2]).logsumexp(-1).mean()
    )
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    zero = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() == 0]
    assert not missing, f"no gradient: {missing}"
    assert not zero, f"zero gradient: {zero}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", PRESETS)
def test_eval_is_deterministic_and_padding_does_not_change_outputs(name: str) -> None:
    model = _build(name).eval()
    frames, mask = _clips(model, [3], num_frames=3)
    with torch.no_grad():
        first, second = model(frames, mask), model(frames, mask)
        padded = torch.cat([frames, torch.randn(1, 2, *frames.shape[2:]) * 3], dim=1)
        padded_out = model(padded, torch.tensor([[True, True, True, False, False]]))
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)
    torch.testing.assert_close(padded_out["logits"], first["logits"])
    torch.testing.assert_close(padded_out["va"], first["va"])
    torch.testing.assert_close(padded_out["frame_logits"][:, :3], first["frame_logits"])


def test_padding_is_invariant_in_training_mode_too() -> None:
    # Padded frames skip the spatial stream, so they never enter BatchNorm statistics.
    model = _build("classemo_tiny").train()
    frames, mask = _clips(model, [2, 3], num_frames=3)
    garbage = frames.clone()
    garbage[~mask] = torch.randn_like(garbage[~mask]) * 10
    torch.manual_seed(1)
    a = model(frames, mask)["logits"]
    torch.manual_seed(1)
    b = model(garbage, mask)["logits"]
    torch.testing.assert_close(a, b)


def test_forward_is_spatial_then_temporal() -> None:
    model = _build("classemo_tiny").eval()
    frames, mask = _clips(model, [3, 1], num_frames=3)
    with torch.no_grad():
        out = model(frames, mask)
        feats = model.forward_features(frames, mask)
        temporal = model.forward_temporal(feats, mask)
        spatial = model.forward_spatial(frames[0])
        peak = model.forward_peak(frames[0])
        pooled = model.forward_head(feats, mask, pre_logits=True)
    torch.testing.assert_close(feats, out["features"])
    for key in ("logits", "va", "frame_logits", "frame_va"):
        torch.testing.assert_close(temporal[key], out[key])
    torch.testing.assert_close(spatial["features"], out["features"][0])
    torch.testing.assert_close(spatial["vit_logits"], out["vit_logits"][0])
    torch.testing.assert_close(peak, spatial["peak_logits"])
    assert pooled.shape == (2, model.embed_dim)
    torch.testing.assert_close(model.forward_head(feats, mask), out["logits"])
    assert torch.all(out["features"][1, 1:] == 0), "padded frames carry zero features"


@pytest.mark.parametrize(
    "switch", ["use_netvlad", "use_residual_attention", "use_non_local", "use_temporal"]
)
def test_each_switch_turns_its_component_off(switch: str) -> None:
    model = _build("classemo_tiny", **{switch: False}).eval()
    component = {"use_netvlad": "netvlad", "use_residual_attention": "residual_attention",
                 "use_non_local": "non_local", "use_temporal": "temporal"}[switch]
    assert getattr(model, component) is None
    frames, mask = _clips(model, [2, 3], num_frames=3)
    with torch.no_grad():
        out = model(frames, mask)
    assert out["logits"].shape == (2, NUM_CLASSES)
    assert (out["vlad_logits"] is None) == (switch == "use_netvlad")
    if switch == "use_temporal":
        # Without the temporal encoder the clip is the masked mean of frame features.
        feats = out["features"]
        mean = (feats * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        torch.testing.assert_close(out["logits"], model.head(mean))


def test_reset_classifier_changes_every_class_head() -> None:
    model = _build("classemo_tiny").eval()
    model.reset_classifier(3)
    frames, mask = _clips(model, [2], num_frames=2)
    with torch.no_grad():
        out = model(frames, mask)
    assert model.num_classes == 3
    for key in ("logits", "frame_logits", "vit_logits", "vlad_logits"):
        assert out[key].shape[-1] == 3, key
    assert model.forward_peak(frames[0]).shape == (2, 3)


def test_bad_input_gets_a_clear_error() -> None:
    model = _build("classemo_tiny").eval()
    with pytest.raises(ValueError, match=r"frames must have shape \(B, T, 3, 64, 64\)"):
        model(torch.randn(1, 2, 3, 32, 32))
    with pytest.raises(ValueError, match="no real frame"):
        model(torch.randn(2, 2, 3, 64, 64), torch.tensor([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="mask must have shape"):
        model(torch.randn(1, 2, 3, 64, 64), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        model(torch.randn(1, 2, 3, 64, 64), torch.ones(1, 2))
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 2, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="images must have shape"):
        model.forward_spatial(torch.randn(2, 3, 64))
    with pytest.raises(ValueError, match="features must have shape"):
        model.forward_temporal(torch.randn(1, 2, 7))


def test_preset_records_how_to_rebuild_it() -> None:
    model = create_model("classemo_tiny", num_classes=4, use_netvlad=False)
    assert model.model_name == "classemo_tiny"
    assert model.model_kwargs == {"num_classes": 4, "use_netvlad": False}
    rebuilt = create_model(model.model_name, **model.model_kwargs)
    rebuilt.load_state_dict(model.state_dict())

