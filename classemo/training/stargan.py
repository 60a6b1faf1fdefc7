"""Plain-PyTorch StarGAN training (Choi et al., 2018): one step, a small loop, D's domain accuracy, checkpoints.

The Ray job calls `stargan_step` once per batch; `train_stargan` is the same loop for tests and CPU demos. The
discriminator is updated every step and the generator every `n_critic` steps, as in WGAN-GP.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor, nn
from torchmetrics.functional.classification import multiclass_accuracy

from classemo.checkpoint import save_checkpoint
from classemo.labels import LabelSet
from classemo.losses.stargan import discriminator_loss, generator_loss
from classemo.models.stargan import StarGAN, generator_only


@dataclass
class StarGANTrainConfig:
    """Optimiser and loss settings of StarGAN training (defaults: Choi et al. 2018, Section 5)."""

    lr_g: float = 1e-4  # generator Adam learning rate
    lr_d: float = 1e-4  # discriminator Adam learning rate
    betas: tuple[float, float] = (0.5, 0.999)  # Adam betas; beta1 = 0.5 is the usual GAN choice
    n_critic: int = 5  # discriminator updates per generator update
    lambda_cls: float = 1.0  # domain-classification loss weight
    lambda_rec: float = 10.0  # cycle-reconstruction loss weight
    lambda_gp: float = 10.0  # gradient-penalty weight
    grad_clip: float = 0.0  # max grad norm for both nets (0 = off)

    def __post_init__(self) -> None:
        if self.n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {self.n_critic}")
        for name in ("lr_g", "lr_d"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("lambda_cls", "lambda_rec", "lambda_gp", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))


def make_optimizers(G: nn.Module, D: nn.Module, cfg: StarGANTrainConfig
                    ) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
    """Adam for G and D with the config's learning rates and betas."""
    return (torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=cfg.betas),
            torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=cfg.betas))


def other_domains(labels: Tensor, num_domains: int, generator: torch.Generator | None = None) -> Tensor:
    """A random domain different from each label `(N,)`: translating into one's own domain teaches nothing."""
    shift = torch.randint(1, num_domains, labels.shape, generator=generator, device="cpu").to(labels.device)
    return (labels.long() + shift) % num_domains


def stargan_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                 images: Tensor, labels: Tensor, step: int, cfg: StarGANTrainConfig) -> dict[str, float]:
    """One StarGAN iteration: a D update, and a G update when `step % n_critic == n_critic - 1`.

    Args:
        G: Generator G(x, c) (may be DDP-wrapped).
        D: Discriminator x -> (src, cls) (may be DDP-wrapped).
        opt_g: Generator optimiser.
        opt_d: Discriminator optimiser.
        images: Real peak frames `(N, 3, S, S)` in [-1, 1].
        labels: Their domains `(N,)`.
        step: Global iteration counter (0-based); decides whether G is updated.
        cfg: Loss weights and schedule.

    Returns:
        `d_total, d_adv_real, d_adv_fake, d_cls, d_gp` and, on G steps, `g_total, g_adv, g_cls, g_rec`, as floats.
    """
    num_domains = getattr(G, "module", G).num_domains
    labels = labels.long()
    targets = other_domains(labels, num_domains)
    G.train()
    D.train()

    with torch.no_grad():
        fake = G(images, targets)
    d_terms = discriminator_loss(D, images, fake, labels, lambda_cls=cfg.lambda_cls, lambda_gp=cfg.lambda_gp)
    opt_d.zero_grad(set_to_none=True)
    d_terms["total"].backward()
    if cfg.grad_clip > 0:
        nn.utils.clip_grad_norm_(D.parameters(), cfg.grad_clip)
    opt_d.step()
    out = {f"d_{k}": float(v.detach()) for k, v in d_terms.items()}

    if step % cfg.n_critic == cfg.n_critic - 1:
        fake = G(images, targets)
        reconstructed = G(fake, labels)
        # D's parameters get gradients here too; they are cleared by opt_d.zero_grad before its next update.
        g_terms = generator_loss(D, images, fake, reconstructed, targets, lambda_cls=cfg.lambda_cls,
                                 lambda_rec=cfg.lambda_rec)
        opt_g.zero_grad(set_to_none=True)
        g_terms["total"].backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(G.parameters(), cfg.grad_clip)
        opt_g.step()
        out.update({f"g_{k}": float(v.detach()) for k, v in g_terms.items()})
    return out


@torch.no_grad()
def domain_accuracy(D: nn.Module, G: nn.Module, images: Tensor, labels: Tensor, *, seed: int | None = 0) -> float:
    """D's domain-classification accuracy on G's translations of `images` into random other domains.

    High accuracy means the generator really draws the target expression (as D has learned it from real images);
    chance is 1 / num_domains.

    Args:
        D: Discriminator.
        G: Generator.
        images: Real images `(N, 3, S, S)` in [-1, 1].
        labels: Their domains `(N,)`.
        seed: Seed of the target draw, so repeated evaluations compare like with like (None: random).
    """
    num_domains = getattr(G, "module", G).num_domains
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    targets = other_domains(labels, num_domains, gen)
    was_training = (G.training, D.training)
    G.eval()
    D.eval()
    _, cls = D(G(images, targets))
    G.train(was_training[0])
    D.train(was_training[1])
    return float(multiclass_accuracy(cls, targets, num_classes=num_domains, average="micro"))


def train_stargan(G: nn.Module, D: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], steps: int,
                  cfg: StarGANTrainConfig, *, eval_batch: tuple[Tensor, Tensor] | None = None,
                  eval_every: int = 0) -> list[dict[str, float]]:
    """Run `steps` StarGAN iterations over `batches` (cycled when shorter) and return per-step loss dicts.

    Args:
        G: Generator.
        D: Discriminator.
        batches: `(images (N, 3, S, S) in [-1, 1], labels (N,))` pairs.
        steps: Number of iterations (D updates).
        cfg: Training settings.
        eval_batch: Images and labels for `domain_accuracy`, logged as `domain_acc` every `eval_every` steps.
        eval_every: 0 disables the evaluation.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opt_g, opt_d = make_optimizers(G, D, cfg)
    history: list[dict[str, float]] = []
    for step, (images, labels) in zip(range(steps), itertools.cycle(batches)):
        record = {"step": float(step), **stargan_step(G, D, opt_g, opt_d, images, labels, step, cfg)}
        if eval_batch is not None and eval_every > 0 and (step + 1) % eval_every == 0:
            record["domain_acc"] = domain_accuracy(D, G, *eval_batch)
        history.append(record)
    return history


def save_stargan(model: StarGAN, directory: str | Path, *, labels: LabelSet, train_config: dict[str, Any] | None = None,
                 discriminator_dir: str | Path | None = None) -> Path:
    """Write the generator checkpoint (what the augmenter loads) and, optionally, the full G+D pair beside it.

    Args:
        model: A registry-built `StarGAN` (DDP-wrapped is fine).
        directory: Generator checkpoint dir: `model.pt` + `config.json` with `kind: "stargan"`.
        labels: The domains, index i = domain i.
        train_config: Resolved training config to store with it (e.g. `asdict(StarGANTrainConfig)`).
        discriminator_dir: When given, the whole pair (generator + discriminator) is saved there too, so that
            training can resume.
    """
    model = getattr(model, "module", model)
    if model.num_domains != len(labels):
        raise ValueError(f"the StarGAN has {model.num_domains} domains but {len(labels)} labels were given")
    extra = {"labels": labels.to_list(), "kind": "stargan", "train_config": train_config or {}}
    gen = generator_only(model)
    directory = save_checkpoint(gen, {"model": {"name": gen.model_name, "kwargs": gen.model_kwargs}, **extra},
                                directory)
    if discriminator_dir is not None:
        save_checkpoint(model, {"model": {"name": model.model_name, "kwargs": model.model_kwargs}, **extra},
                        discriminator_dir)
    return directory

