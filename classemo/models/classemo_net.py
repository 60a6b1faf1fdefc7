"""Emotion recognition in learning scenes supported by smart classrooms: the unified spatio-temporal network.

Per frame (paper Figure 2): ViT patch tokens -> residual attention and non-local block on the token grid ->
multi-head self-attention + FFN fusing grid tokens with the CLS feature -> NetVLAD -> per-frame feature lambda.
Per clip: a temporal Transformer encoder over lambda_1..lambda_T, masked mean pooling, a class head and a
valence/arousal head. docs/model.md draws the data flow and lists the presets registered at the bottom.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from einops import rearrange
from torch import nn

from classemo.models.attention import TransformerBlock
from classemo.models.base import ClipModel, preset
from classemo.models.netvlad import NetVLAD
from classemo.models.non_local import NonLocalBlock
from classemo.models.registry import register_model
from classemo.models.residual_attention import ResidualAttention
from classemo.models.temporal import TemporalEncoder, masked_mean
from classemo.models.vit import ViTBackbone

SEED_KWARGS = ("vit_weights", "pretrained", "pretrained_file")  # kwargs that only choose the starting weights
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 luminance weights of R, G, B (as cv2.cvtColor COLOR_RGB2GRAY)


class ClassEmoNet(ClipModel):
    """Unified network: ViT + residual attention + non-local + MHSA/FFN fusion + NetVLAD, then temporal encoder."""

    # peak_logits per frame too: for stills (1-frame clips) the training step reads M_H from the clip pass.
    frame_outputs = ("features", "vit_logits", "vlad_logits", "peak_logits")

    def __init__(
        self,
        *,
        num_classes: int = 7,
        image_size: int = 64,
        patch_size: int = 8,
        num_frames: int = 8,
        embed_dim: int = 96,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        num_clusters: int = 8,
        residual_attention_depth: int = 1,
        fusion_depth: int = 1,
        temporal_depth: int = 2,
        temporal_heads: int = 4,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        use_netvlad: bool = True,
        use_residual_attention: bool = True,
        use_non_local: bool = True,
        use_temporal: bool = True,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
        vit_weights: str | None = None,
        pretrained: str | None = None,
        pretrained_file: str | None = None,
        stem: str = "patch",
        stem_norm: str = "batch",
        stem_depth: int | Sequence[int] = 1,
        grayscale: bool = False,
    ) -> None:
        """Build the network.

        Args:
            num_classes: discrete emotion classes C.
            image_size: square face-crop size S in pixels.
            patch_size: ViT patch side; the token grid is (S / patch_size)^2.
            num_frames: frames per clip T used in training (the encoder itself accepts any length).
            embed_dim: ViT width E, which is also the per-frame feature width D of lambda.
            depth: ViT blocks.
            num_heads: ViT and fusion attention heads.
            mlp_ratio: FFN width / embed_dim everywhere.
            num_clusters: NetVLAD centres K.
            residual_attention_depth: trunk blocks of the residual attention module.
            fusion_depth: MHSA + FFN fusion blocks (eq. 11-13).
            temporal_depth: temporal encoder blocks.
            temporal_heads: temporal encoder heads.
            drop_rate: dropout before every head and inside fusion/temporal blocks.
            drop_path_rate: ViT stochastic depth.
            use_netvlad: NetVLAD pooling of fused tokens (off: mean of tokens; vlad_logits is None).
            use_residual_attention: residual attention stream on the token grid.
            use_non_local: non-local stream on the token grid.
            use_temporal: temporal encoder (off: masked mean of the per-frame features).
            mean: per-channel input mean, carried in `default_cfg` (None: the pretrained weights' mean, else
                classemo.preprocessing.DEFAULT_MEAN).
            std: per-channel input std, as `mean`.
            vit_weights: optional local file of timm ViT weights for the backbone.
            pretrained: optional timm model name and tag whose pretrained ViT weights seed the backbone
                ("vit_small_patch16_224.augreg_in21k"; see models/vit.py).
            pretrained_file: local weights file for `pretrained`, for machines without internet.
            stem: ViT patch embedding, "patch" (patchify) or "conv" (convolutional stem; see models/vit.py).
            stem_norm: normalisation of the conv stem, "batch" or "group" (no dependence on the per-worker batch).
            stem_depth: 3x3 convs per stage of the conv stem, one number or one per stage ((1, 2, 2): pairs below full
                resolution, as the plain CNN floor's; see models/vit.py ConvStem).
            grayscale: read every face as its luminance (in all three channels), inside the model, so that training,
                evaluation, Serve and video analysis all see the same thing. For training data whose colour
                carries the label (a folder of mostly grey photos in which some classes come in colour).
        """
        super().__init__(num_classes=num_classes, image_size=image_size, num_frames=num_frames, embed_dim=embed_dim)
        self.use_netvlad = use_netvlad
        self.grayscale = grayscale
        self.use_residual_attention = use_residual_attention
        self.use_non_local = use_non_local
        self.use_temporal = use_temporal
        self.backbone = ViTBackbone(
            num_classes=num_classes, image_size=image_size, patch_size=patch_size, embed_dim=embed_dim,
            depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio, drop_path_rate=drop_path_rate, weights=vit_weights,
            pretrained=pretrained, pretrained_file=pretrained_file, stem=stem, stem_norm=stem_norm,
            stem_depth=stem_depth,
        )
        # Pretrained weights expect the normalisation they were trained with; it travels in the checkpoint.
        self.pretrained_cfg = self.backbone.pretrained_cfg  # None for random init
        source = self.pretrained_cfg or {}
        self.default_cfg.update(mean=tuple(mean or source.get("mean") or self.default_cfg["mean"]),
                                std=tuple(std or source.get("std") or self.default_cfg["std"]))
        self.residual_attention = (
            ResidualAttention(embed_dim, depth=residual_attention_depth) if use_residual_attention else None
        )
        self.non_local = NonLocalBlock(embed_dim) if use_non_local else None
        self.fusion = nn.ModuleList(
            [TransformerBlock(embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=drop_rate)
             for _ in range(fusion_depth)]
        )
        self.fusion_norm = nn.LayerNorm(embed_dim)
        if use_netvlad:
            self.netvlad = NetVLAD(dim=embed_dim, num_clusters=num_clusters)
            self.vlad_head = nn.Linear(self.netvlad.out_dim, num_classes)
            self.pool_proj = nn.Linear(self.netvlad.out_dim, embed_dim)
        else:
            self.netvlad, self.vlad_head = None, None
            self.pool_proj = nn.Linear(embed_dim, embed_dim)
        self.cls_proj = nn.Linear(embed_dim, embed_dim)
        self.feature_norm = nn.LayerNorm(embed_dim)
        self.peak_head = nn.Linear(embed_dim, num_classes)

        self.temporal = (
            TemporalEncoder(embed_dim, depth=temporal_depth, num_heads=temporal_heads, mlp_ratio=mlp_ratio,
                            dropout=drop_rate)
            if use_temporal else None
        )
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes)
        self.va_head = nn.Linear(embed_dim, 2)

    # ---- spatial part: one face crop -> lambda ------------------------------------------------------------------

    def forward_spatial(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Per-frame spatial stream.

        Args:
            images: (N, 3, S, S) normalised face crops.

        Returns:
            `features` (N, D) = lambda, `vit_logits` (N, C) from the ViT CLS head (M_B), `vlad_logits` (N, C) from
            the NetVLAD head (M_Y) or None when NetVLAD is off, `peak_logits` (N, C) from the per-frame head (M_H).
        """
        self._check_images(images)
        if self.grayscale:
            images = luminance(images, self.default_cfg["mean"], self.default_cfg["std"])
        tokens, cls = self.backbone(images)  # (N, L, E), (N, E)
        vit_logits = self.backbone.head(self.head_drop(cls))
        grid_h, grid_w = self.backbone.grid_size
        if self.residual_attention is not None or self.non_local is not None:
            grid = rearrange(tokens, "n (h w) e -> n e h w", h=grid_h, w=grid_w)
            if self.residual_attention is not None:
                grid = self.residual_attention(grid)
            if self.non_local is not None:
                grid = self.non_local(grid)
            tokens = rearrange(grid, "n e h w -> n (h w) e")
        # MHSA + FFN over [CLS; grid tokens]: the global ViT summary and the attended local streams meet here.
        x = torch.cat([cls.unsqueeze(1), tokens], dim=1)  # (N, 1 + L, E)
        for block in self.fusion:
            x = block(x)
        x = self.fusion_norm(x)
        cls_fused, tokens_fused = x[:, 0], x[:, 1:]
        if self.netvlad is not None:
            pooled = self.netvlad(tokens_fused)  # (N, K * E)
            vlad_logits = self.vlad_head(self.head_drop(pooled))
        else:
            pooled, vlad_logits = tokens_fused.mean(dim=1), None  # (N, E)
        features = self.feature_norm(self.pool_proj(pooled) + self.cls_proj(cls_fused))  # (N, D)
        peak_logits = self.peak_head(self.head_drop(features))
        return {"features": features, "vit_logits": vit_logits, "vlad_logits": vlad_logits, "peak_logits": peak_logits}

    def forward_peak(self, images: torch.Tensor) -> torch.Tensor:
        """Per-frame class logits (N, C) on lambda, for M_H on mixed real and StarGAN peak frames."""
        return self.forward_spatial(images)["peak_logits"]

    # ---- temporal part: lambda_1..lambda_T -> clip outputs ------------------------------------------------------

    def forward_temporal(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Clip outputs from per-frame features.

        Args:
            features: (B, T, D) per-frame features lambda.
            mask: (B, T) bool, True = real frame (None: all real).

        Returns:
            `logits` (B, C), `va` (B, 2) in [-1, 1], `frame_logits` (B, T, C), `frame_va` (B, T, 2).
        """
        self._check_features(features)
        mask = self._check_mask(mask, features.shape[:2], features.device)
        frame_out, pooled = self._encode(features, mask)
        return {
            "logits": self.head(self.head_drop(pooled)),
            "va": torch.tanh(self.va_head(pooled)),
            "frame_logits": self.head(self.head_drop(frame_out)),
            "frame_va": torch.tanh(self.va_head(frame_out)),
        }

    def _encode(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D), mask -> per-frame outputs (B, T, D) and pooled clip feature (B, D)."""
        if self.temporal is not None:
            return self.temporal(features, mask)
        return features, masked_mean(features, mask)

    # ---- the whole clip: `forward` and `forward_features` come from ClipModel ------------------------------

    def forward_head(
        self, features: torch.Tensor, mask: torch.Tensor | None = None, pre_logits: bool = False
    ) -> torch.Tensor:
        """Clip logits (B, C) from per-frame features (B, T, D), or the pooled clip feature (B, D) if pre_logits."""
        mask = self._check_mask(mask, features.shape[:2], features.device)
        _, pooled = self._encode(features, mask)
        return pooled if pre_logits else self.head(self.head_drop(pooled))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace every class head (ViT, NetVLAD, peak, clip/frame) for a new label set; V/A head is kept."""
        self.num_classes = num_classes
        self.backbone.head = nn.Linear(self.embed_dim, num_classes)
        if self.netvlad is not None:
            self.vlad_head = nn.Linear(self.netvlad.out_dim, num_classes)
        self.peak_head = nn.Linear(self.embed_dim, num_classes)
        self.head = nn.Linear(self.embed_dim, num_classes)


def luminance(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalised RGB crops (N, 3, S, S) -> their luminance (ITU-R BT.601), normalised again, in all 3 channels."""
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    y = ((images * s + m) * weights).sum(dim=1, keepdim=True)  # (N, 1, S, S) in [0, 1]
    return (y - m) / s


def _create(name: str, model_args: dict[str, Any], kwargs: dict[str, Any]) -> ClassEmoNet:
    """Build a preset as `ClassEmoNet(**dict(model_args, **kwargs))`, remembering how to rebuild it."""
    model = preset(ClassEmoNet, name, model_args, kwargs)
    # Pretrained weights only seed training; the trained state dict replaces them, so rebuilding a checkpoint never
    # needs them (nor a download). Where they came from is recorded apart, in `pretrained_cfg`.
    model.model_kwargs = {k: v for k, v in kwargs.items() if k not in SEED_KWARGS}
    if model.pretrained_cfg:  # ... but the normalisation they came with stays part of the model
        model.model_kwargs.update(mean=list(model.default_cfg["mean"]), std=list(model.default_cfg["std"]))
    return model


@register_model
def classemo_tiny(**kwargs: Any) -> ClassEmoNet:
    """CPU preset: 64 px, conv stem to 8x8 tokens, width 96, depth 4, K=8, 8 frames; trains in minutes on 2 cores."""
    model_args = dict(
        image_size=64, patch_size=8, num_frames=8, embed_dim=96, depth=4, num_heads=4, num_clusters=8,
        residual_attention_depth=1, fusion_depth=1, temporal_depth=2, temporal_heads=4, stem="conv",
    )
    return _create("classemo_tiny", model_args, kwargs)


@register_model
def classemo_small(**kwargs: Any) -> ClassEmoNet:
    """Small preset: 112 px, conv stem to 7x7 tokens, width 192, depth 6, K=16, 8 frames."""
    model_args = dict(
        image_size=112, patch_size=16, num_frames=8, embed_dim=192, depth=6, num_heads=4, num_clusters=16,
        residual_attention_depth=1, fusion_depth=1, temporal_depth=2, temporal_heads=4, drop_path_rate=0.05,
        stem="conv",
    )
    return _create("classemo_small", model_args, kwargs)


@register_model
def classemo_base(**kwargs: Any) -> ClassEmoNet:
    """GPU preset: 224 px, patch 16 (14x14 tokens), ViT-S width 384, depth 12, K=32, 16 frames.

    It keeps the patchify stem so that ViT-S weights load: `pretrained="vit_small_patch16_224.augreg_in21k"`
    (ImageNet-21k; add `pretrained_file=` offline) or `vit_weights=` (a local state dict); without them, pass
    `stem="conv"`: from scratch the patchify ViT does not generalise on small data (docs/model.md, "Stem").
    """
    model_args = dict(
        image_size=224, patch_size=16, num_frames=16, embed_dim=384, depth=12, num_heads=6, num_clusters=32,
        residual_attention_depth=2, fusion_depth=2, temporal_depth=4, temporal_heads=6, drop_rate=0.1,
        drop_path_rate=0.1,
    )
    return _create("classemo_base", model_args, kwargs)
