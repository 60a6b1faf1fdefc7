"""Regenerate docs/img/stargan_grid.png: a short, seeded, single-thread CPU StarGAN run on synthetic apex faces.

The run trains `stargan_tiny` (Choi et al., 2018, unchanged losses) on clean apex renders of many synthetic
identities, then translates held-out *neutral* faces into every domain. Every `--eval-every` steps it prints the
cycle L1 of the last G steps, D's real-image domain CE, D's domain accuracy on real held-out faces (is the domain head
working at all?) and on G's translations of them into the other domains (is G drawing the target expression?), so
the figures in docs/stargan.md can be reproduced.

Usage: nice -n 19 python bench/stargan_grid.py [--steps 8000] [--size 32] [--out docs/img/stargan_grid.png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from classemo.augment import save_translation_grid
from classemo.models import create_model
from classemo.synth.face import FaceIdentity
from classemo.synth.render import render_face
from classemo.training.stargan import StarGANTrainConfig, domain_accuracy, make_optimizers, stargan_step


def render_set(domains: list[str], identities: int, renders: int, size: int, jitter: float, seed: int
               ) -> tuple[Tensor, Tensor]:
    """Apex faces of `identities` new people in every domain, in [-1, 1]: `(N, 3, S, S)` and labels `(N,)`."""
    rng = np.random.default_rng(seed)
    people = [FaceIdentity.random(rng, f"s{seed}_{i}") for i in range(identities)]
    images, labels = [], []
    for i, person in enumerate(people):
        for c, name in enumerate(domains):
            for r in range(renders):
                images.append(render_face(person, name, 1.0, size=size, jitter=jitter,
                                          rng=np.random.default_rng([seed, i, c, r])))
                labels.append(c)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (N, 3, S, S)
    return x, torch.tensor(labels)


@torch.no_grad()
def real_accuracy(D: torch.nn.Module, images: Tensor, labels: Tensor) -> float:
    """D's domain accuracy on real images: the ceiling for the generated-image accuracy."""
    D.eval()
    _, cls = D(images)
    D.train()
    return float((cls.argmax(1) == labels).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domains", default="neutral,happy,sad,fear", help="comma-separated expressions; neutral first")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--identities", type=int, default=96, help="training identities")
    p.add_argument("--renders", type=int, default=2, help="renders per identity and domain")
    p.add_argument("--held-out", type=int, default=24, help="held-out identities for the accuracies")
    p.add_argument("--grid-rows", type=int, default=4)
    p.add_argument("--jitter", type=float, default=0.0, help="nuisance scale (0: centred, clean apex faces)")
    p.add_argument("--steps", type=int, default=8000, help="D updates")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-4, help="Adam lr of both G and D")
    p.add_argument("--decay-from", type=float, default=0.5,
                   help="fraction of the run after which both lrs decay linearly to 0 (Choi et al.: the last half)")
    p.add_argument("--n-critic", type=int, default=5)
    p.add_argument("--lambda-cls", type=float, default=1.0)
    p.add_argument("--lambda-rec", type=float, default=10.0)
    p.add_argument("--lambda-gp", type=float, default=10.0)
    p.add_argument("--eval-every", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="docs/img/stargan_grid.png")
    args = p.parse_args()

    torch.set_num_threads(1)  # the grid is a CPU demo; one thread keeps it from starving other work
    domains = args.domains.split(",")
    train_x, train_y = render_set(domains, args.identities, args.renders, args.size, args.jitter, args.seed)
    held_x, held_y = render_set(domains, args.held_out, 1, args.size, args.jitter, args.seed + 1)
    print(f"{len(train_x)} training faces ({args.identities} identities), {len(held_x)} held-out faces, "
          f"{args.size} px, domains {domains} (chance {1 / len(domains):.3f})", flush=True)

    torch.manual_seed(args.seed)
    gan = create_model("stargan_tiny", num_domains=len(domains), image_size=args.size)
    G, D = gan.generator, gan.discriminator
    cfg = StarGANTrainConfig(lr_g=args.lr, lr_d=args.lr, n_critic=args.n_critic, lambda_cls=args.lambda_cls,
                             lambda_rec=args.lambda_rec, lambda_gp=args.lambda_gp)
    opt_g, opt_d = make_optimizers(G, D, cfg)
    order = torch.Generator().manual_seed(args.seed)
    rec: list[float] = []
    d_cls: list[float] = []
    start = time.perf_counter()
    print("step   wall_s  cycle_L1  D_real_CE  D_acc_real  D_acc_generated", flush=True)
    decay_start = int(args.decay_from * args.steps)
    for step in range(args.steps):
        if step >= decay_start:
            for group in (*opt_g.param_groups, *opt_d.param_groups):
                group["lr"] = args.lr * (args.steps - step) / (args.steps - decay_start)
        idx = torch.randint(len(train_x), (args.batch,), generator=order)
        out = stargan_step(G, D, opt_g, opt_d, train_x[idx], train_y[idx], step, cfg)
        d_cls.append(out["d_cls"])
        if "g_rec" in out:
            rec.append(out["g_rec"])
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            window = max(1, args.eval_every // args.n_critic)
            print(f"{step + 1:5d}  {time.perf_counter() - start:7.1f}  {np.mean(rec[-window:]):8.3f}  "
                  f"{np.mean(d_cls[-args.eval_every:]):9.3f}  {real_accuracy(D, held_x, held_y):10.3f}  "
                  f"{domain_accuracy(D, G, held_x, held_y):15.3f}", flush=True)

    # Rows: held-out people with a neutral face (domain 0), translated into every domain.
    neutral = held_x[held_y == 0][: args.grid_rows]
    path = save_translation_grid(G, neutral, torch.zeros(len(neutral), dtype=torch.long), domains, args.out)
    from PIL import Image  # quantised like docs/img/synth_faces.png, to keep the PNG small

    Image.open(path).convert("RGB").quantize(256, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({Path(path).stat().st_size // 1024} KB) after {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
