"""The paper's reported metrics: overall and per-class accuracy, UAR/WAR, confusion matrix, RMSE and CCC of V/A,
and the expected calibration error (ECE) of the class probabilities (`classemo.calibration`).

V/A metrics count only clips whose V/A is annotated; clips whose V/A was derived from the label (datasets without
V/A) are reported separately under `derived_*` keys, because a model can score well on them just by classifying.

`MetricAccumulator` keeps per-sample predictions as flat arrays. They are small (a few numbers per clip, the C class
probabilities among them), they concatenate across batches and across distributed workers, and every metric is then
computed once by torchmetrics on the whole set, so nothing is averaged over batches.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix
from torchmetrics.functional.regression import concordance_corrcoef, mean_squared_error
from torchmetrics.utilities.compute import normalize_logits_if_needed

from classemo.calibration import expected_calibration_error

VA_NAMES: tuple[str, str] = ("valence", "arousal")
VA_SOURCES: tuple[str, ...] = ("annotated", "derived", "none")
STATE_KEYS: tuple[str, ...] = ("pred", "target", "probs", "va_pred", "va_true", "va_source")


def classification_metrics(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, Any]:
    """Accuracy, WAR, UAR, per-class accuracy and the confusion matrix.

    UAR (unweighted average recall) averages the per-class recall over the classes present in `target`;
    torchmetrics' macro recall would also count classes that are only predicted, as recall 0. WAR (weighted average
    recall) weights each class by its support, which is the overall accuracy.

    Args:
        pred: `(N,)` predicted class indices.
        target: `(N,)` true class indices.
        num_classes: C.

    Returns:
        `accuracy`, `war`, `uar` floats, `per_class_accuracy` `(C,)` array (NaN for a class absent from
        `target`) and `confusion_matrix` `(C, C)` int64 array, rows = true class, columns = predicted class.
    """
    cm = multiclass_confusion_matrix(pred, target, num_classes=num_classes).numpy().astype(np.int64)
    support = cm.sum(axis=1)
    correct = np.diag(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, correct / np.maximum(support, 1), np.nan)
    accuracy = float(correct.sum() / max(support.sum(), 1))
    return {
        "accuracy": accuracy,
        "war": accuracy,
        "uar": float(np.nanmean(per_class)) if (support > 0).any() else math.nan,
        "per_class_accuracy": per_class,
        "confusion_matrix": cm,
    }


def regression_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """RMSE and CCC (torchmetrics, sample statistics) of one V/A dimension; NaN where undefined.

    CCC needs two samples and some variance; with fewer than two, or constant values, it is NaN.
    """
    n = int(pred.numel())
    if n == 0:
        return {"rmse": math.nan, "ccc": math.nan}
    rmse = float(mean_squared_error(pred, target, squared=False))
    ccc = math.nan
    if n >= 2:
        with warnings.catch_warnings():
            # torchmetrics warns, then returns NaN, when a variance is ~0; NaN is the answer we report.
            warnings.simplefilter("ignore", UserWarning)
            ccc = float(concordance_corrcoef(pred, target))
    return {"rmse": rmse, "ccc": ccc}


class MetricAccumulator:
    """Accumulates per-clip predictions over batches (and workers) and computes the evaluation metrics."""

    def __init__(self, num_classes: int, labels: Sequence[str] | None = None) -> None:
        """Create an empty accumulator.

        Args:
            num_classes: C.
            labels: Class names for the per-class keys; defaults to "0".."C-1".
        """
        if labels is not None and len(labels) != num_classes:
            raise ValueError(f"{len(labels)} label names for {num_classes} classes")
        self.num_classes = num_classes
        self.labels = list(labels) if labels is not None else [str(i) for i in range(num_classes)]
        self._parts: dict[str, list[np.ndarray]] = {k: [] for k in STATE_KEYS}

    def __len__(self) -> int:
        return sum(len(p) for p in self._parts["pred"])

    def update(
        self,
        scores: torch.Tensor | np.ndarray,
        target: torch.Tensor | np.ndarray | Sequence[int],
        *,
        va_pred: torch.Tensor | np.ndarray | None = None,
        va_true: torch.Tensor | np.ndarray | None = None,
        va_source: Sequence[str] | None = None,
    ) -> None:
        """Add one batch.

        Args:
            scores: `(B, C)` logits or probabilities (torchmetrics' rule: a batch with a value outside [0, 1] is
                softmaxed), or `(B,)` predicted class indices, which give no probabilities and so no ECE.
            target: `(B,)` true class indices.
            va_pred: `(B, 2)` predicted (valence, arousal).
            va_true: `(B, 2)` true (valence, arousal); NaN where missing.
            va_source: Per clip "annotated", "derived" or "none" (the dataset's `va_source`). When omitted,
                every non-NaN `va_true` counts as annotated.
        """
        scores = torch.as_tensor(scores).detach().cpu()
        pred = scores.argmax(dim=-1) if scores.ndim == 2 else scores.long()
        target_arr = torch.as_tensor(target).detach().cpu().long().numpy().reshape(-1)
        b = len(target_arr)
        if pred.shape[0] != b:
            raise ValueError(f"scores hold {pred.shape[0]} samples but target holds {b}")
        if scores.ndim == 2 and scores.shape[1] != self.num_classes:
            raise ValueError(f"scores have {scores.shape[1]} classes, the accumulator {self.num_classes}")
        if b and (target_arr.min() < 0 or target_arr.max() >= self.num_classes):
            raise ValueError(f"target labels must lie in [0, {self.num_classes}), got {sorted(set(target_arr))}")

        probs = np.full((b, self.num_classes), np.nan, np.float32)  # NaN rows: no probabilities, left out of ECE
        if scores.ndim == 2:
            probs = normalize_logits_if_needed(scores.float(), "softmax").numpy()
        va_p = np.full((b, 2), np.nan, np.float32)
        va_t = np.full((b, 2), np.nan, np.float32)
        if va_pred is not None and va_true is not None:
            va_p = torch.as_tensor(va_pred).detach().cpu().float().numpy()
            va_t = torch.as_tensor(va_true).detach().cpu().float().numpy()
            if va_p.shape != (b, 2) or va_t.shape != (b, 2):
                raise ValueError(f"va_pred and va_true must have shape ({b}, 2), got {va_p.shape} and {va_t.shape}")
        if va_source is None:
            source = np.full(b, "annotated", dtype=object)
        else:
            source = np.asarray(list(va_source), dtype=object)
            if len(source) != b or not set(source) <= set(VA_SOURCES):
                raise ValueError(f"va_source needs {b} values from {VA_SOURCES}, got {list(source)[:5]}...")
        self._parts["pred"].append(pred.numpy().astype(np.int64))
        self._parts["target"].append(target_arr)
        self._parts["probs"].append(probs.astype(np.float32))
        self._parts["va_pred"].append(va_p.astype(np.float32))
        self._parts["va_true"].append(va_t.astype(np.float32))
        self._parts["va_source"].append(np.array([VA_SOURCES.index(s) for s in source], dtype=np.int8))

    def state(self) -> dict[str, np.ndarray]:
        """The accumulated arrays (`va_source` as indices into VA_SOURCES); concatenate them to merge workers."""
        empty = {"pred": (0,), "target": (0,), "probs": (0, self.num_classes), "va_pred": (0, 2), "va_true": (0, 2),
                 "va_source": (0,)}
        dtypes = {"pred": np.int64, "target": np.int64, "probs": np.float32, "va_pred": np.float32,
                  "va_true": np.float32, "va_source": np.int8}
        return {
            k: np.concatenate(p) if p else np.zeros(empty[k], dtypes[k]) for k, p in self._parts.items()
        }

    def merge(self, other: "MetricAccumulator | Mapping[str, np.ndarray]") -> "MetricAccumulator":
        """Add another accumulator's samples (or its `state()`, e.g. gathered from a worker); returns self."""
        state = other.state() if isinstance(other, MetricAccumulator) else other
        missing = set(STATE_KEYS) - set(state)
        if missing:
            raise ValueError(f"metric state is missing {sorted(missing)}")
        for k in STATE_KEYS:
            self._parts[k].append(np.asarray(state[k]))
        return self

    def compute(self) -> dict[str, Any]:
        """All metrics over everything accumulated.

        Returns:
            `num_samples`, `accuracy`, `war`, `uar`, `per_class_accuracy` (label -> float, NaN when the class is
            absent), `confusion_matrix` (C, C), `ece` (top-label, 15 bins, over the samples given with probabilities;
            NaN when none were); for annotated V/A `valence_rmse`, `valence_ccc`, `arousal_rmse`,
            `arousal_ccc`, `va_count`; the same for derived V/A with the prefix `derived_`.
        """
        s = self.state()
        if len(s["target"]) == 0:
            raise ValueError("no samples were accumulated; nothing to compute")
        out: dict[str, Any] = {"num_samples": int(len(s["target"]))}
        cls = classification_metrics(torch.from_numpy(s["pred"]), torch.from_numpy(s["target"]), self.num_classes)
        out.update(cls)
        out["per_class_accuracy"] = dict(zip(self.labels, (float(v) for v in cls["per_class_accuracy"])))
        scored = ~np.isnan(s["probs"]).any(axis=1)
        out["ece"] = expected_calibration_error(s["probs"][scored], s["target"][scored]) if scored.any() else math.nan

        for prefix, source in (("", "annotated"), ("derived_", "derived")):
            rows = s["va_source"] == VA_SOURCES.index(source)
            present = rows[:, None] & ~np.isnan(s["va_true"]) & ~np.isnan(s["va_pred"])  # (N, 2)
            out[f"{prefix}va_count"] = int(present.any(axis=1).sum())
            for d, name in enumerate(VA_NAMES):
                keep = present[:, d]
                reg = regression_metrics(torch.from_numpy(s["va_pred"][keep, d]),
                                         torch.from_numpy(s["va_true"][keep, d]))
                out[f"{prefix}{name}_rmse"], out[f"{prefix}{name}_ccc"] = reg["rmse"], reg["ccc"]
        return out


def scalar_metrics(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Flatten `MetricAccumulator.compute()` into finite floats for MLflow / Ray `report`.

    Per-class accuracy becomes `acc_<label>`; the confusion matrix (an artifact, see `classemo.plots`) and NaN
    values (undefined metrics, e.g. CCC without annotated V/A) are left out.
    """
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "per_class_accuracy":
            flat.update({f"acc_{label}": float(v) for label, v in value.items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = float(value)
    return {f"{prefix}{k}": v for k, v in flat.items() if math.isfinite(v)}
