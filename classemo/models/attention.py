"""Emotion recognition in learning scenes supported by smart classrooms: multi-head self-attention + FFN.

Scaled dot-product attention per head (eq. 11), heads concatenated and projected (eq. 12), then a position-wise
feed-forward network (eq. 13); pre-norm residual blocks. The same block fuses the spatial streams (Figure 2) and
builds the temporal encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention softmax(w j^T / sqrt(d)) c per head, concatenated and projected, eq. 11-12."""

    def __init__(self, dim: int, *, num_heads: int, dropout: float = 0.0) -> None:
        """Build the attention layer.

        Args:
            dim: token width.
            num_heads: heads; must divide dim.
            dropout: attention dropout (training only).
        """
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Attend over tokens.

        Args:
            x: (B, L, D) tokens.
            key_mask: optional (B, L) bool, True where a token may be attended to (padding is False).

        Returns:
            (B, L, D).
        """
        w, j, c = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.num_heads)
        attn_mask = None if key_mask is None else rearrange(key_mask, "b l -> b 1 1 l")
        out = F.scaled_dot_product_attention(
            w, j, c, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))


class FeedForward(nn.Module):
    """Position-wise feed-forward network max(0, x W1 + b1) W2 + b2 (GELU here), eq. 13."""

    def __init__(self, dim: int, *, hidden_dim: int, dropout: float = 0.0) -> None:
        """Build the FFN.

        Args:
            dim: token width.
            hidden_dim: inner width.
            dropout: dropout after each layer.
        """
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, L, D)."""
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm Transformer block: x + MHSA(LN(x)) (eq. 11-12), then x + FFN(LN(x)) (eq. 13)."""

    def __init__(self, dim: int, *, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        """Build the block.

        Args:
            dim: token width.
            num_heads: attention heads.
            mlp_ratio: FFN width relative to dim.
            dropout: dropout rate.
        """
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, num_heads=num_heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, hidden_dim=int(dim * mlp_ratio), dropout=dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, D) -> (B, L, D); `key_mask` (B, L) bool hides padded tokens from every query."""
        x = x + self.attn(self.norm1(x), key_mask)
        return x + self.ffn(self.norm2(x))
