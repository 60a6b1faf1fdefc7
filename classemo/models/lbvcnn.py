"""LBVCNN: Local Binary Volume Convolutional Neural Network for Facial Expression Recognition From Image Sequences
(S. Kumawat, M. Verma, S. Raman, CVPR Workshops 2019), a comparison model of the paper's Tables 1-2.

Published design: a grey image sequence enters a Local Binary Volume (LBV) layer, the 3D form of the local binary
convolution of LBCNN (Juefei-Xu et al., CVPR 2017): fixed sparse binary filters compare the centre voxel of each
3x3x3 space-time neighbourhood with one neighbour (LBP-TOP in 3D), a non-linearity stands in for the sign, and a
learnable 1x1x1 convolution combines the maps, so the layer trains 27 times fewer weights than a 3x3x3 conv. A small
3D CNN and fully connected layers classify the sequence.

Here: all 26 neighbour comparisons, a sigmoid with a learned slope per filter as the smooth threshold, and the grey
volume itself beside the binary maps in the 1x1x1 combination (LBCNN's identity path; difference filters alone
cannot see brightness). Then 3D conv stages (temporal stride 1, spatial stride 2), per-frame GroupNorm, masked
temporal pooling and the class / valence-arousal heads. The per-frame part only makes the grey image, so everything
that looks across frames is temporal. Padding invariance: before every conv that looks across time, padded steps are
replaced by the clip's last real step and time is padded by replication, which is exactly what an unpadded clip sees.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from classemo.models.base import ClipModel, preset
from classemo.models.registry import register_model
from classemo.models.temporal import masked_mean

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 grey from RGB


def fill_padding(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Replace padded time steps of x (B, C, T, H, W) by the clip's last real step; mask (B, T) True = real."""
    last = mask.shape[1] - 1 - mask.flip(1).long().argmax(dim=1)  # (B,) index of each clip's last real step
    last_step = x[torch.arange(x.shape[0], device=x.device), :, last]  # (B, C, H, W)
    return torch.where(mask[:, None, :, None, None], x, last_step.unsqueeze(2))


class FrameNorm(nn.Module):
    """GroupNorm of each frame on its own: statistics never mix time steps, so padding cannot leak into them."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(min(8, channels), channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[2]
        y = self.norm(rearrange(x, "b c t h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b c t h w", t=t)


class LocalBinaryVolume(nn.Module):
    """LBV layer: fixed centre-vs-neighbour difference filters, a sigmoid threshold, a learned 1x1x1 combination."""

    def __init__(self, out_channels: int, *, slope: float = 4.0) -> None:
        """Build the layer.

        Args:
            out_channels: channels of the 1x1x1 combination.
            slope: initial steepness of the sigmoid that replaces the hard sign (learned per filter).
        """
        super().__init__()
        offsets = [o for o in itertools.product((0, 1, 2), repeat=3) if o != (1, 1, 1)]  # 26 neighbours (t, y, x)
        filters = torch.zeros(len(offsets), 1, 3, 3, 3)
        for i, (t, y, x) in enumerate(offsets):
            filters[i, 0, t, y, x] = 1.0
            filters[i, 0, 1, 1, 1] = -1.0
        self.register_buffer("filters", filters)  # a buffer: never trained, saved with the model
        self.log_slope = nn.Parameter(torch.full((len(offsets),), math.log(slope)))
        self.combine = nn.Conv3d(len(offsets) + 1, out_channels, kernel_size=1)

    def binary_maps(self, volume: torch.Tensor) -> torch.Tensor:
        """Smooth local binary volume (B, 26, T, H, W) in (0, 1) of a grey volume (B, 1, T, H, W)."""
        diff = F.conv3d(F.pad(volume, (1, 1, 1, 1, 1, 1), mode="replicate"), self.filters)  # neighbour - centre
        return torch.sigmoid(diff * self.log_slope.exp().view(1, -1, 1, 1, 1))

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        return self.combine(torch.cat([volume, self.binary_maps(volume)], dim=1))  # (B, out_channels, T, H, W)


class Conv3dStage(nn.Module):
    """3x3x3 conv (temporal stride 1, replicate-padded time after padding is filled) -> per-frame norm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, *, spatial_stride: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, 3, stride=(1, spatial_stride, spatial_stride),
                              padding=(0, 1, 1), bias=False)
        self.norm = FrameNorm(out_channels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = F.pad(fill_padding(x, mask), (0, 0, 0, 0, 1, 1), mode="replicate")  # (B, C, T + 2, H, W)
        return F.relu(self.norm(self.conv(x)))


class LBVCNN(ClipModel):
    """Grey frames -> LBV layer -> 3D conv stages -> per-frame features and a masked temporal pool -> heads."""

    # What forward_temporal runs: kept in float32 under a bf16 Predictor.
    float32_modules = ("lbv", "lbv_norm", "stages", "head", "va_head")

    def __init__(
        self,
        *,
        num_classes: int = 7,
        image_size: int = 64,
        num_frames: int = 8,
        grey_stride: int = 1,
        lbv_channels: int = 16,
        lbv_slope: float = 4.0,
        widths: Sequence[int] = (32, 64, 128),
        temporal_pool: Literal["mean", "max"] = "mean",
        drop_rate: float = 0.0,
        mean: tuple[float, float, float] | None = None,
        std: tuple[float, float, float] | None = None,
    ) -> None:
        """Build the network.

        Args:
            num_classes: discrete emotion classes C.
            image_size: square face-crop side S in pixels.
            num_frames: frames per clip T in training.
            grey_stride: average-pooling factor of the grey image (the volume is (S / grey_stride)^2 per frame).
            lbv_channels: channels of the LBV layer's 1x1x1 combination.
            lbv_slope: initial sigmoid slope of the smooth binary threshold.
            widths: channels of the 3D conv stages; each halves the spatial resolution, none the temporal.
            temporal_pool: pooling of the per-frame features over real frames, "mean" or "max".
            drop_rate: dropout before the heads.
            mean: per-channel input mean (None: classemo.preprocessing.DEFAULT_MEAN).
            std: per-channel input std, as `mean`.
        """
        if grey_stride < 1 or image_size // grey_stride < 2:
            raise ValueError(f"grey_stride must be >= 1 and leave at least 2x2 pixels, got {grey_stride} "
                             f"for image_size={image_size}")
        if temporal_pool not in ("mean", "max"):
            raise ValueError(f"temporal_pool must be 'mean' or 'max', got {temporal_pool!r}")
        if not widths:
            raise ValueError("LBVCNN needs at least one 3D conv stage")
        grid = image_size // grey_stride  # side of the grey frame
        super().__init__(num_classes=num_classes, image_size=image_size, num_frames=num_frames, embed_dim=grid ** 2,
                         mean=mean, std=std)
        self.grid = grid
        self.grey_stride = grey_stride
        self.temporal_pool = temporal_pool
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        self.lbv = LocalBinaryVolume(lbv_channels, slope=lbv_slope)
        self.lbv_norm = FrameNorm(lbv_channels)
        channels = [lbv_channels, *widths]
        self.stages = nn.ModuleList([Conv3dStage(c_in, c_out) for c_in, c_out in zip(channels, channels[1:])])
        self.out_dim = channels[-1]
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.out_dim, num_classes)
        self.va_head = nn.Linear(self.out_dim, 2)

    def forward_spatial(self, images: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """(N, 3, S, S) normalised crops -> `features` (N, (S / grey_stride)^2): the flattened grey image."""
        self._check_images(images)
        grey = (images * self.luma.to(images.dtype)).sum(dim=1, keepdim=True)  # (N, 1, S, S)
        if self.grey_stride > 1:
            grey = F.avg_pool2d(grey, self.grey_stride)
        return {"features": rearrange(grey, "n 1 h w -> n (h w)")}

    def forward_temporal(self, features: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Clip outputs from flattened grey frames.

        Args:
            features: (B, T, D) grey frames from `forward_spatial`.
            mask: (B, T) bool, True = real frame (None: all real).

        Returns:
            `logits` (B, C), `va` (B, 2) in [-1, 1], `frame_logits` (B, T, C), `frame_va` (B, T, 2).
        """
        self._check_features(features)
        mask = self._check_mask(mask, features.shape[:2], features.device)
        frame_out = self.frame_features(features, mask)  # (B, T, C')
        if self.temporal_pool == "mean":
            pooled = masked_mean(frame_out, mask)
        else:
            pooled = frame_out.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        return {
            "logits": self.head(self.head_drop(pooled)),
            "va": torch.tanh(self.va_head(pooled)),
            "frame_logits": self.head(self.head_drop(frame_out)),
            "frame_va": torch.tanh(self.va_head(frame_out)),
        }

    def frame_features(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Per-time-step features (B, T, C') of the last 3D feature map, spatially averaged."""
        volume = rearrange(features, "b t (h w) -> b 1 t h w", h=self.grid)
        x = F.relu(self.lbv_norm(self.lbv(fill_padding(volume, mask))))  # (B, lbv_channels, T, H, W)
        for stage in self.stages:
            x = stage(x, mask)
        return rearrange(x.mean(dim=(3, 4)), "b c t -> b t c")

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the class head (clip and frame logits share it); the V/A head is kept."""
        self.num_classes = num_classes
        self.head = nn.Linear(self.out_dim, num_classes)


@register_model
def lbvcnn_tiny(**kwargs: Any) -> LBVCNN:
    """CPU preset: 64 px crops as 32 px grey frames, LBV to 16 maps, 3D stages 32-64-128 (4x4 at the end), 8 frames.

    Grey frames at full 64 px cost ten times more on CPU (the LBV maps are 27 full-resolution channels).
    """
    model_args = dict(image_size=64, num_frames=8, grey_stride=2, lbv_channels=16, widths=(32, 64, 128))
    return preset(LBVCNN, "lbvcnn_tiny", model_args, kwargs)


@register_model
def lbvcnn_base(**kwargs: Any) -> LBVCNN:
    """GPU preset: 224 px crops as 112 px grey frames, LBV to 32 maps, 3D stages 64-128-256-256, 16 frames."""
    model_args = dict(image_size=224, num_frames=16, grey_stride=2, lbv_channels=32, widths=(64, 128, 256, 256),
                      drop_rate=0.2)
    return preset(LBVCNN, "lbvcnn_base", model_args, kwargs)
