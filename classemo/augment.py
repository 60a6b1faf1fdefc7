"""StarGAN augmentation of peak frames: the M_H batch and the translation grid.

"Emotion recognition in learning scenes supported by smart classrooms": the student's peak frame is redrawn by a
StarGAN generator under other expressions, mixed with the real peak frames and fed to the ViT; the cross-entropy on
that mixed batch is M_H. The peak frames come from the one peak rule, `classemo.data.peak`; see docs/stargan.md
for that rule and the mixing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from classemo.checkpoint import CheckpointError, load_checkpoint, read_config
from classemo.labels import LabelSet
from classemo.preprocessing import DEFAULT_MEAN, DEFAULT_STD, GAN_MEAN, GAN_STD

log = logging.getLogger(__name__)


def mix_counts(num_real: int, num_generated: int, real_ratio: float) -> tuple[int, int]:
    """How many real and generated frames to keep so that real / (real + generated) is `real_ratio`.

    All real frames are kept while enough generated ones exist; otherwise real frames are dropped instead.
    """
    if not 0.0 <= real_ratio <= 1.0:
        raise ValueError(f"real_ratio must lie in [0, 1], got {real_ratio}")
    if real_ratio == 1.0 or num_generated == 0:
        return num_real, 0
    if real_ratio == 0.0:
        return 0, num_generated
    wanted = round(num_real * (1.0 - real_ratio) / real_ratio)
    if wanted <= num_generated:
        return num_real, wanted
    return min(num_real, round(num_generated * real_ratio / (1.0 - real_ratio))), num_generated


class StarGANAugmenter:
    """Builds the M_H batch: real peak frames plus StarGAN translations into other expressions, mixed by ratio."""

    def __init__(self, model: nn.Module | None, *, per_clip: int = 1, real_ratio: float = 0.5,
                 mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD,
                 labels: LabelSet | None = None, device: str | torch.device | None = None, seed: int | None = None
                 ) -> None:
        """Args:
            model: A `StarGAN` (only its generator is used), or None to turn augmentation off.
            per_clip: Generated frames per clip (k), each in a different other domain.
            real_ratio: Fraction of real frames in the returned batch.
            mean: Per-channel mean of the unified model's normalisation.
            std: Per-channel std of the unified model's normalisation.
            labels: The generator's domains (from its checkpoint).
            device: Where the generator runs (default: CPU).
            seed: Seed of the target-domain and mixing draws (None: random).
        """
        mix_counts(1, 1, real_ratio)  # validates the ratio
        if per_clip < 0:
            raise ValueError(f"per_clip must be >= 0, got {per_clip}")
        if model is not None and per_clip > model.num_domains - 1:
            raise ValueError(f"per_clip={per_clip} asks for more other domains than the {model.num_domains - 1} "
                             f"that exist")
        self.device = torch.device(device or "cpu")
        self.generator = model.generator.to(self.device).eval() if model is not None else None
        self.image_size = model.image_size if model is not None else None
        self.num_domains = model.num_domains if model is not None else None
        self.per_clip, self.real_ratio, self.labels = per_clip, real_ratio, labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.gan_mean = torch.tensor(GAN_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
        self.gan_std = torch.tensor(GAN_STD, dtype=torch.float32).view(1, 3, 1, 1)
        self.rng = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**31, ()).item()))
        self._warned = False

    @classmethod
    def from_checkpoint(cls, directory: str | Path | None, *, per_clip: int = 1, real_ratio: float = 0.5,
                        **kwargs: object) -> "StarGANAugmenter":
        """Load the generator checkpoint written by `classemo.training.stargan.save_stargan` (None: off).

        Keyword arguments go to the constructor (mean, std, device, seed).
        """
        if directory is None:
            return cls(None, per_clip=per_clip, real_ratio=real_ratio, **kwargs)
        config = read_config(directory)
        if config.get("kind") != "stargan":
            raise CheckpointError(f"{directory} is a {config.get('kind', 'non-StarGAN')!r} checkpoint, not a StarGAN "
                                  f"generator (config kind must be 'stargan')")
        model, config = load_checkpoint(directory)
        labels = LabelSet.from_list(config["labels"]) if "labels" in config else None
        return cls(model, per_clip=per_clip, real_ratio=real_ratio, labels=labels, **kwargs)

    @property
    def enabled(self) -> bool:
        return self.generator is not None and self.per_clip > 0 and self.real_ratio < 1.0

    def _to_gan(self, x: Tensor) -> Tensor:
        """Model space (normalised, size S) -> GAN space ([-1, 1], the GAN's size)."""
        x01 = x * self.std.to(x) + self.mean.to(x)
        x = (x01 - self.gan_mean.to(x)) / self.gan_std.to(x)
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return x.clamp(-1.0, 1.0)

    def _from_gan(self, y: Tensor, size: int) -> Tensor:
        """GAN space -> model space at side `size`."""
        if y.shape[-1] != size:
            y = F.interpolate(y, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x01 = y.clamp(-1.0, 1.0) * self.gan_std.to(y) + self.gan_mean.to(y)
        return (x01 - self.mean.to(y)) / self.std.to(y)

    def targets_for(self, labels: Tensor) -> Tensor:
        """`per_clip` distinct other domains per clip, `(N, k)`."""
        n, c = labels.shape[0], self.num_domains
        offsets = torch.stack([torch.randperm(c - 1, generator=self.rng)[: self.per_clip] for _ in range(n)])  # (N, k)
        return (labels.long().cpu().view(-1, 1) + 1 + offsets) % c

    @torch.no_grad()
    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The M_H batch from peak frames `images (N, 3, S, S)` (model space) and their labels `(N,)`.

        Returns:
            `(images (M, 3, S, S), targets (M,))`: kept real peaks first (target = their label), then generated
            frames (target = the domain they were translated into); real / M equals `real_ratio` up to rounding.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"peak frames must be (N, 3, S, S), got shape {tuple(images.shape)}")
        if labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} peak frames but {labels.shape[0]} labels")
        if not self.enabled:
            if self.generator is None and not self._warned:
                log.warning("no StarGAN generator checkpoint: M_H uses the real peak frames only")
                self._warned = True
            return images, labels
        if int(labels.max()) >= self.num_domains or int(labels.min()) < 0:
            raise ValueError(f"labels must lie in [0, {self.num_domains}), the generator's domains; got "
                             f"{labels.min().item()}..{labels.max().item()}")
        n, size = images.shape[0], images.shape[-1]
        n_real, n_gen = mix_counts(n, n * self.per_clip, self.real_ratio)
        real_idx = torch.randperm(n, generator=self.rng)[:n_real]
        # Pick which (clip, domain) pairs to draw, then run G only on those.
        slots = torch.randperm(n * self.per_clip, generator=self.rng)[:n_gen]
        clip_idx = slots // self.per_clip
        domain = self.targets_for(labels).flatten()[slots]  # (n_gen,)
        device = images.device
        out_images, out_targets = [images[real_idx.to(device)]], [labels[real_idx.to(labels.device)].long()]
        if n_gen > 0:
            src = self._to_gan(images[clip_idx.to(device)]).to(self.device)
            fake = self.generator(src, domain.to(self.device))
            out_images.append(self._from_gan(fake, size).to(device, images.dtype))
            out_targets.append(domain.to(labels.device))
        return torch.cat(out_images), torch.cat(out_targets)


@torch.no_grad()
def save_translation_grid(G: nn.Module, images: Tensor, labels: Tensor, label_names: Sequence[str],
                          path: str | Path) -> Path:
    """PNG grid: one row per input, its real image then its translation into every domain (column titles).

    Args:
        G: Generator (or a `StarGAN`) taking `(x, target)`.
        images: Inputs `(N, 3, S, S)` in [-1, 1].
        labels: Their domains `(N,)`.
        label_names: Domain names, index i = domain i.
        path: Output PNG.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure state

    was_training = G.training
    G.eval()
    n, c = images.shape[0], len(label_names)
    rows = [[images[i]] + [G(images[i: i + 1], torch.tensor([d], device=images.device))[0] for d in range(c)]
            for i in range(n)]
    G.train(was_training)
    fig = Figure(figsize=(1.3 * (c + 1), 1.3 * n + 0.3))
    axes = fig.subplots(n, c + 1, squeeze=False)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            ax = axes[i][j]
            ax.imshow(((img.float().cpu().permute(1, 2, 0).clamp(-1, 1) + 1) / 2).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("input" if j == 0 else label_names[j - 1], fontsize=8)
            if j == 0:
                ax.set_ylabel(label_names[int(labels[i])], fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
