"""Behaviour of each paper component on its own: NetVLAD, non-local, residual attention, attention, temporal, ViT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from classemo.models.attention import MultiHeadSelfAttention
from classemo.models.netvlad import NetVLAD
from classemo.models.non_local import NonLocalBlock
from classemo.models.residual_attention import ResidualAttention
from classemo.models.temporal import TemporalEncoder, masked_mean
from classemo.models.vit import MaxPool2x2, ViTBackbone


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_netvlad_assignments_sum_to_one_and_output_is_unit_norm() -> None:
    layer = NetVLAD(dim=16, num_clusters=5)
    tokens = torch.randn(3, 10, 16) * 4
    a = layer.soft_assign(tokens)
    assert a.shape == (3, 10, 5)
    assert torch.all(a >= 0)
    torch.testing.assert_close(a.sum(-1), torch.ones(3, 10))
    out = layer(tokens)
    assert out.shape == (3, 5 * 16)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(3))


def test_netvlad_is_permutation_invariant_over_tokens() -> None:
    layer = NetVLAD(dim=8, num_clusters=4)
    tokens = torch.randn(2, 12, 8)
    perm = torch.randperm(12)
    torch.testing.assert_close(layer(tokens[:, perm]), layer(tokens))
    # ...but it does depend on the token values, so the invariance above is not vacuous.
    assert not torch.allclose(layer(tokens * 2 + 1), layer(tokens))


def test_netvlad_matches_the_definition_on_a_tiny_case() -> None:
    layer = NetVLAD(dim=2, num_clusters=2)
    tokens = torch.randn(1, 3, 2)
    a = layer.soft_assign(tokens)[0]  # (L, K)
    expected = torch.stack([(a[:, k : k + 1] * (tokens[0] - layer.centroids[k])).sum(0) for k in range(2)])
    expected = expected / expected.norm(dim=-1, keepdim=True)
    expected = expected.flatten() / expected.flatten().norm()
    torch.testing.assert_close(layer(tokens)[0], expected)


@pytest.mark.parametrize("train", [True, False])
def test_non_local_is_identity_at_init(train: bool) -> None:
    block = NonLocalBlock(12).train(train)
    z = torch.randn(2, 12, 4, 4)
    torch.testing.assert_close(block(z), z)


def test_non_local_mixes_positions_once_trained() -> None:
    block = NonLocalBlock(6).eval()
    torch.nn.init.ones_(block.out[1].weight)
    z = torch.randn(1, 6, 3, 3)
    z2 = z.clone()
    z2[..., 0, 0] += 5.0  # change one position only
    diff = (block(z2) - block(z)).abs().sum(dim=1)[0]  # (H, W)
    assert diff[2, 2] > 1e-4, "a far position must see the change through the non-local score"


def test_non_local_score_divides_by_number_of_positions() -> None:
    block = NonLocalBlock(4, inner_dim=2).eval()
    torch.nn.init.ones_(block.out[1].weight)
    z = torch.randn(1, 4, 2, 3)
    phi = block.phi(z).flatten(2)[0].T  # (V, c)
    rho = block.rho(z).flatten(2)[0].T
    val = block.h(z).flatten(2)[0].T
    t = (phi @ rho.T / 6) @ val  # V(z) = 2 * 3 positions
    expected = z + block.out(t.T.reshape(1, 2, 2, 3))
    torch.testing.assert_close(block(z), expected)


def test_residual_attention_equals_trunk_when_mask_is_zero() -> None:
    module = ResidualAttention(8).eval()
    torch.nn.init.zeros_(module.mask.expand.weight)
    torch.nn.init.constant_(module.mask.expand.bias, -1e4)  # sigmoid(-1e4) == 0 exactly in float32
    z = torch.randn(2, 8, 5, 5)
    assert torch.all(module.mask(z) == 0)
    torch.testing.assert_close(module(z), module.trunk(z))


def test_residual_attention_never_below_trunk_for_non_negative_features() -> None:
    module = ResidualAttention(8, depth=2).eval()
    z = torch.relu(torch.randn(3, 8, 6, 6))
    trunk, out = module.trunk(z), module(z)
    assert torch.all(trunk >= 0)
    assert torch.all(out >= trunk)
    assert torch.any(out > trunk), "a sigmoid mask > 0 must emphasise somewhere"
    assert torch.all(out <= 2 * trunk + 1e-6)


def test_attention_ignores_masked_keys() -> None:
    attn = MultiHeadSelfAttention(16, num_heads=4).eval()
    x = torch.randn(1, 5, 16)
    key_mask = torch.tensor([[True, True, True, False, False]])
    garbage = x.clone()
    garbage[:, 3:] = torch.randn(1, 2, 16) * 100
    torch.testing.assert_close(attn(x, key_mask)[:, :3], attn(garbage, key_mask)[:, :3])


def test_temporal_encoder_is_sensitive_to_frame_order() -> None:
    enc = TemporalEncoder(16, depth=2, num_heads=4).eval()
    x = torch.randn(1, 6, 16)
    mask = torch.ones(1, 6, dtype=torch.bool)
    _, pooled = enc(x, mask)
    _, pooled_rev = enc(x.flip(1), mask)
    assert (pooled - pooled_rev).abs().max() > 1e-3
    # Without positions a mean of attention outputs would be order-free: the difference comes from the encoding.
    torch.testing.assert_close(masked_mean(x, mask), masked_mean(x.flip(1), mask))


def test_temporal_encoder_is_invariant_to_padding() -> None:
    enc = TemporalEncoder(16, depth=2, num_heads=4).eval()
    x = torch.randn(1, 5, 16)
    out, pooled = enc(x, torch.ones(1, 5, dtype=torch.bool))
    padded = torch.cat([x, torch.randn(1, 3, 16) * 50], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    out_p, pooled_p = enc(padded, mask)
    torch.testing.assert_close(pooled_p, pooled)
    torch.testing.assert_close(out_p[:, :5], out)


def test_masked_mean_ignores_padding() -> None:
    x = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert masked_mean(x, torch.tensor([[True, True, False]])).item() == pytest.approx(2.0)


def _tiny_vit(**kwargs: object) -> ViTBackbone:
    args = dict(num_classes=3, image_size=16, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    return ViTBackbone(**dict(args, **kwargs))


def test_vit_returns_patch_tokens_and_cls() -> None:
    vit = _tiny_vit().eval()
    tokens, cls = vit(torch.randn(2, 3, 16, 16))
    assert tokens.shape == (2, 4, 16) and cls.shape == (2, 16)
    assert vit.head(cls).shape == (2, 3)
    assert vit.grid_size == (2, 2)


def test_vit_loads_local_weights(tmp_path) -> None:
    source = _tiny_vit()
    path = tmp_path / "vit.pth"
    torch.save({"state_dict": source.vit.state_dict()}, path)
    target = _tiny_vit(weights=str(path))
    for key, value in source.vit.state_dict().items():
        torch.testing.assert_close(target.vit.state_dict()[key], value)


def test_vit_resamples_position_embedding_for_another_image_size(tmp_path) -> None:
    path = tmp_path / "vit.pth"
    torch.save(_tiny_vit().vit.state_dict(), path)
    target = _tiny_vit(image_size=32, weights=str(path))
    assert target.vit.pos_embed.shape == (1, 1 + 16, 16)


def test_vit_weights_mismatch_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "vit.pth"
    torch.save(_tiny_vit(embed_dim=32).vit.state_dict(), path)
    with pytest.raises(ValueError, match="do not match the architecture.*shape mismatches"):
        _tiny_vit(weights=str(path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _tiny_vit(weights=str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read ViT weights"):
        _tiny_vit(weights=str(tmp_path / "junk.pth"))


def test_vit_rejects_image_size_not_multiple_of_patch() -> None:
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        _tiny_vit(image_size=20)


@pytest.mark.parametrize("patch_size", [2, 4, 8])
def test_conv_stem_keeps_the_token_grid_and_learns_from_every_layer(patch_size: int) -> None:
    patch = _tiny_vit(patch_size=patch_size, stem="patch").eval()
    conv = _tiny_vit(patch_size=patch_size, stem="conv").eval()
    x = torch.randn(2, 3, 16, 16)
    tokens_p, _ = patch(x)
    tokens_c, cls = conv(x)
    assert tokens_c.shape == tokens_p.shape and conv.grid_size == patch.grid_size
    conv.train()
    conv.head(conv(x)[1]).sum().backward()
    stem_params = list(conv.vit.patch_embed.proj.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in stem_params)


@pytest.mark.parametrize("depth", [2, (1, 2)])
def test_conv_stem_depth_adds_convs_per_stage_on_the_same_grid(depth: int | tuple[int, ...]) -> None:
    one = _tiny_vit(patch_size=4, stem="conv").eval()
    deeper = _tiny_vit(patch_size=4, stem="conv", stem_depth=depth).eval()
    convs = lambda m: [c for c in m.vit.patch_embed.proj if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    per_stage = [depth] * 2 if isinstance(depth, int) else list(depth)
    assert len(convs(deeper)) == sum(per_stage) + 1 and len(convs(one)) == 2 + 1  # 3x3s per stage, then the 1x1
    x = torch.randn(2, 3, 16, 16)
    assert deeper(x)[0].shape == one(x)[0].shape and deeper.grid_size == one.grid_size
    with pytest.raises(ValueError, match="2 stages of at least one conv each"):
        _tiny_vit(patch_size=4, stem="conv", stem_depth=(1, 2, 2))
    with pytest.raises(ValueError, match="2 stages of at least one conv each"):
        _tiny_vit(patch_size=4, stem="conv", stem_depth=0)


@pytest.mark.parametrize("shape", [(2, 5, 16, 16), (1, 3, 7, 9), (3, 1, 2, 3)])
def test_fast_max_pool_equals_torch_max_pool(shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape, requires_grad=True)
    y = MaxPool2x2()(x)
    torch.testing.assert_close(y, torch.nn.functional.max_pool2d(x, 2), rtol=0, atol=0)
    y.sum().backward()  # no ties in random data: each window's gradient goes to its argmax, as with max_pool2d
    ref = x.detach().clone().requires_grad_(True)
    torch.nn.functional.max_pool2d(ref, 2).sum().backward()
    torch.testing.assert_close(x.grad, ref.grad, rtol=0, atol=0)


def test_conv_stem_rejects_weights_and_odd_patches(tmp_path) -> None:
    path = tmp_path / "vit.pth"
    torch.save(_tiny_vit().vit.state_dict(), path)
    with pytest.raises(ValueError, match="fit the 'patch' stem only"):
        _tiny_vit(stem="conv", weights=str(path))
    with pytest.raises(ValueError, match="power-of-two patch_size"):
        _tiny_vit(image_size=18, patch_size=6, stem="conv")
    with pytest.raises(ValueError, match="stem must be"):
        _tiny_vit(stem="cnn")


def test_conv_stem_group_norm_does_not_depend_on_the_batch() -> None:
    """stem_norm="group": a face's tokens are the same alone or among others, even in training mode."""
    vit = _tiny_vit(stem="conv", stem_norm="group").train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in vit.modules())
    x = torch.randn(4, 3, 16, 16)
    alone = vit.vit.patch_embed(x[:1])
    together = vit.vit.patch_embed(x)[:1]
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="norm must be"):
        _tiny_vit(stem="conv", stem_norm="layer")


def test_grayscale_model_reads_a_colour_face_as_its_grey_version() -> None:
    """`grayscale=True`: colour cannot carry the label; a colour crop and its BT.601 grey copy give the same outputs."""
    import cv2

    from classemo.models import create_model

    model = create_model("classemo_tiny", num_classes=7, image_size=16, patch_size=8, embed_dim=16, depth=1,
                         num_heads=2, num_clusters=2, temporal_depth=1, temporal_heads=2, grayscale=True).eval()
    rgb = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    grey = np.stack([cv2.cvtColor(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB) for im in rgb])
    mean, std = (torch.tensor(model.default_cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))

    def tensor(images: np.ndarray) -> torch.Tensor:
        return ((torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std).unsqueeze(1)

    with torch.no_grad():
        a, b = model(tensor(rgb))["logits"], model(tensor(grey))["logits"]
    torch.testing.assert_close(a, b, rtol=0, atol=0.05)  # grey copy rounded to uint8 by OpenCV
    assert model.model_kwargs["grayscale"] is True  # the checkpoint rebuilds it grey
