"""Roofline of classemo inference on this machine: matmul peak, FLOPs per clip, Predictor throughput per preset.

Measures, in ONE run so that the ratios share the machine's load at that moment:

1. the fp32 and bf16 matmul rate (GFLOP/s, median of repeats over large square matrices);
2. each classemo_* preset's forward FLOPs per clip (`torch.utils.flop_counter.FlopCounterMode`; one multiply-add
   = 2 FLOPs, matmuls/convs/attention only);
3. `Predictor.predict` throughput (clips/s, frames/s) at batch sizes 1, 8 and 32 in fp32 and bf16 (the
   Predictor's own bf16 path), and the achieved GFLOP/s as a fraction of the matmul rate of the same dtype.

Predictor timings include preprocessing (`frames_to_tensor`) on frames already at the model's size, i.e. what a
caller pays. classemo_base is a GPU preset: on a CPU it runs one repeat per batch size (and no batch 32 with
`--quick`).

Usage: python bench/roofline.py [--quick] [--threads 2] [--presets classemo_tiny classemo_small] [--batches 1 8 32]
       python bench/roofline.py --profile classemo_small [--profile-frames 256] [--dtypes fp32 bf16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from classemo.checkpoint import checkpoint_config
from classemo.labels import LabelSet
from classemo.models import create_model
from classemo.predictor import Predictor

PRESETS = ("classemo_tiny", "classemo_small", "classemo_base")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of `fn()` over `repeats` calls after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(dtype: torch.dtype, n: int, repeats: int) -> float:
    """Median GFLOP/s of an (n x n) @ (n x n) matmul in `dtype` (2 n^3 FLOPs)."""
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    seconds = median_seconds(lambda: torch.mm(a, b), repeats)
    return 2 * n**3 / seconds / 1e9


def clip_flops(model: torch.nn.Module) -> tuple[float, float]:
    """(FLOPs of one full clip, FLOPs of the spatial part of one frame) for `model`."""
    s, t = model.image_size, model.num_frames
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.randn(1, t, 3, s, s))
    clip = float(counter.get_total_flops())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.forward_spatial(torch.randn(1, 3, s, s))
    return clip, float(counter.get_total_flops())


def synthetic_clips(batch: int, num_frames: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """`batch` random uint8 clips of `num_frames` frames at the model's size (no resize cost)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(num_frames, size, size, 3), dtype=np.uint8) for _ in range(batch)]


def predictor_rate(predictor: Predictor, batch: int, repeats: int) -> float:
    """Clips per second of `predictor.predict` on one batch of `batch` full-length clips."""
    clips = synthetic_clips(batch, predictor.num_frames, predictor.preprocessing.image_size)
    seconds = median_seconds(lambda: predictor.predict(clips), repeats)
    return batch / seconds


def profile_spatial(name: str, frames: int, dtype: torch.dtype, rows: int = 15) -> str:
    """torch.profiler table (self CPU time per op) of the spatial stream on `frames` frames of preset `name`."""
    from torch.profiler import ProfilerActivity, profile

    model = create_model(name, num_classes=7).eval().to(dtype)
    x = torch.randn(frames, 3, model.image_size, model.image_size, dtype=dtype)
    with torch.inference_mode():
        model.forward_spatial(x)  # warm-up: allocations and oneDNN kernel selection
        with profile(activities=[ProfilerActivity.CPU], record_shapes=False) as prof:
            for _ in range(3):
                model.forward_spatial(x)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40)


def main() -> None:
    """Run the roofline and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller matmul, no base at batch 32")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    parser.add_argument("--dtypes", nargs="+", default=list(DTYPES), choices=list(DTYPES))
    parser.add_argument("--profile", choices=PRESETS, help="only profile this preset's spatial stream and exit")
    parser.add_argument("--profile-frames", type=int, default=256, help="frames per profiled forward")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.profile:
        for key in args.dtypes:
            print(f"\n{args.profile} spatial stream, {args.profile_frames} frames, {key}, load average "
                  f"{os.getloadavg()[0]:.1f}")
            print(profile_spatial(args.profile, args.profile_frames, DTYPES[key]))
        return
    repeats = 3 if args.quick else 7
    n = 1024 if args.quick else 2048
    load_start = os.getloadavg()[0]
    print(f"torch {torch.__version__}, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"threads {torch.get_num_threads()}, load average at start {load_start:.1f}")

    peak = {k: matmul_gflops(DTYPES[k], n, repeats + 2) for k in args.dtypes}
    print("matmul " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peak.items()) + f" ({n}x{n}, median)")

    header = (f"{'preset':15s} {'dtype':5s} {'batch':>5s} {'clips/s':>9s} {'frames/s':>9s} {'GFLOP/s':>8s} "
              f"{'of matmul':>9s} {'vs fp32':>8s}")
    rows = [header, "-" * len(header)]
    for name in args.presets:
        model = create_model(name, num_classes=7).eval()
        flops, frame_flops = clip_flops(model)
        print(f"{name}: {flops / 1e9:.3f} GFLOP per clip of {model.num_frames} frames at {model.image_size} px "
              f"(spatial {frame_flops / 1e9:.4f} GFLOP per frame)", flush=True)
        config = checkpoint_config(model, labels=LabelSet.paper())
        for batch in args.batches:
            if name == "classemo_base" and batch == 32 and args.quick:
                continue
            reps = 1 if name == "classemo_base" else repeats
            rates = {}
            for key in args.dtypes:
                predictor = Predictor(model, config, device="cpu", batch_size=batch, dtype=DTYPES[key])
                rates[key] = predictor_rate(predictor, batch, reps)
                gflops = rates[key] * flops / 1e9
                speedup = f"{rates[key] / rates['fp32']:.2f}x" if "fp32" in rates else "-"
                rows.append(f"{name:15s} {key:5s} {batch:5d} {rates[key]:9.2f} {rates[key] * model.num_frames:9.1f} "
                            f"{gflops:8.1f} {gflops / peak[key]:9.1%} {speedup:>8s}")
                print(rows[-1], flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
