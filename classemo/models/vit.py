"""Emotion recognition in learning scenes supported by smart classrooms: ViT spatial backbone.

A timm `VisionTransformer` turns each face crop into patch tokens and a CLS feature; the CLS feature has its own
classification head, whose cross-entropy is the paper's M_B.

The patch embedding is either ViT's own patchify (one strided conv, `stem="patch"`) or a small CNN whose feature map
becomes the token grid (`stem="conv"`: the "hybrid" ViT of Dosovitskiy et al. 2021, Section 3.1). Trained from
scratch on a few hundred faces, the patchify ViT stays at chance on held-out people; the hybrid stem gives it the
locality prior it lacks (docs/model.md, "Stem"). With pretrained weights (`pretrained=` a timm name, fetched by timm
or read from a local file offline), the patchify stem is the one that fits them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from classemo.models.frame_cnn import Norm, norm_layer


class ViTBackbone(nn.Module):
    """ViT spatial backbone returning patch tokens and the CLS feature, with the CLS head for loss M_B."""

    def __init__(
        self,
        *,
        num_classes: int,
        image_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        weights: str | None = None,
        pretrained: str | None = None,
        pretrained_file: str | None = None,
        stem: Literal["patch", "conv"] = "patch",
        stem_norm: Norm = "batch",
        stem_depth: int | Sequence[int] = 1,
    ) -> None:
        """Build the backbone.

        Args:
            num_classes: classes of the CLS head (M_B).
            image_size: square input size in pixels; must be a multiple of `patch_size`.
            patch_size: patch side in pixels.
            embed_dim: token width.
            depth: number of Transformer blocks.
            num_heads: attention heads per block.
            mlp_ratio: hidden width of each block's MLP relative to `embed_dim`.
            drop_path_rate: stochastic depth rate.
            weights: optional local file with a timm ViT state dict, read from disk only.
            pretrained: optional timm model name with its pretrained tag ("vit_small_patch16_224.augreg_in21k"):
                timm builds that model with its pretrained weights (Hugging Face hub or timm's cache, or
                `pretrained_file` offline) and its ViT weights seed this backbone. Width, depth and heads must match.
            pretrained_file: local file of the `pretrained` model's weights (timm's `pretrained_cfg_overlay`), for
                machines without internet.
            stem: "patch" (ViT's patchify conv) or "conv" (a small CNN, `ConvStem`, with the same token grid).
                Pretrained weights only fit the "patch" stem.
            stem_norm: the conv stem's normalisation, "batch" or "group" (independent of the per-worker batch).
            stem_depth: the conv stem's 3x3 convs per stage, one number or one per stage (2: VGG-style pairs, as the
                plain CNN floor's).
        """
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        # num_classes=0 makes timm's head an Identity: the CLS head below is ours so reset_classifier stays simple.
        self.vit = VisionTransformer(
            img_size=image_size,
            patch_size=patch_size,
            num_classes=0,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            drop_path_rate=drop_path_rate,
            global_pool="token",
        )
        if stem == "conv":
            self.vit.patch_embed.proj = ConvStem(patch_size, embed_dim, norm=stem_norm, depth=stem_depth)
        elif stem != "patch":
            raise ValueError(f"stem must be 'patch' or 'conv', got {stem!r}")
        self.head = nn.Linear(embed_dim, num_classes)
        self.grid_size: tuple[int, int] = tuple(self.vit.patch_embed.grid_size)
        self.embed_dim = embed_dim
        # Where the weights came from and the normalisation they were trained with (None: random init).
        self.pretrained_cfg: dict[str, Any] | None = None
        if weights is not None and pretrained is not None:
            raise ValueError("pass either weights= (a local state dict) or pretrained= (a timm model name), not both")
        if (weights is not None or pretrained is not None) and stem != "patch":
            raise ValueError("pretrained ViT weights fit the 'patch' stem only; build the backbone with stem='patch'")
        if pretrained_file is not None and pretrained is None:
            raise ValueError("pretrained_file= names the weights of a timm model: pass its name as pretrained= too")
        if weights is not None:
            load_vit_weights(self.vit, read_state_dict(weights), source=repr(str(weights)))
            self.pretrained_cfg = {"file": str(weights)}
        elif pretrained is not None:
            state, source_cfg = timm_pretrained(pretrained, file=pretrained_file)
            load_vit_weights(self.vit, state, source=repr(pretrained))
            self.pretrained_cfg = {"name": pretrained, "file": pretrained_file, "mean": source_cfg.get("mean"),
                                   "std": source_cfg.get("std")}

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode face crops.

        Args:
            images: (N, 3, S, S) normalised crops.

        Returns:
            Patch tokens (N, L, E) in row-major grid order and the CLS feature (N, E).
        """
        x = self.vit.forward_features(images)  # (N, prefix + L, E)
        prefix = self.vit.num_prefix_tokens
        return x[:, prefix:], x[:, 0]


class MaxPool2x2(nn.Module):
    """2x2 max-pool, stride 2 (floor mode): `nn.MaxPool2d(2)`'s output, as the max of four strided views.

    PyTorch's CPU max-pool on NCHW tensors computes int64 argmax indices and is memory-bound: on this project's
    profile it was 29% of classemo_tiny's spatial stream, ~8x slower than this for the stem's full-resolution
    maps (docs/performance.md). Where several inputs tie, the gradient is shared between them instead of going to
    one; the forward values are identical.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H // 2, W // 2)."""
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
        x = x[..., :h, :w]
        return torch.maximum(torch.maximum(x[..., 0::2, 0::2], x[..., 0::2, 1::2]),
                             torch.maximum(x[..., 1::2, 0::2], x[..., 1::2, 1::2]))


class ConvStem(nn.Sequential):
    """Hybrid-ViT patch embedding: log2(patch) stages of `depth` 3x3 conv-norm-ReLUs + a 2x2 max-pool, then a 1x1 conv.

    The norm is BatchNorm, or GroupNorm (`norm="group"`) where a worker's batch holds few faces.
    """

    def __init__(self, patch_size: int, embed_dim: int, norm: Norm = "batch", depth: int | Sequence[int] = 1) -> None:
        steps = math.log2(patch_size)
        if patch_size < 2 or steps != int(steps):
            raise ValueError(f"the conv stem needs a power-of-two patch_size >= 2, got {patch_size}")
        depths = [depth] * int(steps) if isinstance(depth, int) else list(depth)
        if len(depths) != int(steps) or min(depths) < 1:
            raise ValueError(f"the conv stem needs {int(steps)} stages of at least one conv each, got depth={depth}")
        layers: list[nn.Module] = []
        channels = 3
        for i in range(int(steps)):
            # 32, 64, 128, ... capped at embed_dim: a small CNN's widths. Full-resolution 3x3 convs before each
            # pool are what let it learn local cues (lip corners, brows); strided 3x3 convs alone did not.
            out = min(32 * 2 ** i, max(embed_dim, 32))
            for _ in range(depths[i]):
                layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), norm_layer(norm, out),
                           nn.ReLU(inplace=True)]
                channels = out
            layers.append(MaxPool2x2())
        layers.append(nn.Conv2d(channels, embed_dim, 1))
        super().__init__(*layers)  # (N, 3, S, S) -> (N, E, S / patch, S / patch)


def timm_pretrained(name: str, *, file: str | Path | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ViT weights and pretrained config of timm model `name`, built by timm with `pretrained=True`.

    Online, timm fetches the weights from the Hugging Face hub (or reuses its cache); offline, `file` stands in
    for the hub through `pretrained_cfg_overlay`, so the same name and tag work on an air-gapped cluster.

    Args:
        name: timm model name, optionally with a pretrained tag ("vit_small_patch16_224.augreg_in21k").
        file: local weights of that model (.pth, .bin or .safetensors).

    Raises:
        ValueError: unknown model name, a file that is missing, or weights that cannot be fetched or read.
    """
    import timm
    from timm.models import get_arch_name, is_model

    if not is_model(name):
        raise ValueError(f"timm has no model {name!r}: see timm.list_models('vit_*', pretrained=True)")
    if not any(get_arch_name(name) in timm.list_models(module=m) for m in ("vision_transformer", "deit")):
        raise ValueError(f"{name!r} is not a timm VisionTransformer; the backbone needs one (e.g. "
                         "'vit_small_patch16_224.augreg_in21k')")
    if file is not None and not Path(file).is_file():
        raise ValueError(f"pretrained weights file {str(file)!r} for {name!r} does not exist")
    overlay = {"file": str(file)} if file is not None else None
    try:
        source = timm.create_model(name, pretrained=True, num_classes=0, pretrained_cfg_overlay=overlay)
    except Exception as err:  # hub errors (offline, 404, auth) come in many types; all end here with one message
        hint = "" if file is not None else "; offline, pass the weights file as pretrained_file="
        raise ValueError(f"cannot load the pretrained weights of {name!r}: {type(err).__name__}: {err}{hint}") from err
    return source.state_dict(), dict(source.pretrained_cfg)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A local `.pt`/`.pth` state dict, optionally stored under a "state_dict" or "model" key.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not a state dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ViT weights file {str(path)!r} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several unrelated types for a corrupt or non-tensor file
        raise ValueError(f"cannot read ViT weights from {str(path)!r}: {err}") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"ViT weights file {str(path)!r} does not hold a state dict of tensors")
    return state


def load_vit_weights(vit: VisionTransformer, state: dict[str, torch.Tensor], *, source: str) -> None:
    """Load a timm ViT state dict into `vit`, resampling the position embedding to the grid if needed.

    Args:
        vit: the freshly built transformer.
        state: its weights (a source classifier head is dropped: our heads are sized for our label set).
        source: where they came from, for error messages.

    Raises:
        ValueError: the tensors do not fit this architecture, naming what differs.
    """
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    own = vit.state_dict()
    if "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
        prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], new_size=list(vit.patch_embed.grid_size), num_prefix_tokens=prefix
        )
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"ViT weights {source} do not match the architecture: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}, shape mismatches {wrong[:5]}"
        )
    vit.load_state_dict(state)
