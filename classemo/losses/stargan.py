"""StarGAN losses (Choi et al., 2018): WGAN-GP adversarial, domain classification and cycle reconstruction.

With x a real image of domain c', c a target domain and D = (D_src, D_cls):

    L_D = -E[D_src(x)] + E[D_src(G(x, c))] + lambda_cls * CE(D_cls(x), c') + lambda_gp * E[(||grad D_src(x^)|| - 1)^2]
    L_G = -E[D_src(G(x, c))] + lambda_cls * CE(D_cls(G(x, c)), c) + lambda_rec * E|x - G(G(x, c), c')|

where x^ is a random interpolation between x and G(x, c) (Gulrajani et al., 2017). D_src is a PatchGAN map; its
mean over patches is the critic score.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Critic = Callable[[Tensor], tuple[Tensor, Tensor]]  # x -> (src (N, 1, h, w), cls (N, C))


def interpolate(real: Tensor, fake: Tensor, alpha: Tensor | None = None) -> Tensor:
    """x^ = alpha * real + (1 - alpha) * fake, detached from both and requiring grad (the GP's input)."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], device=real.device, dtype=real.dtype)
    a = alpha.view(-1, 1, 1, 1)
    return (a * real.detach() + (1 - a) * fake.detach()).requires_grad_(True)


def penalty_of(src_hat: Tensor, x_hat: Tensor) -> Tensor:
    """E[(||grad_x^ D_src(x^)||_2 - 1)^2] from the critic's map `src_hat` of `x_hat`, keeping the graph."""
    # The critic score of a sample is the mean over its patches, as in the adversarial terms.
    score = src_hat.flatten(1).mean(dim=1)  # (N,)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor, alpha: Tensor | None = None) -> Tensor:
    """WGAN-GP term E[(||grad_x^ D_src(x^)||_2 - 1)^2] on x^ = alpha * real + (1 - alpha) * fake.

    Args:
        critic: The discriminator; only its first output (the real/fake map) is used.
        real: Real images `(N, 3, H, W)`.
        fake: Generated images of the same shape (detached from G).
        alpha: Interpolation weights `(N,)`; uniform random per sample when None.
    """
    x_hat = interpolate(real, fake, alpha)
    src, _ = critic(x_hat)
    return penalty_of(src, x_hat)


def discriminator_loss(critic: Critic, real: Tensor, fake: Tensor, labels: Tensor, *, lambda_cls: float = 1.0,
                       lambda_gp: float = 10.0) -> dict[str, Tensor]:
    """L_D and its terms.

    Args:
        critic: The discriminator.
        real: Real images `(N, 3, H, W)` in [-1, 1].
        fake: G(real, target), detached from G.
        labels: Domains of the real images `(N,)`.
        lambda_cls: Weight of the real-image domain-classification loss.
        lambda_gp: Weight of the gradient penalty.

    Returns:
        `total`, `adv_real` (-E D_src(x)), `adv_fake` (E D_src(G(x, c))), `cls`, `gp` (all scalars).
    """
    n = real.shape[0]
    x_hat = interpolate(real, fake)
    # One critic pass over [real; fake; x^]: under DDP every forward before a backward syncs buffers and arms the
    # reducer, so three passes would triple that; the PatchGAN has no batch statistics, so the result is the same.
    src, cls_all = critic(torch.cat([real, fake.detach(), x_hat]))
    src_real, src_fake, src_hat = src[:n], src[n:2 * n], src[2 * n:]
    cls_real = cls_all[:n]
    adv_real = -src_real.mean()
    adv_fake = src_fake.mean()
    cls = F.cross_entropy(cls_real, labels.long())
    gp = penalty_of(src_hat, x_hat)
    total = adv_real + adv_fake + lambda_cls * cls + lambda_gp * gp
    return {"total": total, "adv_real": adv_real, "adv_fake": adv_fake, "cls": cls, "gp": gp}


def generator_loss(critic: Critic, real: Tensor, fake: Tensor, reconstructed: Tensor, targets: Tensor, *,
                   lambda_cls: float = 1.0, lambda_rec: float = 10.0) -> dict[str, Tensor]:
    """L_G and its terms.

    Args:
        critic: The discriminator (its parameters are not updated by this loss's optimiser).
        real: Real images `(N, 3, H, W)`.
        fake: G(real, targets).
        reconstructed: G(fake, original domains), the cycle back.
        targets: Target domains `(N,)` of `fake`.
        lambda_cls: Weight of the fake-image domain-classification loss.
        lambda_rec: Weight of the L1 cycle-reconstruction loss.

    Returns:
        `total`, `adv`, `cls`, `rec` (all scalars).
    """
    src_fake, cls_fake = critic(fake)
    adv = -src_fake.mean()
    cls = F.cross_entropy(cls_fake, targets.long())
    rec = (real - reconstructed).abs().mean()
    total = adv + lambda_cls * cls + lambda_rec * rec
    return {"total": total, "adv": adv, "cls": cls, "rec": rec}
