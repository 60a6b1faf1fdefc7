"""Emotion recognition in learning scenes supported by smart classrooms: temporal Transformer encoder.

Scaled dot-product self-attention over the per-frame features lambda_1..lambda_T, with sinusoidal positions and a
key-padding mask so that padded frames of variable-length clips change nothing; masked mean pooling gives the clip
feature that the class and valence/arousal heads read.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from classemo.models.attention import TransformerBlock


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real frames: x (B, T, D), mask (B, T) bool (True = real) -> (B, D)."""
    weights = mask.to(x.dtype).unsqueeze(-1)  # (B, T, 1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def sinusoidal_positions(num_positions: int, dim: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Vaswani et al. positional encoding (T, D); sinusoidal so clips longer than the training length still work."""
    pos = torch.arange(num_positions, device=device, dtype=torch.float32).unsqueeze(1)  # (T, 1)
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    angles = pos * freq  # (T, ceil(D/2))
    enc = rearrange(torch.stack([angles.sin(), angles.cos()], dim=-1), "t f two -> t (f two)")[:, :dim]
    return enc.to(dtype)


class TemporalEncoder(nn.Module):
    """Temporal Transformer encoder over per-frame features lambda_u^k with masked mean pooling (paper §3.3)."""

    def __init__(self, dim: int, *, depth: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        """Build the encoder.

        Args:
            dim: feature width D.
            depth: Transformer blocks.
            num_heads: attention heads.
            mlp_ratio: FFN width relative to D.
            dropout: dropout rate.
        """
        super().__init__()
        self.blocks = nn.ModuleList(
            [TransformerBlock(dim, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a batch of frame sequences.

        Args:
            features: (B, T, D) per-frame features.
            mask: (B, T) bool, True = real frame; every clip needs at least one.

        Returns:
            Per-frame outputs (B, T, D) and the pooled clip feature (B, D).
        """
        x = features + sinusoidal_positions(features.shape[1], features.shape[2], device=features.device,
                                            dtype=features.dtype)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        return x, masked_mean(x, mask)
