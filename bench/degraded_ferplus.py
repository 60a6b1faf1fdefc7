"""A model on FER+ test as a classroom camera would show it: clean, and degraded (small and JPEG-compressed).

    python bench/degraded_ferplus.py [--model builtin] [--data data/builtin-build/ferplus] [--side 24] [--quality 40]

Each face is shrunk to `--side` px (INTER_AREA) and enlarged back to its stored size (INTER_LINEAR), then re-encoded
as JPEG at `--quality`: a face at the back of a classroom in a compressed stream. Both passes go through `Predictor`
(the one loader and preprocessing path) and `classemo.metrics.MetricAccumulator`, as `classemo evaluate` does, on the
same frames; the clean figures are the model card's FER+ test. The degradation is `ClassroomAugment`'s small-face and
JPEG steps at one fixed draw (`classemo.data.augmentations`): what the model is trained on and what it is measured on
here are the same operations.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from classemo.data.augmentations import ClassroomAugment


def degradation(side: int, quality: int) -> ClassroomAugment:
    """`ClassroomAugment` with one fixed draw: each face shrunk to `side` px (longer edge) and back, then JPEG at
    `quality`; nothing else."""
    return ClassroomAugment(downcast_p=0.0, occlude_p=0.0, blur_p=0.0, small_p=1.0, small_side=(side, side),
                            jpeg_p=1.0, jpeg_quality=(quality, quality))


def evaluate(model: str, data: str, *, split: str, side: int, quality: int, batch_size: int,
             limit: int) -> dict[str, dict[str, Any]]:
    """Metrics (`MetricAccumulator.compute()`) of `model` on the split, clean and degraded."""
    from classemo.data.batches import eval_frames
    from classemo.data.format import read_split
    from classemo.evaluate import load_for
    from classemo.metrics import MetricAccumulator

    predictor = load_for(model, data, batch_size=batch_size)
    table = read_split(data, split)
    if limit:
        table = table.slice(0, limit)
    acc = {k: MetricAccumulator(len(predictor.labels), predictor.labels) for k in ("clean", "degraded")}
    degrade, rng = degradation(side, quality), np.random.default_rng(0)  # p 0 or 1, one-point ranges: a fixed draw
    for start in range(0, table.num_rows, batch_size):
        rows = table.slice(start, batch_size)
        clips = [eval_frames(enc, predictor.num_frames) for enc in rows.column("frames").to_pylist()]
        targets = rows.column("label_idx").to_pylist()
        for name, batch in (("clean", clips), ("degraded", [degrade(c, rng) for c in clips])):
            acc[name].update(np.stack([p.probs for p in predictor.predict(batch)]), targets)
    return {k: a.compute() for k, a in acc.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="builtin", help="builtin, a checkpoint dir or a models:/ URI")
    parser.add_argument("--data", default="data/builtin-build/ferplus", help="FER+ converted at the model's settings")
    parser.add_argument("--split", default="test")
    parser.add_argument("--side", type=int, default=24, help="side in px each face is shrunk to")
    parser.add_argument("--quality", type=int, default=40, help="JPEG quality of the degraded faces")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=0, help="score only the first N clips (0: all)")
    args = parser.parse_args()

    t0 = time.perf_counter()
    result = evaluate(args.model, args.data, split=args.split, side=args.side, quality=args.quality,
                      batch_size=args.batch_size, limit=args.limit)
    n = result["clean"]["num_samples"]
    print(f"{args.model} on {args.data} {args.split} ({n} faces; degraded: {args.side} px and back, "
          f"JPEG {args.quality}); {time.perf_counter() - t0:.0f} s")
    print(f"| {'':<8} | accuracy |    UAR |    ECE |")
    print("|----------|---------:|-------:|-------:|")
    for name, m in result.items():
        print(f"| {name:<8} |   {m['accuracy']:.4f} | {m['uar']:.4f} | {m['ece']:.4f} |")
    names = list(result["clean"]["per_class_accuracy"])
    print("per-class accuracy, clean -> degraded:")
    for c in names:
        print(f"  {c:>9}: {result['clean']['per_class_accuracy'][c]:.3f} -> "
              f"{result['degraded']['per_class_accuracy'][c]:.3f}")


if __name__ == "__main__":
    main()
