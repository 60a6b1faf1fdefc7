"""Ray Data ingest rate against the model's consumption rate (clips/s), on CPU.

    python bench/ingest.py [--data data/sample] [--batch-size 16]

Ingest: the training split through the job's own pipeline (read_parquet -> decode/augment map_batches ->
iter_torch_batches), no model. Consumption: forward + backward of the unified train step on one decoded batch,
repeated, in one process. Ingest above consumption (per worker) means data loading does not starve training.
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
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=10)
    args = p.parse_args(argv)

    import torch

    from classemo.losses.unified import UnifiedLoss
    from classemo.models import create_model
    from classemo.training.unified import UnifiedStep, train_step
    from jobs.data import clip_pipeline, read_split
    from jobs.train import ensure_dataset, init_ray, quiet_data, resolve_paths

    cfg = resolve_paths(load_config(args.config, [f"data.root={args.data}"]))
    info = ensure_dataset(cfg)
    init_ray(cfg)
    quiet_data()
    d = cfg.data
    ds = clip_pipeline(read_split(info, "train"), num_frames=d.num_frames, image_size=d.image_size, train=True,
                       augment=d.augment, map_batch_size=d.map_batch_size)
    t0, clips, first = time.perf_counter(), 0, None
    for batch in ds.iter_torch_batches(batch_size=args.batch_size):
        first = first or batch
        clips += int(batch["label"].shape[0])
    ingest = clips / (time.perf_counter() - t0)

    labels = info.manifest.label_set
    model = create_model(cfg.unified.model, num_classes=len(labels), image_size=d.image_size,
                         num_frames=d.num_frames, **cfg.unified.model_kwargs)
    step = UnifiedStep(model)
    opt = torch.optim.AdamW(step.parameters(), lr=1e-4)
    loss = UnifiedLoss()
    train_step(step, loss, opt, first)  # warm-up
    t0 = time.perf_counter()
    for _ in range(args.steps):
        train_step(step, loss, opt, first)
    consume = args.steps * int(first["label"].shape[0]) / (time.perf_counter() - t0)
    print(f"\ningest (Ray Data, decode + augment): {ingest:8.2f} clips/s over {clips} clips")
    print(f"consumption (1 process, fwd + bwd):  {consume:8.2f} clips/s, torch threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
