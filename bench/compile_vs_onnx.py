"""Eager vs torch.compile vs ONNX Runtime for the spatial stream (the part holding the FLOPs), in one run.

For each preset, the spatial stream `forward_spatial(images)["features"]` on one batch of frames is timed as:

- eager fp32 and eager bf16 weights (what `Predictor` runs; bf16 is its default on AVX512-BF16/AMX CPUs);
- `torch.compile` (inductor, default mode) of the same module, fp32 and bf16;
- the module exported to ONNX (TorchScript exporter, opset 17) and run by onnxruntime's CPU provider in fp32
  (onnxruntime has no bf16 CPU kernels for MatMul, so the fair ONNX comparison is with both eager rows).

Every variant's outputs are checked against eager fp32 before it is timed. Times are medians of repeats taken
in interleaved rounds, so that a change of load during the run hits every variant alike.

Usage: python bench/compile_vs_onnx.py [--presets classemo_tiny classemo_small] [--frames 64] [--repeats 7]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from classemo.models import create_model


class SpatialFeatures(nn.Module):
    """The unified model's spatial stream, images (N, 3, S, S) -> features λ (N, D), as one exportable module."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.forward_spatial(images)["features"]


def onnx_runner(module: nn.Module, example: torch.Tensor, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Export `module` to ONNX and return a function running it with onnxruntime on CPU."""
    import onnxruntime as ort

    path = Path(tempfile.mkdtemp(prefix="classemo-onnx-")) / "spatial.onnx"
    torch.onnx.export(module, (example,), str(path), input_names=["images"], output_names=["features"],
                      dynamic_axes={"images": {0: "n"}, "features": {0: "n"}}, opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"images": x.numpy()})[0])


def main() -> None:
    """Build every variant, check it, time them interleaved, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["classemo_tiny", "classemo_small"])
    parser.add_argument("--frames", type=int, default=64, help="frames per forward (8 clips x 8 frames)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {args.threads}, load average at start {os.getloadavg()[0]:.1f}")
    for name in args.presets:
        model = create_model(name, num_classes=7).eval()
        x = torch.randn(args.frames, 3, model.image_size, model.image_size)
        fp32 = SpatialFeatures(model).eval()
        bf16 = SpatialFeatures(copy.deepcopy(model).to(torch.bfloat16)).eval()
        variants: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
            "eager fp32": fp32,
            "eager bf16": lambda t: bf16(t.bfloat16()),
        }
        notes: dict[str, str] = {}
        with torch.inference_mode():
            reference = fp32(x)
        for key, build in (
            ("compile fp32", lambda: torch.compile(fp32)),
            ("compile bf16", lambda: (lambda c: (lambda t: c(t.bfloat16())))(torch.compile(bf16))),
            ("onnxruntime fp32", lambda: onnx_runner(fp32, x[:2], args.threads)),
        ):
            start = time.perf_counter()
            try:
                fn = build()
                with torch.inference_mode():
                    fn(x)  # compiles / builds the session
                notes[key] = f"build+first call {time.perf_counter() - start:.0f} s"
                variants[key] = fn
            except (RuntimeError, ValueError, ImportError, torch.onnx.errors.OnnxExporterError) as e:
                notes[key] = f"FAILED: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
        times: dict[str, list[float]] = {k: [] for k in variants}
        errors = {}
        with torch.inference_mode():
            for key, fn in variants.items():
                errors[key] = float((fn(x).float() - reference).abs().max())
            for _ in range(args.repeats):
                for key, fn in variants.items():
                    start = time.perf_counter()
                    fn(x)
                    times[key].append(time.perf_counter() - start)
        base = statistics.median(times["eager fp32"])
        print(f"\n{name}: {args.frames} frames of {model.image_size} px per call, median of {args.repeats}")
        print(f"{'variant':18s} {'ms':>9s} {'frames/s':>9s} {'vs eager fp32':>13s} {'max |diff|':>10s}  note")
        for key in [*variants, *[k for k in notes if k not in variants]]:
            if key in variants:
                med = statistics.median(times[key])
                print(f"{key:18s} {med * 1e3:9.1f} {args.frames / med:9.1f} {base / med:12.2f}x "
                      f"{errors[key]:10.2e}  {notes.get(key, '')}")
            else:
                print(f"{key:18s} {'-':>9s} {'-':>9s} {'-':>13s} {'-':>10s}  {notes[key]}")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
