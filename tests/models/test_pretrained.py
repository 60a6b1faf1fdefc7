"""Pretrained backbones by timm name: the hub path a user with internet takes, tested offline with a local file."""

from __future__ import annotations

import pytest
import timm
import torch

from classemo.models import create_model
from classemo.preprocessing import Preprocessing

# DeiT-tiny: the smallest timm ViT whose pretrained config has a normalisation other than our default (ImageNet's).
NAME = "deit_tiny_patch16_224.fb_in1k"
VIT_TINY = dict(stem="patch", patch_size=16, embed_dim=192, depth=12, num_heads=3)
IMAGENET_MEAN = (0.485, 0.456, 0.406)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> tuple[str, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    source = timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path_factory.mktemp("timm") / "deit_tiny.pth"
    torch.save(source.state_dict(), path)
    return str(path), source.state_dict()


def test_pretrained_name_loads_the_weights_and_their_normalisation(weights_file) -> None:
    path, state = weights_file
    model = create_model("classemo_tiny", num_classes=7, pretrained=NAME, pretrained_file=path, **VIT_TINY)
    own = model.backbone.vit.state_dict()
    for key in ("blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.weight", "patch_embed.proj.weight", "cls_token"):
        torch.testing.assert_close(own[key], state[key], rtol=0, atol=0)
    assert own["pos_embed"].shape == (1, 1 + 4 * 4, 192)  # 224 px grid resampled to the 64 px input
    assert model.default_cfg["mean"] == pytest.approx(IMAGENET_MEAN)
    assert Preprocessing.for_model(model).mean == pytest.approx(IMAGENET_MEAN)
    assert model.pretrained_cfg["name"] == NAME and model.pretrained_cfg["file"] == path


def test_rebuilding_from_recorded_kwargs_needs_no_weights(weights_file) -> None:
    path, _ = weights_file
    model = create_model("classemo_tiny", num_classes=7, pretrained=NAME, pretrained_file=path, **VIT_TINY)
    assert not {"pretrained", "pretrained_file", "vit_weights"} & set(model.model_kwargs)
    rebuilt = create_model("classemo_tiny", **model.model_kwargs)  # what Predictor does with a checkpoint
    assert rebuilt.pretrained_cfg is None
    assert rebuilt.default_cfg["mean"] == model.default_cfg["mean"]
    rebuilt.load_state_dict(model.state_dict())


def test_pretrained_errors_name_the_problem(weights_file, tmp_path, monkeypatch) -> None:
    path, _ = weights_file
    with pytest.raises(ValueError, match="timm has no model 'vit_no_such_model'"):
        create_model("classemo_tiny", pretrained="vit_no_such_model", **VIT_TINY)
    with pytest.raises(ValueError, match="not a timm VisionTransformer"):
        create_model("classemo_tiny", pretrained="resnet18", **VIT_TINY)
    with pytest.raises(ValueError, match="does not exist"):
        create_model("classemo_tiny", pretrained=NAME, pretrained_file=str(tmp_path / "missing.pth"), **VIT_TINY)
    with pytest.raises(ValueError, match="'patch' stem only"):
        create_model("classemo_tiny", pretrained=NAME, pretrained_file=path, **dict(VIT_TINY, stem="conv"))
    with pytest.raises(ValueError, match="do not match the architecture"):
        create_model("classemo_tiny", pretrained=NAME, pretrained_file=path, **dict(VIT_TINY, embed_dim=96))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no network in tests, ever
    with pytest.raises(ValueError, match="offline, pass the weights file as pretrained_file="):
        create_model("classemo_tiny", pretrained="vit_tiny_patch16_224.augreg_in21k", **VIT_TINY)


def test_checkpoint_records_the_starting_weights_and_reloads_without_them(weights_file, tmp_path) -> None:
    from classemo.checkpoint import save_model_checkpoint
    from classemo.labels import LabelSet
    from classemo.predictor import Predictor

    path, _ = weights_file
    model = create_model("classemo_tiny", num_classes=7, pretrained=NAME, pretrained_file=path, **VIT_TINY)
    ckpt = save_model_checkpoint(model, tmp_path / "ckpt", labels=LabelSet.paper())
    predictor = Predictor.from_checkpoint(ckpt, device="cpu", dtype="float32")
    assert predictor.config["model"]["pretrained"]["name"] == NAME
    assert "pretrained" not in predictor.config["model"]["kwargs"]
    assert predictor.preprocessing.mean == pytest.approx(IMAGENET_MEAN)
