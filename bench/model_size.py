"""Print each classemo preset's parameter count and forward GFLOPs per 16-frame clip (docs/model.md table).

GFLOPs come from `torch.utils.flop_counter.FlopCounterMode` (one multiply-add = 2 FLOPs; matmuls, convs and
attention only: norms, activations and softmax are not counted). With `--step-time` it also times one
forward+backward+AdamW step of `classemo_tiny` on a batch of 16 clips x 8 frames.

Usage: python bench/model_size.py [--frames 16] [--step-time] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from classemo.models import create_model, list_models


def measure(name: str, num_frames: int, device: str) -> dict[str, object]:
    """Parameter count and forward FLOPs of one clip of `num_frames` frames through preset `name`."""
    model = create_model(name, num_classes=7).to(device).eval()
    s = model.image_size
    frames = torch.randn(1, num_frames, 3, s, s, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(frames)
    return {
        "name": name,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "image_size": s,
        "train_frames": model.num_frames,
        "gflops": counter.get_total_flops() / 1e9,
    }


def step_time(name: str, batch: int, num_frames: int, device: str, steps: int = 5) -> float:
    """Median seconds of a forward + backward + AdamW step on (batch, num_frames) clips."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=7).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    s = model.image_size
    frames = torch.randn(batch, num_frames, 3, s, s, device=device)
    labels = torch.randint(0, 7, (batch,), device=device)
    times = []
    for _ in range(steps + 1):  # the first step pays for allocation and is dropped
        start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(frames)["logits"], labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[1:])[len(times[1:]) // 2]


def main() -> None:
    """Print the presets table (markdown) and, optionally, the tiny preset's training step time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16, help="frames per clip for the FLOP count")
    parser.add_argument("--step-time", action="store_true", help="also time a classemo_tiny training step")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"| preset | params (M) | image size | train frames | GFLOPs / {args.frames}-frame clip |")
    print("|---|---:|---:|---:|---:|")
    for name in list_models("classemo_"):
        row = measure(name, args.frames, args.device)
        print(f"| `{name}` | {row['params_m']:.2f} | {row['image_size']} | {row['train_frames']} | "
              f"{row['gflops']:.2f} |")
    if args.step_time:
        seconds = step_time("classemo_tiny", 16, 8, args.device)
        print(f"\nclassemo_tiny forward+backward+AdamW step, batch 16 x 8 frames on {args.device} "
              f"({torch.get_num_threads()} threads): {seconds:.3f} s")


if __name__ == "__main__":
    main()
