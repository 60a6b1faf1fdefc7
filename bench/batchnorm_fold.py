"""The spatial stream with its BatchNorms folded into the convs (what `Predictor` runs) against the checkpoint's
layers as they are, through `Predictor.embed_frames`, in one process.

Both predictors load the same checkpoint; the unfolded one has its spatial stream pointed back at `predictor.model`.
Rounds interleave the two, so a change of load hits both alike; each figure is the median of the rounds, and
`--runs` repeats the whole comparison (report the median of the runs' ratios).

    .venv/bin/python bench/batchnorm_fold.py [--model builtin] [--faces 30 64] [--rounds 15] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from classemo.predictor import Predictor


def timed(predictor: Predictor, faces: list[np.ndarray]) -> float:
    t0 = time.perf_counter()
    predictor.embed_frames(faces)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="builtin", help="checkpoint: builtin, a folder or models:/...")
    ap.add_argument("--faces", type=int, nargs="+", default=[30, 64], help="crops per embed_frames call")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    folded = Predictor.from_checkpoint(args.model, device="cpu", dtype="float32")
    plain = Predictor.from_checkpoint(args.model, device="cpu", dtype="float32")
    plain._forward_spatial = plain.model.forward_spatial  # the checkpoint's layers, BatchNorms as trained
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(max(args.faces))]
    def count(module: torch.nn.Module) -> int:
        return sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())

    left = count(folded._forward_spatial.__self__)  # the folded copy the predictor runs
    print(f"{args.model}: {count(plain.model)} BatchNorms, {count(plain.model) - left} folded, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32")
    print("| faces | run | unfolded ms | folded ms | speed-up | max abs diff |\n|---|---|---|---|---|---|")
    for n in args.faces:
        faces = crops[:n]
        diff = float(np.abs(folded.embed_frames(faces) - plain.embed_frames(faces)).max())
        ratios = []
        for run in range(args.runs):
            a, b = [], []
            for _ in range(args.rounds):
                a.append(timed(plain, faces))
                b.append(timed(folded, faces))
            ratios.append(statistics.median(a) / statistics.median(b))
            print(f"| {n} | {run + 1} | {1e3 * statistics.median(a):.1f} | {1e3 * statistics.median(b):.1f} | "
                  f"{ratios[-1]:.2f}x | {diff:.1e} |", flush=True)
        print(f"| {n} | **median** | | | **{statistics.median(ratios):.2f}x** | |")


if __name__ == "__main__":
    main()
