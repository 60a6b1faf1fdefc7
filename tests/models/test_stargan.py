"""StarGAN model and losses: shapes, finite losses, gradients, the gradient penalty by hand, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor, nn

from classemo.checkpoint import CheckpointError, load_checkpoint
from classemo.labels import LabelSet
from classemo.losses.stargan import discriminator_loss, generator_loss, gradient_penalty
from classemo.models import create_model, list_models
from classemo.models.stargan import StarGAN
from classemo.training.stargan import StarGANTrainConfig, make_optimizers, save_stargan, stargan_step

PRESETS = list_models("stargan_")
NUM_DOMAINS = 4


def _build(name: str, image_size: int = 32) -> StarGAN:
    torch.manual_seed(0)
    return create_model(name, num_domains=NUM_DOMAINS, image_size=image_size)


def test_presets_are_registered() -> None:
    assert PRESETS == ["stargan_base", "stargan_tiny"]
    assert create_model("stargan_tiny").image_size == 64
    assert create_model("stargan_base", num_domains=3).image_size == 128


@pytest.mark.parametrize("name", PRESETS)
def test_shapes_range_and_finite_losses(name: str) -> None:
    gan = _build(name, image_size=64)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    labels, targets = torch.tensor([0, 3]), torch.tensor([2, 1])
    fake = gan(x, targets)
    assert fake.shape == x.shape
    assert fake.abs().max() <= 1.0  # tanh output: same range as the inputs
    # one-hot targets give the same translation as indices
    torch.testing.assert_close(gan(x, nn.functional.one_hot(targets, NUM_DOMAINS).float()), fake)
    src, cls = gan.discriminator(x)
    assert src.shape[:2] == (2, 1) and src.shape[2] == src.shape[3] >= 1
    assert cls.shape == (2, NUM_DOMAINS)
    d = discriminator_loss(gan.discriminator, x, fake.detach(), labels, lambda_cls=1.0, lambda_gp=10.0)
    g = generator_loss(gan.discriminator, x, fake, gan(fake, labels), targets, lambda_cls=1.0, lambda_rec=10.0)
    assert set(d) == {"total", "adv_real", "adv_fake", "cls", "gp"} and set(g) == {"total", "adv", "cls", "rec"}
    for value in [*d.values(), *g.values()]:
        assert value.ndim == 0 and torch.isfinite(value)
    torch.testing.assert_close(d["total"], d["adv_real"] + d["adv_fake"] + d["cls"] + 10 * d["gp"])
    torch.testing.assert_close(g["total"], g["adv"] + g["cls"] + 10 * g["rec"])


def test_every_parameter_gets_a_gradient() -> None:
    gan = _build("stargan_tiny")
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    labels, targets = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    fake = gan(x, targets)
    g = generator_loss(gan.discriminator, x, fake, gan(fake, labels), targets)
    g["total"].backward()
    gan.discriminator.zero_grad()
    d = discriminator_loss(gan.discriminator, x, fake.detach(), labels)
    d["total"].backward()
    missing = [n for n, p in gan.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


class LinearCritic(nn.Module):
    """A critic D_src(x) = <w, x> (one patch) whose input gradient is w for every x."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        src = (x.flatten(1) * self.w.flatten()).sum(dim=1)  # (N,)
        return src.view(-1, 1, 1, 1), torch.zeros(x.shape[0], 2)


class QuadraticCritic(nn.Module):
    """D_src(x) = sum(x^2) over 4 equal patches' mean; gradient of the per-sample score is 2x / 4."""

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        per_patch = (x**2).sum(dim=(1, 2, 3)).view(-1, 1, 1, 1).expand(-1, 1, 2, 2)  # (N, 1, 2, 2)
        return per_patch / 4, torch.zeros(x.shape[0], 2)


def test_gradient_penalty_matches_hand_computation_linear() -> None:
    # ||grad|| = ||w|| = sqrt(9 + 16) = 5 for every interpolate, so GP = (5 - 1)^2 = 16.
    w = torch.zeros(1, 1, 2, 2)
    w[0, 0, 0, 0], w[0, 0, 1, 1] = 3.0, 4.0
    real, fake = torch.randn(5, 1, 2, 2), torch.randn(5, 1, 2, 2)
    gp = gradient_penalty(LinearCritic(w), real, fake)
    torch.testing.assert_close(gp, torch.tensor(16.0))


def test_gradient_penalty_matches_hand_computation_quadratic() -> None:
    # The per-sample score is mean over patches of sum(x^2)/4 = sum(x^2)/4, so grad = x_hat / 2.
    real = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 6.0]]]])
    fake = torch.zeros_like(real)
    alpha = torch.tensor([0.5, 1.0])
    # x_hat_0 = [1, 0, 0, 0] -> ||grad|| = 0.5 -> 0.25; x_hat_1 = [0, 0, 0, 6] -> ||grad|| = 3 -> 4.
    gp = gradient_penalty(QuadraticCritic(), real, fake, alpha=alpha)
    torch.testing.assert_close(gp, torch.tensor((0.25 + 4.0) / 2))
    # create_graph: the penalty itself can be back-propagated into D (needed to train D with it)
    critic = LinearCritic(torch.full((1, 1, 2, 2), 0.2))
    gradient_penalty(critic, real, fake).backward()
    assert critic.w.grad is not None and critic.w.grad.abs().sum() > 0


def test_discriminator_loss_runs_the_critic_once_and_matches_separate_passes() -> None:
    torch.manual_seed(0)
    model = create_model("stargan_tiny", num_domains=3, image_size=32)
    D = model.discriminator
    calls = []
    D.register_forward_hook(lambda *_: calls.append(1))
    real, fake, labels = torch.rand(4, 3, 32, 32) * 2 - 1, torch.rand(4, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 0])
    torch.manual_seed(1)
    terms = discriminator_loss(D, real, fake, labels)
    assert len(calls) == 1  # one forward before the backward, as DDP expects
    # The same terms from three separate passes, with the same interpolation weights.
    torch.manual_seed(1)
    alpha = torch.rand(4)
    src_real, cls_real = D(real)
    src_fake, _ = D(fake)
    torch.testing.assert_close(terms["adv_real"], -src_real.mean())
    torch.testing.assert_close(terms["adv_fake"], src_fake.mean())
    torch.testing.assert_close(terms["cls"], nn.functional.cross_entropy(cls_real, labels))
    torch.testing.assert_close(terms["gp"], gradient_penalty(D, real, fake, alpha=alpha), rtol=1e-4, atol=1e-5)


def test_stargan_step_updates_d_every_step_and_g_every_n_critic() -> None:
    gan = _build("stargan_tiny")
    cfg = StarGANTrainConfig(n_critic=2)
    opt_g, opt_d = make_optimizers(gan.generator, gan.discriminator, cfg)
    x, y = torch.rand(4, 3, 32, 32) * 2 - 1, torch.tensor([0, 1, 2, 3])
    g_before = [p.detach().clone() for p in gan.generator.parameters()]
    first = stargan_step(gan.generator, gan.discriminator, opt_g, opt_d, x, y, 0, cfg)
    assert set(first) == {"d_total", "d_adv_real", "d_adv_fake", "d_cls", "d_gp"}
    assert all(torch.equal(a, b) for a, b in zip(g_before, gan.generator.parameters()))
    second = stargan_step(gan.generator, gan.discriminator, opt_g, opt_d, x, y, 1, cfg)
    assert {"g_total", "g_adv", "g_cls", "g_rec"} <= set(second)
    assert not all(torch.equal(a, b) for a, b in zip(g_before, gan.generator.parameters()))
    assert all(isinstance(v, float) for v in second.values())


def test_bad_config_and_sizes_are_named() -> None:
    with pytest.raises(ValueError, match="n_critic"):
        StarGANTrainConfig(n_critic=0)
    with pytest.raises(ValueError, match="lambda_gp"):
        StarGANTrainConfig(lambda_gp=-1.0)
    with pytest.raises(ValueError, match="divisible"):
        create_model("stargan_tiny", image_size=40)
    with pytest.raises(ValueError, match="at least 2 domains"):
        create_model("stargan_tiny", num_domains=1)


def test_checkpoint_round_trip(tmp_path) -> None:  # noqa: ANN001
    gan = _build("stargan_tiny")
    labels = LabelSet(("happy", "sad", "anger", "neutral"))
    save_stargan(gan, tmp_path / "generator", labels=labels, train_config={"n_critic": 5},
                 discriminator_dir=tmp_path / "discriminator")
    config = json.loads((tmp_path / "generator" / "config.json").read_text())
    assert config["kind"] == "stargan" and config["model"]["name"] == "stargan_tiny"
    assert LabelSet.from_list(config["labels"]) == labels
    gen, _ = load_checkpoint(tmp_path / "generator")
    assert gen.discriminator is None  # the augmentation checkpoint carries only G
    full, _ = load_checkpoint(tmp_path / "discriminator")
    x, t = torch.rand(2, 3, 32, 32) * 2 - 1, torch.tensor([1, 3])
    gan.eval()
    with torch.no_grad():
        torch.testing.assert_close(gen(x, t), gan(x, t))
        torch.testing.assert_close(full.discriminator(x)[1], gan.discriminator(x)[1])
    with pytest.raises(ValueError, match="4 domains but 3 labels"):
        save_stargan(gan, tmp_path / "bad", labels=LabelSet(("happy", "sad", "anger")))
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load_checkpoint(tmp_path / "nowhere")
