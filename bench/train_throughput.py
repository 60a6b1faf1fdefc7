"""Training throughput of the unified stage: the Ray job against the model alone, and what the Ray layer costs.

    python bench/train_throughput.py [--data data/sample] [--epochs 3] [--workers 1 2] [overrides ...]

In one run, on the same data, model and batch size:
  * the job (Ray Data -> Ray Train, no MLflow) with 1 and 2 workers: the last epoch's training rate (all workers
    together; decode included, validation excluded), the wall time, the worker processes Ray started per epoch
    after the first, and the share of the machine's CPU time spent outside the train workers' processes;
  * the single-process rate: forward + backward + optimiser step of the same model on already decoded batches,
    with every core, so the job's ratio to it is what the Ray layer and decoding cost.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from classemo.config import load_config  # noqa: E402


def machine_cpu_s() -> float:
    """CPU seconds spent by the whole machine so far (user + nice + system, all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return (int(fields[0]) + int(fields[1]) + int(fields[2])) / os.sysconf("SC_CLK_TCK")


def single_process_rate(cfg: object, info: object, steps: int = 12) -> float:
    """Clips/s of forward + backward + step on decoded batches of the job's train split, in this process."""
    import pyarrow.parquet as pq
    import torch

    from classemo.labels import LabelSet
    from classemo.losses.unified import UnifiedLoss
    from classemo.models import create_model
    from classemo.training.unified import UnifiedStep, train_step
    from classemo.data.batches import DecodeClips
    from classemo.data.dataset import READ_COLUMNS

    d, u = cfg.data, cfg.unified  # type: ignore[attr-defined]
    labels = LabelSet.from_list(info.manifest.labels)  # type: ignore[attr-defined]
    shard = next(f for f in sorted(Path(info.split_dir("train")).glob("*.parquet")))  # type: ignore[attr-defined]
    table = pq.read_table(shard, columns=READ_COLUMNS)
    decode = DecodeClips(num_frames=d.num_frames, image_size=d.image_size, train=True, augment=d.augment)
    batches = []
    for start in range(0, min(table.num_rows, 4 * d.batch_size), d.batch_size):
        out = decode(table.slice(start, d.batch_size))
        if len(out["label"]) == d.batch_size:
            batches.append({k: torch.from_numpy(v) for k, v in out.items()})
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(0)
    model = create_model(u.model, num_classes=len(labels), image_size=d.image_size, num_frames=d.num_frames,
                         **u.model_kwargs)
    step_model = UnifiedStep(model)
    optimizer = torch.optim.AdamW(step_model.parameters(), lr=u.lr, weight_decay=u.weight_decay)
    loss_fn = UnifiedLoss(eta1=u.eta1, eta2=u.eta2, lambda_t=u.lambda_t, lambda_va=u.lambda_va, va_loss=u.va_loss)
    for b in batches[:2]:  # warm-up: allocator and oneDNN kernel choice
        train_step(step_model, loss_fn, optimizer, b, bf16=False)
    t0 = time.perf_counter()
    for i in range(steps):
        train_step(step_model, loss_fn, optimizer, batches[i % len(batches)], bf16=False)
    return steps * d.batch_size / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data/sample")
    p.add_argument("--config", default=None)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)

    import ray

    from jobs.train import ensure_dataset, init_ray, resolve_paths, run_training

    rows = []
    for n in args.workers:
        cfg = resolve_paths(load_config(args.config, [f"data.root={args.data}", f"unified.epochs={args.epochs}",
                                                      "unified.warmup_epochs=0", f"scaling.num_workers={n}",
                                                      *args.overrides]))
        info = ensure_dataset(cfg)
        init_ray(cfg)
        cpu0, t0 = machine_cpu_s(), time.perf_counter()
        stage = run_training(cfg, info)
        wall, cpu = time.perf_counter() - t0, machine_cpu_s() - cpu0
        h = stage.history
        started = [e["ray_workers_started"] for e in h]
        worker_cpu = h[-1].get("train_worker_cpu_s", float("nan"))
        rows.append({"workers": n, "rate": h[-1]["train_clips_per_s"], "wall": wall,
                     "new_per_epoch": [b - a for a, b in zip(started, started[1:])],
                     "outside": 1 - worker_cpu / cpu if cpu > 0 else float("nan")})
        ray.shutdown()
    single = single_process_rate(cfg, info)
    print(f"\nsingle process (forward + backward + step, {os.cpu_count()} threads): {single:.1f} clips/s\n")
    print("| workers | job clips/s | ratio to single process | wall s | new worker processes per epoch after the "
          "first | CPU outside the train workers |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['rate']:.1f} | {r['rate'] / single:.2f} | {r['wall']:.0f} | "
              f"{r['new_per_epoch']} | {r['outside']:.0%} |")


if __name__ == "__main__":
    main()
