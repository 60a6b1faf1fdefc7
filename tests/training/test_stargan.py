"""A short, seeded StarGAN run on synthetic faces: D recognises the target expressions, and the cycle term trains G.

What these tests assert holds on any x86-64 CPU. A seeded GAN run is not bit-portable across CPUs (oneDNN and ATen
pick other kernels with and without AVX-512), and in 300 steps the full objective's cycle loss wanders: on this
project's AVX-512 hosts it went 0.380 -> 0.332, with AVX2 kernels (`ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2`, as on an EPYC without AVX-512) 0.380 -> 0.471, over seeds 0-2 its lowest 10-step mean was
0.77-0.93 of its start. So the full run checks the domain property, which reached 1.000 in every one of those runs,
and keeps the cycle loss bounded; the cycle term is checked on its own, where it falls on every CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from classemo.augment import StarGANAugmenter, save_translation_grid
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.synth.face import FaceIdentity
from classemo.synth.render import render_face
from classemo.training.stargan import (StarGANTrainConfig, domain_accuracy, other_domains, save_stargan,
                                       train_stargan)

DOMAINS = LabelSet(("happy", "sad", "fear"))
SIZE, STEPS, BATCH = 32, 300, 16
# lambda_cls = 5 instead of Choi's 1: in a short run the WGAN-GP terms otherwise swamp D's domain head, which then
# stays at chance (measured: D's real-image CE stayed at ln 3 with lambda_cls = 1); lr 1e-3 for the same reason.
CONFIG = StarGANTrainConfig(lr_g=1e-3, lr_d=1e-3, n_critic=2, lambda_cls=5.0)


def _faces(subjects: int, per_face: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Apex faces of `subjects` identities in every domain, in [-1, 1]: `(N, 3, S, S)`, `(N,)`."""
    rng = np.random.default_rng(seed)
    idents = [FaceIdentity.random(rng, f"s{i}") for i in range(subjects)]
    images, labels = [], []
    for i, ident in enumerate(idents):
        for c, name in enumerate(DOMAINS.names):
            for r in range(per_face):
                images.append(render_face(ident, name, 1.0, size=SIZE, rng=np.random.default_rng([seed, i, c, r]),
                                          jitter=0.3))
                labels.append(c)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 3, S, S)
    return x, torch.tensor(labels)


def test_short_training_reduces_cycle_loss_and_reaches_target_domains(tmp_path) -> None:  # noqa: ANN001
    train_x, train_y = _faces(subjects=8, per_face=3, seed=0)
    held_x, held_y = _faces(subjects=4, per_face=1, seed=1)  # people the GAN never saw
    torch.manual_seed(0)
    gan = create_model("stargan_tiny", num_domains=len(DOMAINS), image_size=SIZE)
    order = torch.Generator().manual_seed(0)
    batches = [(train_x[idx], train_y[idx])
               for idx in (torch.randperm(len(train_x), generator=order)[:BATCH] for _ in range(STEPS))]

    before = domain_accuracy(gan.discriminator, gan.generator, held_x, held_y)
    history = train_stargan(gan.generator, gan.discriminator, batches, STEPS, CONFIG)
    after = domain_accuracy(gan.discriminator, gan.generator, held_x, held_y)

    rec = [h["g_rec"] for h in history if "g_rec" in h]
    assert len(rec) == STEPS // CONFIG.n_critic
    rec_first, rec_last = float(np.mean(rec[:5])), float(np.mean(rec[-5:]))
    d_cls_last = float(np.mean([h["d_cls"] for h in history[-10:]]))
    print(f"\ncycle L1 {rec_first:.3f} -> {rec_last:.3f}; D domain accuracy on generated held-out faces "
          f"{before:.3f} -> {after:.3f} (chance {1 / len(DOMAINS):.3f}); D real-image CE {d_cls_last:.3f}")
    assert all(np.isfinite(v) for h in history for v in h.values())
    assert rec_last < 1.5 * rec_first  # bounded, not falling: 0.87x (AVX-512) and 1.24x (AVX2) measured
    assert after >= 1 / len(DOMAINS) + 0.3  # measured 1.000 on both kernel sets, seeds 0-2

    # The trained generator goes through its checkpoint into the augmenter, and the grid is written.
    save_stargan(gan, tmp_path / "generator", labels=DOMAINS)
    aug = StarGANAugmenter.from_checkpoint(tmp_path / "generator", per_clip=2, real_ratio=0.5, seed=0)
    images, targets = aug(held_x, held_y)  # mean = std = 0.5: model space equals the GAN's [-1, 1] here
    assert images.shape == (2 * len(held_x), 3, SIZE, SIZE)
    gen = aug.generator.eval()
    with torch.no_grad():
        _, cls = gan.discriminator(images[len(held_x):])
    gen_acc = float((cls.argmax(1) == targets[len(held_x):]).float().mean())
    assert gen_acc >= 1 / len(DOMAINS) + 0.3
    grid = save_translation_grid(gen, held_x[:3], held_y[:3], DOMAINS.names, tmp_path / "grid.png")
    assert grid.stat().st_size > 1000


def test_cycle_term_alone_teaches_the_generator_to_reconstruct() -> None:
    """G trained on the cycle loss only, G(G(x, c'), c) -> x: held-out faces come back much closer (measured
    0.432 -> 0.245 after 100 steps, with AVX-512 and with AVX2 kernels alike)."""
    train_x, train_y = _faces(subjects=8, per_face=3, seed=0)
    held_x, held_y = _faces(subjects=4, per_face=1, seed=1)
    torch.manual_seed(0)
    generator = create_model("stargan_tiny", num_domains=len(DOMAINS), image_size=SIZE).generator
    opt = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    rng = torch.Generator().manual_seed(0)

    def held_out_cycle() -> float:
        generator.eval()
        with torch.no_grad():
            rec = generator(generator(held_x, (held_y + 1) % len(DOMAINS)), held_y)
        generator.train()
        return float((rec - held_x).abs().mean())

    before = held_out_cycle()
    for _ in range(100):
        idx = torch.randperm(len(train_x), generator=rng)[:BATCH]
        x, y = train_x[idx], train_y[idx]
        loss = (generator(generator(x, other_domains(y, len(DOMAINS), rng)), y) - x).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_cycle()
    print(f"\nheld-out cycle L1 {before:.3f} -> {after:.3f}")
    assert after < 0.75 * before
