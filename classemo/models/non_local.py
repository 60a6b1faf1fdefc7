"""Emotion recognition in learning scenes supported by smart classrooms: non-local block.

A 1x1 conv maps z into phi, rho and h; the pairwise score is d(z_u, z_k) = (W_phi z_u)^T (W_rho z_k), and
t_u = 1/V(z) sum_k d(z_u, z_k) h(z_k) with V(z) the number of positions ("dot product" non-local, Wang et al. 2018),
followed by an output projection and a residual connection (steps 1-3).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class NonLocalBlock(nn.Module):
    """Non-local block z + W_o t, t_u = 1/V(z) sum_k (W_phi z_u)^T (W_rho z_k) h(z_k) (steps 1-3)."""

    def __init__(self, dim: int, *, inner_dim: int | None = None) -> None:
        """Build the block.

        Args:
            dim: channels of the feature map.
            inner_dim: channels of phi, rho and h (default dim // 2, as in Wang et al.).
        """
        super().__init__()
        inner_dim = inner_dim or max(1, dim // 2)
        self.phi = nn.Conv2d(dim, inner_dim, 1)
        self.rho = nn.Conv2d(dim, inner_dim, 1)
        self.h = nn.Conv2d(dim, inner_dim, 1)
        self.out = nn.Sequential(nn.Conv2d(inner_dim, dim, 1, bias=False), nn.BatchNorm2d(dim))
        # BN scale 0 makes W_o t = 0 at init, so the block starts as identity and cannot disturb the backbone.
        nn.init.zeros_(self.out[1].weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, H, W)."""
        height, width = z.shape[-2:]
        phi = rearrange(self.phi(z), "n c h w -> n (h w) c")
        rho = rearrange(self.rho(z), "n c h w -> n (h w) c")
        val = rearrange(self.h(z), "n c h w -> n (h w) c")
        scores = phi @ rho.transpose(1, 2) / (height * width)  # (N, V, V), divided by V(z)
        t = rearrange(scores @ val, "n (h w) c -> n c h w", h=height, w=width)
        return z + self.out(t)
