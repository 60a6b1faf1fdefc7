"""Emotion recognition in learning scenes supported by smart classrooms: residual attention network.

A trunk of ResNet-style conv-BN-ReLU blocks (eq. 8) runs beside a light mask branch ending in a sigmoid; they
combine as H(z) = (1 + L(z)) * Y(z) (eq. 9-10), so the mask can emphasise trunk features but never erase them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TrunkBlock(nn.Module):
    """Trunk block of conv-BN-ReLU layers with an identity shortcut, eq. 8."""

    def __init__(self, dim: int) -> None:
        """Build the block.

        Args:
            dim: channels in and out.
        """
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dim)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W), non-negative (final ReLU)."""
        y = F.relu(self.bn1(self.conv1(z)))
        return F.relu(z + self.bn2(self.conv2(y)))


class MaskBranch(nn.Module):
    """Soft mask branch L(z) in [0, 1]: down-sample, light convs, up-sample, sigmoid (eq. 9)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        """Build the mask branch.

        Args:
            dim: channels of z and of the mask.
            hidden_dim: width of the light convs.
        """
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(dim, hidden_dim, 1, bias=False), nn.BatchNorm2d(hidden_dim), nn.ReLU())
        self.mix = nn.Sequential(
            nn.Conv2d(hidden_dim, hidden_dim, 3, padding=1, bias=False), nn.BatchNorm2d(hidden_dim), nn.ReLU()
        )
        self.expand = nn.Conv2d(hidden_dim, dim, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> mask (N, C, H, W) in [0, 1]."""
        size = z.shape[-2:]
        m = self.reduce(z)
        # Pooling widens the receptive field (bottom-up), interpolation returns to the grid (top-down).
        m = F.max_pool2d(m, 2, ceil_mode=True) if min(size) > 1 else m
        m = F.interpolate(self.mix(m), size=size, mode="bilinear", align_corners=False)
        return torch.sigmoid(self.expand(m))


class ResidualAttention(nn.Module):
    """Residual attention module H(z) = (1 + L(z)) * Y(z), eq. 10."""

    def __init__(self, dim: int, *, depth: int = 1, mask_ratio: float = 0.25) -> None:
        """Build the module.

        Args:
            dim: channels of the feature map.
            depth: number of trunk blocks.
            mask_ratio: width of the mask branch relative to `dim` (the paper's "light convs").
        """
        super().__init__()
        self.trunk = nn.Sequential(*[TrunkBlock(dim) for _ in range(depth)])
        self.mask = MaskBranch(dim, max(8, int(dim * mask_ratio)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        return (1 + self.mask(z)) * self.trunk(z)
