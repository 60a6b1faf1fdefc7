"""Emotion recognition in learning scenes supported by smart classrooms: NetVLAD pooling of ViT patch tokens.

Tokens are soft-assigned to K learned cluster centres; the assignment-weighted residuals to each centre are
summed, intra-normalised per centre, flattened and L2-normalised (Arandjelovic et al. 2016). The descriptor has its
own classification head, whose cross-entropy is the paper's M_Y.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class NetVLAD(nn.Module):
    """NetVLAD: V(k) = sum_l a_k(x_l) (x_l - c_k), intra- and L2-normalised ("features through clustering")."""

    def __init__(self, *, dim: int, num_clusters: int) -> None:
        """Build the layer.

        Args:
            dim: token width E.
            num_clusters: number of centres K; the descriptor has K * E entries.
        """
        super().__init__()
        self.num_clusters = num_clusters
        self.dim = dim
        self.out_dim = num_clusters * dim
        # A linear layer on tokens is NetVLAD's 1x1 conv; softmax over K gives the soft assignment.
        self.assign = nn.Linear(dim, num_clusters)
        self.centroids = nn.Parameter(torch.randn(num_clusters, dim) * dim**-0.5)

    def soft_assign(self, tokens: torch.Tensor) -> torch.Tensor:
        """Soft assignment a_k(x_l) of each token to each centre: (N, L, E) -> (N, L, K), summing to 1 over K."""
        return self.assign(tokens).softmax(dim=-1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Pool tokens (N, L, E) into a unit-norm descriptor (N, K * E); token order does not matter."""
        a = self.soft_assign(tokens)  # (N, L, K)
        vlad = torch.einsum("nlk,nle->nke", a, tokens) - a.sum(dim=1).unsqueeze(-1) * self.centroids  # (N, K, E)
        vlad = F.normalize(vlad, dim=-1)  # intra-normalisation: each centre contributes equally
        return F.normalize(rearrange(vlad, "n k e -> n (k e)"), dim=-1)
