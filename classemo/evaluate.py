"""`classemo evaluate`: score a model on a dataset split, log it to MLflow, and the NetVLAD ablation (Figure 5);
and the temperature fit of a checkpoint on a split (`calibrate_checkpoint`, `classemo.calibration`).

Evaluation goes through `Predictor` (the one loader, the one preprocessing path) and `classemo.metrics`, so the
numbers match what the training job logs and what Serve would predict.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from classemo.predictor import ClipPrediction, Predictor

NUMERIC_KEYS = ("accuracy", "uar", "ece", "valence_rmse", "valence_ccc", "arousal_rmse", "arousal_ccc")


def load_for(model: str, data: str, *, batch_size: int = 32, device: str | None = None) -> Predictor:
    """The model's `Predictor`, checked against the dataset: the same labels, and a warning for other face crops."""
    from classemo.data.format import read_manifest
    from classemo.faces import FaceSettings, warn_if_different
    from classemo.predictor import Predictor

    predictor = Predictor.from_checkpoint(model, device=device, batch_size=batch_size)
    manifest = read_manifest(data)
    if list(manifest.label_set.names) != predictor.labels:
        raise ValueError(f"model {model} predicts labels {predictor.labels}, but dataset {data} has "
                         f"{list(manifest.label_set.names)}")
    warn_if_different(FaceSettings.from_dict(manifest.face, size=manifest.image_size), predictor.face_settings,
                      f"evaluate {model} on {data}")
    return predictor


def predict_split(predictor: Predictor, data: str, split: str) -> Iterator[tuple[pa.Table, list[ClipPrediction]]]:
    """The split's rows and the predictor's predictions of them, `predictor.batch_size` clips at a time.

    Raises:
        ValueError: The split holds no clips.
    """
    from classemo.data.batches import eval_frames
    from classemo.data.format import read_split

    table = read_split(data, split)
    if table.num_rows == 0:
        raise ValueError(f"split {split!r} of {data} holds no clips")
    for start in range(0, table.num_rows, predictor.batch_size):
        rows = table.slice(start, predictor.batch_size)
        yield rows, predictor.predict([eval_frames(enc, predictor.num_frames)
                                       for enc in rows.column("frames").to_pylist()])


def evaluate_dataset(model: str, data: str, *, split: str = "test", batch_size: int = 32,
                     device: str | None = None) -> dict[str, Any]:
    """Score a checkpoint dir or `models:/` URI on one split of a dataset (local or s3://).

    Returns:
        `classemo.metrics.MetricAccumulator.compute()` plus `labels`, `model`, `data`, `split`.
    """
    import numpy as np

    from classemo.data.batches import clip_va, va_sources
    from classemo.metrics import MetricAccumulator

    predictor = load_for(model, data, batch_size=batch_size, device=device)
    acc = MetricAccumulator(len(predictor.labels), predictor.labels)
    for rows, preds in predict_split(predictor, data, split):
        acc.update(np.stack([p.probs for p in preds]), rows.column("label_idx").to_pylist(),
                   va_pred=np.array([[p.valence, p.arousal] for p in preds], dtype=np.float32), va_true=clip_va(rows),
                   va_source=va_sources(rows))
    out = acc.compute()
    out.update(labels=predictor.labels, model=str(model), data=str(data), split=split)
    return out


def split_logits(predictor: Predictor, data: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A split's uncalibrated clip logits `(N, C)` and label indices `(N,)`, through the predictor's path."""
    import numpy as np

    logits, targets = [], []
    for rows, preds in predict_split(predictor, data, split):
        logits.extend(p.logits for p in preds)
        targets.extend(rows.column("label_idx").to_pylist())
    return np.stack(logits), np.asarray(targets, dtype=np.int64)


def calibrate_checkpoint(model: str | Path, data: str, *, split: str = "val", batch_size: int = 32,
                         device: str | None = None) -> dict[str, Any] | None:
    """Fit the softmax temperature of a checkpoint directory on a split and write it into its `config.json`.

    The fit is on the split's majority labels (`label_idx`), the labels its ECE and accuracy are scored on. A
    calibration already in the config is replaced: the logits it is fitted on are the model's own, before any
    temperature.

    Returns:
        The `calibration` written (`classemo.calibration.fit_calibration`), or None when the split holds no clips.
    """
    from classemo.calibration import fit_calibration
    from classemo.checkpoint import write_calibration
    from classemo.data.format import read_manifest

    if not read_manifest(data).counts.get(split):
        return None
    predictor = load_for(str(model), data, batch_size=batch_size, device=device)
    record = fit_calibration(*split_logits(predictor, data, split), fitted_on=split)
    write_calibration(model, record)
    return record


def format_metrics(metrics: Mapping[str, Any], *, title: str = "") -> str:
    """A plain-text table: overall accuracy, UAR, ECE (of the probabilities as served), per-class accuracy, V/A RMSE
    and CCC."""
    lines = [f"== {title} ({metrics.get('num_samples', '?')} clips) ==" if title else ""]
    for k in NUMERIC_KEYS:
        v = metrics.get(k, math.nan)
        lines.append(f"{k:>16}: {v:.4f}" if isinstance(v, float) and not math.isnan(v) else f"{k:>16}: n/a")
    for k in ("derived_valence_rmse", "derived_valence_ccc", "derived_arousal_rmse", "derived_arousal_ccc"):
        v = metrics.get(k)
        if isinstance(v, float) and not math.isnan(v):
            lines.append(f"{k:>24}: {v:.4f} (V/A derived from the label)")
    lines.append("per-class accuracy:")
    for name, v in metrics.get("per_class_accuracy", {}).items():
        lines.append(f"{name:>16}: {'n/a' if v is None or math.isnan(v) else f'{v:.4f}'}")
    return "\n".join(line for line in lines if line != "")


def log_evaluation(metrics: Mapping[str, Any], *, labels: Sequence[str], prefix: str = "test_") -> None:
    """Log scalar metrics and the confusion-matrix and per-class-accuracy plots into the active MLflow run."""
    import tempfile

    import mlflow

    from classemo.metrics import scalar_metrics
    from classemo.plots import plot_confusion_matrix, plot_per_class_accuracy

    mlflow.log_metrics(scalar_metrics(metrics, prefix=prefix))
    with tempfile.TemporaryDirectory() as tmp:
        split = prefix.rstrip("_")
        plot_confusion_matrix(metrics["confusion_matrix"], labels, title=f"Confusion matrix ({split})",
                              path=Path(tmp) / f"{prefix}confusion_matrix.png")
        plot_per_class_accuracy(metrics["per_class_accuracy"], overall=metrics["accuracy"],
                                title=f"Per-class accuracy ({split})", path=Path(tmp) / f"{prefix}per_class.png")
        mlflow.log_artifacts(tmp)


def plot_ablation(with_vlad: Mapping[str, float], without_vlad: Mapping[str, float], path: str | Path) -> Path:
    """Figure 5 of the paper: per-class accuracy with and without NetVLAD, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = list(with_vlad)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(1.1 * len(names) + 2, 3.6))
    for off, series, label in ((-0.2, without_vlad, "without NetVLAD"), (0.2, with_vlad, "with NetVLAD")):
        vals = [series.get(n, math.nan) for n in names]
        bars = ax.bar(x + off, np.nan_to_num(vals), width=0.4, label=label)
        ax.bar_label(bars, labels=["" if math.isnan(v) else f"{v:.2f}" for v in vals], fontsize=7)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("accuracy")
    ax.set_title("NetVLAD ablation: per-class accuracy")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
