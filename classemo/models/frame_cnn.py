"""A per-frame residual CNN (He et al., "Deep residual learning for image recognition", CVPR 2016), the frame encoder
that the comparison models of the paper's Tables 1-2 put under their temporal parts.

CNN-GRU, FAN and Enhanced ConvLSTM each start from a per-frame 2D CNN (VGG-Face or ResNet-18 in their papers). One
encoder, sized per preset, keeps the comparison about what each model does over time, not about whose CNN is
bigger. A stem (3x3 conv) is followed by stages of basic residual blocks; every stage but the first halves the
resolution.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

Norm = Literal["batch", "group"]


def norm_layer(kind: Norm, channels: int) -> nn.Module:
    """BatchNorm (as published), or GroupNorm for per-worker batches too small for batch statistics."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual shortcut (a 1x1 projection when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int = 1, norm: Norm = "batch") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm_layer(norm, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = norm_layer(norm, out_channels)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          norm_layer(norm, out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class FrameCNN(nn.Module):
    """Residual CNN over single frames: (N, 3, S, S) -> feature maps (N, C, S / r, S / r), r = `reduction`."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128), *, blocks_per_stage: int = 1, stem_stride: int = 1,
                 norm: Norm = "batch") -> None:
        """Build the encoder.

        Args:
            widths: Channels per stage; every stage after the first halves the resolution.
            blocks_per_stage: Basic blocks per stage.
            stem_stride: Stride of the stem conv (2 for 224 px inputs, 1 for 64 px crops).
            norm: "batch" or "group" normalisation.
        """
        super().__init__()
        if not widths or blocks_per_stage < 1:
            raise ValueError(f"FrameCNN needs at least one stage and one block, got widths={list(widths)}, "
                             f"blocks_per_stage={blocks_per_stage}")
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, stride=stem_stride, padding=1, bias=False),
                                  norm_layer(norm, widths[0]), nn.ReLU(inplace=True))
        stages, channels = [], widths[0]
        for i, width in enumerate(widths):
            blocks = [BasicBlock(channels, width, stride=1 if i == 0 else 2, norm=norm)]
            blocks += [BasicBlock(width, width, norm=norm) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.out_channels = channels
        self.reduction = stem_stride * 2 ** (len(widths) - 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(images))

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled feature vector (N, C) of each frame."""
        return self.forward(images).mean(dim=(2, 3))
