"""Training throughput (clips/s) of the unified stage with 1 and 2 Ray Train workers on CPU.

    python bench/train_throughput.py [--data data/sample] [--epochs 2] [--workers 1 2]

Runs the real job (Ray Data -> Ray Train, no MLflow) and prints, per worker count, the steady-state training
rate of the last epoch (all workers together; decode included, validation excluded) and the wall time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classemo.config import load_config  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/sample")
    p.add_argument("--config", default=None)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)

    from jobs.train import ensure_dataset, init_ray, resolve_paths, run_training

    rows = []
    for n in args.workers:
        cfg = resolve_paths(load_config(args.config, [f"data.root={args.data}", f"unified.epochs={args.epochs}",
                                                      "unified.warmup_epochs=0", f"scaling.num_workers={n}",
                                                      *args.overrides]))
        info = ensure_dataset(cfg)
        init_ray(cfg)
        t0 = time.perf_counter()
        stage = run_training(cfg, info)
        rows.append((n, stage.history[-1]["train_clips_per_s"], time.perf_counter() - t0))
    print(f"\n{'workers':>8} {'clips/s':>10} {'wall s':>8}")
    for n, rate, wall in rows:
        print(f"{n:>8} {rate:>10.2f} {wall:>8.0f}")


if __name__ == "__main__":
    main()
