"""`classemo evaluate`: score a model on a dataset split, log it to MLflow, and the NetVLAD ablation (Figure 5).

Evaluation goes through `Predictor` (the one loader, the one preprocessing path) and `classemo.metrics`, so the
numbers match what the training job logs and what Serve would predict.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

NUMERIC_KEYS = ("accuracy", "uar", "valence_rmse", "valence_ccc", "arousal_rmse", "arousal_ccc")


def evaluate_dataset(model: str, data: str, *, split: str = "test", batch_size: int = 32,
                     device: str | None = None) -> dict[str, Any]:
    """Score a checkpoint dir or `models:/` URI on one split of a dataset (local or s3://).

    Returns:
        `classemo.metrics.MetricAccumulator.compute()` plus `labels`, `model`, `data`, `split`.
    """
    import numpy as np

    from classemo.data.batches import clip_va, eval_frames, va_sources
    from classemo.data.format import read_manifest, read_split
    from classemo.faces import FaceSettings, warn_if_different
    from classemo.metrics import MetricAccumulator
    from classemo.predictor import Predictor

    predictor = Predictor.from_checkpoint(model, device=device, batch_size=batch_size)
    manifest = read_manifest(data)
    if list(manifest.label_set.names) != predictor.labels:
        raise ValueError(f"model {model} predicts labels {predictor.labels}, but dataset {data} has "
                         f"{list(manifest.label_set.names)}")
    warn_if_different(FaceSettings.from_dict(manifest.face, size=manifest.image_size), predictor.face_settings,
                      f"evaluate {model} on {data}")
    table = read_split(data, split)
    if table.num_rows == 0:
        raise ValueError(f"split {split!r} of {data} holds no clips")
    acc = MetricAccumulator(len(predictor.labels), predictor.labels)
    for start in range(0, table.num_rows, batch_size):
        rows = table.slice(start, batch_size)
        preds = predictor.predict([eval_frames(enc, predictor.num_frames) for enc in rows.column("frames").to_pylist()])
        acc.update(np.stack([p.probs for p in preds]), rows.column("label_idx").to_pylist(),
                   va_pred=np.array([[p.valence, p.arousal] for p in preds], dtype=np.float32), va_true=clip_va(rows),
                   va_source=va_sources(rows))
    out = acc.compute()
    out.update(labels=predictor.labels, model=str(model), data=str(data), split=split)
    return out


def format_metrics(metrics: Mapping[str, Any], *, title: str = "") -> str:
    """A plain-text table: overall accuracy, UAR, per-class accuracy, V/A RMSE and CCC."""
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
