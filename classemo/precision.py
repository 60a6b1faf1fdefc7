"""Inference precision: which dtype the spatial stream runs in, and a model cast for it.

`dtype="auto"` runs the spatial stream, which holds almost all of the FLOPs, with bfloat16 weights where that is
faster: on a CUDA GPU that supports bf16, and on a CPU with native bf16 instructions (AVX512-BF16 or AMX) when a
short timing of this model's spatial stream shows bf16 beating float32 by 10% (`calibrate_cpu_dtype`; on some
AVX512-BF16 CPUs oneDNN's bf16 matmul is slower than fp32). Float32 elsewhere. The temporal encoder and the
clip/frame heads always run in float32: they cost little and their outputs are what callers threshold. Measured
speed and agreement are in docs/performance.md.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

# Sub-modules that only the temporal part uses; they stay float32 when the spatial stream runs in bf16. A model
# names its own in `float32_modules` (classemo.models.base.ClipModel); these are the default.
FLOAT32_MODULES: tuple[str, ...] = ("temporal", "head", "va_head")
DTYPE_NAMES: dict[str, torch.dtype] = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                                       "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
CALIBRATION_MIN_SPEEDUP = 1.1  # "auto" keeps bf16 on a CPU only if the spatial stream is at least this much faster
_calibrations: dict[tuple, dict[str, Any]] = {}


def cpu_supports_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU has native bf16 matrix instructions (AVX512-BF16 or AMX-BF16).

    Reads the kernel's CPU flags; where there is no /proc/cpuinfo, falls back to PyTorch's dispatch level (which
    names AMX but not AVX512-BF16, so that fallback can only under-report).
    """
    path = Path(cpuinfo)
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return bool(flags & {"avx512_bf16", "amx_bf16"})
    return "AMX" in torch.backends.cpu.get_cpu_capability()


def resolve_dtype(dtype: torch.dtype | str, device: torch.device) -> torch.dtype:
    """The spatial stream's compute dtype for `dtype` (a torch dtype, a name like "bf16", or "auto") on `device`.

    "auto" is the candidate: bfloat16 on a CPU with native bf16 instructions (`cpu_supports_bf16`) or a CUDA GPU
    that supports bf16, else float32. On a CPU, `inference_dtype` then keeps bf16 only if `calibrate_cpu_dtype`
    finds it faster for the model at hand.

    Raises:
        ValueError: For an unknown name or a non-floating-point dtype.
    """
    if isinstance(dtype, str):
        if dtype == "auto":
            if device.type == "cuda":
                return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
            return torch.bfloat16 if device.type == "cpu" and cpu_supports_bf16() else torch.float32
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; expected 'auto' or one of {sorted(DTYPE_NAMES)}")
        return DTYPE_NAMES[dtype]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be 'auto', a dtype name or a floating-point torch dtype, got {dtype!r}")
    return dtype


def calibrate_cpu_dtype(model: nn.Module, image_size: int, *, frames: int = 16, repeats: int = 3) -> dict[str, Any]:
    """Time `model.forward_spatial` on `frames` frames in float32 and in bf16 weights; pick the faster.

    bf16 is chosen only when it is at least `CALIBRATION_MIN_SPEEDUP` times faster (medians of `repeats` after a
    warm-up), so that timing noise never trades float32's precision for no real gain. The result is cached per
    architecture, input size and thread count for the life of the process (a Serve replica reloading a model, or
    tests building many Predictors, time it once).

    Returns:
        `{"dtype": "bf16" | "float32", "float32_ms": ..., "bf16_ms": ..., "frames": frames}`.
    """
    key = (type(model).__name__, tuple((n, tuple(p.shape)) for n, p in model.named_parameters()), image_size, frames,
           torch.get_num_threads())
    if key in _calibrations:
        return _calibrations[key]
    x = torch.randn(frames, 3, image_size, image_size)
    timings = {}
    for name, dt in (("float32", torch.float32), ("bf16", torch.bfloat16)):
        m = copy.deepcopy(model).to(dtype=dt).eval()
        xi = x.to(dt)
        with torch.inference_mode():
            m.forward_spatial(xi)  # warm-up: oneDNN picks and caches its kernels for this shape
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                m.forward_spatial(xi)
                runs.append(time.perf_counter() - t0)
        timings[name] = 1e3 * sorted(runs)[len(runs) // 2]
        del m
    fast = timings["float32"] >= CALIBRATION_MIN_SPEEDUP * timings["bf16"]
    result = {"dtype": "bf16" if fast else "float32", "float32_ms": round(timings["float32"], 2),
              "bf16_ms": round(timings["bf16"], 2), "frames": frames}
    _calibrations[key] = result
    return result


def inference_dtype(dtype: torch.dtype | str, device: torch.device, model: nn.Module
                    ) -> tuple[torch.dtype, dict[str, Any] | None]:
    """The spatial stream's dtype for `model` on `device`, and the CPU timing behind an "auto" choice (else None).

    Raises:
        ValueError: For an unknown name or a non-floating-point dtype.
    """
    resolved = resolve_dtype(dtype, device)
    if dtype == "auto" and device.type == "cpu" and resolved == torch.bfloat16:
        calibration = calibrate_cpu_dtype(model, int(model.image_size))
        return DTYPE_NAMES[calibration["dtype"]], calibration
    return resolved, None


def cast_for_inference(model: nn.Module, device: torch.device, dtype: torch.dtype) -> nn.Module:
    """`model` in eval mode on `device`, its spatial stream in `dtype` and its temporal part (`model.float32_modules`,
    else `FLOAT32_MODULES`) in float32.

    Casting is in place, so a model whose dtype changes is copied first: a caller's (e.g. training) model is never
    modified.
    """
    if next(model.parameters()).dtype != dtype:
        model = copy.deepcopy(model)
    model = model.to(device=device, dtype=dtype).eval()
    for name in getattr(model, "float32_modules", FLOAT32_MODULES):
        if (sub := getattr(model, name, None)) is not None:
            sub.float()
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with each BatchNorm that directly follows a conv in an `nn.Sequential` folded into
    that conv's weights and bias: the same function (to float rounding) with one pass over the activations fewer.

    At inference a BatchNorm is a fixed per-channel scale and shift, which the conv before it can absorb. In the conv
    stems at full face resolution those passes are a measurable share of the forward (docs/performance.md). `model`
    itself is left as it is (its state dict still loads into a fresh model); with nothing to fold, `model` is returned.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def pairs(m: nn.Module) -> list[tuple[nn.Sequential, int]]:
        return [(seq, i) for seq in m.modules() if isinstance(seq, nn.Sequential) for i in range(len(seq) - 1)
                if isinstance(seq[i], nn.Conv2d) and isinstance(seq[i + 1], nn.BatchNorm2d)
                and seq[i + 1].track_running_stats]

    if not pairs(model):
        return model
    folded = copy.deepcopy(model).eval()
    with torch.no_grad():
        for seq, i in pairs(folded):
            seq[i] = fuse_conv_bn_eval(seq[i], seq[i + 1])
            seq[i + 1] = nn.Identity()
    return folded


__all__ = [
    "CALIBRATION_MIN_SPEEDUP",
    "DTYPE_NAMES",
    "FLOAT32_MODULES",
    "calibrate_cpu_dtype",
    "cast_for_inference",
    "cpu_supports_bf16",
    "fold_batchnorm",
    "inference_dtype",
    "resolve_dtype",
]
