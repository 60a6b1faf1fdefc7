"""Calibrated class probabilities: temperature scaling and the expected calibration error (ECE).

Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017) divides every logit by one
scalar T > 0 before the softmax. The arg-max, so accuracy and UAR, cannot change; T > 1 softens over-confident
probabilities. T is fitted on a held-out split by minimising the negative log-likelihood, after the model is chosen.
The training job stores it in the checkpoint's `config.json` (`calibration`), and `Predictor` applies it, so
`analyze`, `live` and Serve all read calibrated probabilities (docs/model.md, "Calibration").

ECE is torchmetrics' top-label ECE with equal-width bins: the support-weighted mean |accuracy - confidence| over
bins of the top-class probability.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.functional.classification import multiclass_calibration_error
from torchmetrics.utilities.compute import normalize_logits_if_needed

Array = torch.Tensor | np.ndarray

METHOD = "temperature"
NUM_BINS = 15  # Guo et al.'s bin count, and torchmetrics' default
# T is searched as log T in [log 1e-2, log 1e2]: NLL is convex in 1/T, so clamping the optimum to the range is the
# constrained optimum. Separable logits (every clip right) would otherwise drive T towards 0 without end.
LOG_T_RANGE = (math.log(1e-2), math.log(1e2))


def _tensor(values: Array) -> torch.Tensor:
    return values.detach().cpu() if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))


def _scores(logits: Array) -> torch.Tensor:
    x = _tensor(logits)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] < 2:
        raise ValueError(f"need (N, C) scores with N >= 1 and C >= 2, got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("scores hold NaN or infinite values")
    return x.double()


def _targets(targets: Array, num_samples: int, num_classes: int) -> torch.Tensor:
    """(N,) class indices as int64, or (N, C) label distributions as float64."""
    t = _tensor(targets)
    if t.shape[:1] != (num_samples,):
        raise ValueError(f"targets hold {t.shape[0] if t.ndim else 0} samples but the logits {num_samples}")
    if t.ndim == 1:
        t = t.long()
        if t.min() < 0 or t.max() >= num_classes:
            raise ValueError(f"class indices must lie in [0, {num_classes}), got {t.min()}..{t.max()}")
        return t
    if t.ndim != 2 or t.shape[1] != num_classes:
        raise ValueError(f"soft targets must have shape ({num_samples}, {num_classes}), got {tuple(t.shape)}")
    t = t.double()
    sums = t.sum(1)
    if not torch.isfinite(t).all() or (t < 0).any() or not torch.allclose(sums, torch.ones_like(sums), atol=1e-3):
        raise ValueError("soft targets must be non-negative rows that sum to 1")
    return t


def fit_temperature(logits: Array, targets: Array, *, max_iter: int = 100) -> float:
    """The temperature T > 0 that minimises the NLL of softmax(logits / T) on `targets` (deterministic).

    Args:
        logits: `(N, C)` uncalibrated logits (log-probabilities work too: softmax ignores a per-row constant).
        targets: `(N,)` class indices, or `(N, C)` label distributions (e.g. FER+'s ten annotators' votes).
        max_iter: LBFGS iterations on log T (it converges in a handful: the problem is one-dimensional).

    Returns:
        T, within [0.01, 100].

    Raises:
        ValueError: Empty or non-finite logits, or targets that do not fit them.
    """
    x = _scores(logits)
    y = _targets(targets, x.shape[0], x.shape[1])
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # start at T = 1, the uncalibrated model
    opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x / log_t.exp(), y)  # class indices or class probabilities
        loss.backward()
        return loss

    opt.step(closure)
    return float(math.exp(min(max(float(log_t.detach()), LOG_T_RANGE[0]), LOG_T_RANGE[1])))


def expected_calibration_error(probs: Array, targets: Array, num_bins: int = NUM_BINS) -> float:
    """Top-label ECE with `num_bins` equal-width confidence bins (torchmetrics' `multiclass_calibration_error`).

    Args:
        probs: `(N, C)` class probabilities (rows outside [0, 1] are read as logits and softmaxed, as torchmetrics
            does).
        targets: `(N,)` class indices, or `(N, C)` label distributions, scored by their arg-max.
        num_bins: Equal-width bins over [0, 1].

    Raises:
        ValueError: Empty input, or targets that do not fit the probabilities.
    """
    p = _scores(probs).float()
    y = _targets(targets, p.shape[0], p.shape[1])
    y = y.argmax(-1) if y.ndim == 2 else y
    return float(multiclass_calibration_error(p, y, num_classes=p.shape[1], n_bins=num_bins, norm="l1"))


def fit_calibration(logits: Array, targets: Array, *, fitted_on: str) -> dict[str, Any]:
    """Fit T on a split's clip logits and measure that split's ECE before and after: the checkpoint's `calibration`.

    Args:
        logits: `(N, C)` uncalibrated clip logits of the split.
        targets: `(N,)` class indices or `(N, C)` label distributions (T is fitted on these; ECE uses the arg-max).
        fitted_on: The split's name, recorded.

    Returns:
        `{"method": "temperature", "temperature", "fitted_on", "num_clips", "ece_before", "ece_after"}`.
    """
    x = _scores(logits)
    t = fit_temperature(x, targets)
    return {"method": METHOD, "temperature": t, "fitted_on": fitted_on, "num_clips": int(x.shape[0]),
            "ece_before": expected_calibration_error(x.softmax(-1), targets),
            "ece_after": expected_calibration_error((x / t).softmax(-1), targets)}


def plot_reliability(probs: Array, targets: Array, *, num_bins: int = NUM_BINS, title: str = "Reliability",
                     path: str | Path | None = None) -> bytes:
    """Reliability diagram: per confidence bin, the accuracy against the diagonal of perfect calibration.

    Args:
        probs: `(N, C)` class probabilities (or logits, softmaxed as in `expected_calibration_error`).
        targets: `(N,)` class indices (or `(N, C)` distributions, by arg-max).
        num_bins: Equal-width bins, as in the ECE.
        title: Figure title (the ECE is appended).
        path: Where to also write the PNG.

    Returns:
        PNG bytes.
    """
    from matplotlib.figure import Figure

    from classemo.plots import _finish

    p = normalize_logits_if_needed(_scores(probs).float(), "softmax").numpy()
    y = _targets(targets, p.shape[0], p.shape[1])
    y = (y.argmax(-1) if y.ndim == 2 else y).numpy()
    conf, correct = p.max(1), p.argmax(1) == y
    bins = np.minimum((conf * num_bins).astype(int), num_bins - 1)  # (N,)
    count = np.bincount(bins, minlength=num_bins)
    acc = np.bincount(bins, weights=correct, minlength=num_bins) / np.maximum(count, 1)
    centres = (np.arange(num_bins) + 0.5) / num_bins
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.add_subplot()
    ax.bar(centres[count > 0], acc[count > 0], width=1 / num_bins, edgecolor="black", label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top-class probability)", ylabel="accuracy",
           title=f"{title} (ECE {expected_calibration_error(p, y, num_bins):.3f})")
    ax.legend(loc="upper left", fontsize=8)
    return _finish(fig, path)


__all__ = ["expected_calibration_error", "fit_calibration", "fit_temperature", "plot_reliability"]
