"""StarGAN: Unified Generative Adversarial Networks for Multi-Domain Image-to-Image Translation (Choi et al., 2018).

"Emotion recognition in learning scenes supported by smart classrooms" uses it to redraw each student's peak frame
under the other expressions (the M_H batch). One generator is conditioned on the target domain (an expression),
given as a one-hot vector broadcast to image-sized channels; a PatchGAN discriminator has a real/fake patch output
and an auxiliary domain-classification head. Images are in [-1, 1] (the generator ends in tanh). Losses live in
`classemo.losses.stargan`, the train step in `classemo.training.stargan`.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import repeat
from torch import Tensor, nn

from classemo.models.registry import create_model, register_model


class ResidualBlock(nn.Module):
    """Generator bottleneck block: conv-IN-ReLU-conv-IN plus identity (Choi et al. 2018, Appendix, Table 4)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, bias=False),
            nn.InstanceNorm2d(dim, affine=True),
            nn.ReLU(inplace=True),
            nn.Conv2d(dim, dim, 3, padding=1, bias=False),
            nn.InstanceNorm2d(dim, affine=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _conv_in_relu(cin: int, cout: int, kernel: int, stride: int, padding: int, *, transpose: bool = False
                  ) -> list[nn.Module]:
    conv = nn.ConvTranspose2d if transpose else nn.Conv2d
    # InstanceNorm without running statistics: eval then normalises exactly as training did (Choi's code tracks
    # running stats, which makes eval-mode translations drift from what the losses saw).
    return [conv(cin, cout, kernel, stride, padding, bias=False), nn.InstanceNorm2d(cout, affine=True),
            nn.ReLU(inplace=True)]


class Generator(nn.Module):
    """StarGAN generator G(x, c): down-sampling encoder, residual blocks, up-sampling decoder, tanh output."""

    def __init__(self, *, num_domains: int, conv_dim: int = 64, num_res_blocks: int = 6, num_down: int = 2) -> None:
        super().__init__()
        self.num_domains = num_domains
        layers = _conv_in_relu(3 + num_domains, conv_dim, 7, 1, 3)
        dim = conv_dim
        for _ in range(num_down):
            layers += _conv_in_relu(dim, dim * 2, 4, 2, 1)
            dim *= 2
        layers += [ResidualBlock(dim) for _ in range(num_res_blocks)]
        for _ in range(num_down):
            layers += _conv_in_relu(dim, dim // 2, 4, 2, 1, transpose=True)
            dim //= 2
        layers += [nn.Conv2d(dim, 3, 7, padding=3, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        """Translate `x (N, 3, H, W)` in [-1, 1] into the domains `target` (`(N,)` indices or `(N, C)` one-hot)."""
        if target.ndim == 1:
            target = nn.functional.one_hot(target.long(), self.num_domains).to(x.dtype)  # (N, C)
        c = repeat(target.to(x.dtype), "n c -> n c h w", h=x.shape[2], w=x.shape[3])
        return self.net(torch.cat([x, c], dim=1))  # (N, 3, H, W)


class Discriminator(nn.Module):
    """StarGAN PatchGAN discriminator: D_src (real/fake per patch) and D_cls (domain logits), Choi et al. eq. 1-3."""

    def __init__(self, *, num_domains: int, image_size: int, conv_dim: int = 64, num_layers: int = 6) -> None:
        super().__init__()
        if image_size % (2 ** num_layers) != 0:
            raise ValueError(f"image_size {image_size} must be divisible by 2**num_layers = {2 ** num_layers}")
        # No normalisation layers: the WGAN-GP penalty is defined per sample, which batch statistics would break.
        layers: list[nn.Module] = [nn.Conv2d(3, conv_dim, 4, 2, 1), nn.LeakyReLU(0.01)]
        dim = conv_dim
        for _ in range(num_layers - 1):
            layers += [nn.Conv2d(dim, dim * 2, 4, 2, 1), nn.LeakyReLU(0.01)]
            dim *= 2
        self.trunk = nn.Sequential(*layers)
        self.src = nn.Conv2d(dim, 1, 3, 1, 1, bias=False)
        self.cls = nn.Conv2d(dim, num_domains, image_size // 2 ** num_layers, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Return real/fake scores `(N, 1, h, w)` per patch and domain logits `(N, C)`."""
        h = self.trunk(x)
        return self.src(h), self.cls(h).flatten(1)


class StarGAN(nn.Module):
    """The StarGAN pair (generator, optional discriminator); `forward` is the generator's translation G(x, c)."""

    def __init__(self, *, num_domains: int = 7, image_size: int = 128, conv_dim: int = 64, num_res_blocks: int = 6,
                 d_conv_dim: int = 64, d_num_layers: int = 6, discriminator: bool = True) -> None:
        super().__init__()
        if num_domains < 2:
            raise ValueError(f"StarGAN needs at least 2 domains, got {num_domains}")
        if image_size % 4 != 0:
            raise ValueError(f"image_size must be divisible by 4 (two down-sampling steps), got {image_size}")
        self.num_domains = num_domains
        self.image_size = image_size
        self.generator = Generator(num_domains=num_domains, conv_dim=conv_dim, num_res_blocks=num_res_blocks)
        self.discriminator = (Discriminator(num_domains=num_domains, image_size=image_size, conv_dim=d_conv_dim,
                                            num_layers=d_num_layers) if discriminator else None)

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        return self.generator(x, target)


def _create(name: str, model_args: dict[str, Any], kwargs: dict[str, Any]) -> StarGAN:
    """Build a preset as `StarGAN(**dict(model_args, **kwargs))`, remembering how to rebuild it."""
    model = StarGAN(**dict(model_args, **kwargs))
    model.model_name = name
    model.model_kwargs = dict(kwargs)
    return model


@register_model
def stargan_tiny(**kwargs: Any) -> StarGAN:
    """CPU preset: 64 px, 16 conv channels, 2 residual blocks, 4-layer D (also runs at 32 px for tests)."""
    model_args = dict(image_size=64, conv_dim=16, num_res_blocks=2, d_conv_dim=16, d_num_layers=4)
    return _create("stargan_tiny", model_args, kwargs)


@register_model
def stargan_base(**kwargs: Any) -> StarGAN:
    """GPU preset after Choi et al.: 128 px, 64 conv channels, 6 residual blocks, 6-layer D."""
    model_args = dict(image_size=128, conv_dim=64, num_res_blocks=6, d_conv_dim=64, d_num_layers=6)
    return _create("stargan_base", model_args, kwargs)


def generator_only(model: StarGAN) -> StarGAN:
    """A copy of `model`'s generator without the discriminator (what an augmentation checkpoint needs)."""
    model = getattr(model, "module", model)  # unwrap DDP
    out = create_model(model.model_name, **{**model.model_kwargs, "discriminator": False})
    out.generator.load_state_dict(model.generator.state_dict())
    return out
