"""Evaluation plots for MLflow artifacts and reports: confusion matrix, per-class accuracy, learning curves.

Figures are built with `matplotlib.figure.Figure` directly, not pyplot, so no global figure state or GUI backend is
involved and the helpers are safe inside Ray workers and server threads. Each returns PNG bytes and, when `path` is
given, also writes them there.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure


def _finish(fig: Figure, path: str | Path | None) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = buf.getvalue()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    return data


def plot_confusion_matrix(
    cm: np.ndarray | Sequence[Sequence[int]],
    labels: Sequence[str],
    *,
    normalize: bool = True,
    title: str = "Confusion matrix",
    path: str | Path | None = None,
) -> bytes:
    """Draw a confusion matrix (rows = true class, columns = predicted class).

    Args:
        cm: `(C, C)` counts.
        labels: Class names.
        normalize: Colour and annotate each row as recall fractions (counts are still shown); rows with no
            samples stay empty.
        title: Figure title.
        path: Where to also write the PNG.

    Returns:
        PNG bytes.
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.shape != (len(labels), len(labels)):
        raise ValueError(f"confusion matrix of shape {cm.shape} does not fit {len(labels)} labels")
    rows = cm.sum(axis=1, keepdims=True)
    shown = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0) if normalize else cm
    n = len(labels)
    fig = Figure(figsize=(1.0 + 0.7 * n, 0.8 + 0.6 * n))
    ax = fig.add_subplot()
    im = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(cm.max(), 1.0))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set(xticks=range(n), yticks=range(n), xlabel="predicted", ylabel="true", title=title)
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    threshold = (1.0 if normalize else cm.max()) / 2
    for i in range(n):
        for j in range(n):
            text = f"{shown[i, j]:.2f}\n({int(cm[i, j])})" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if shown[i, j] > threshold else "black")
    return _finish(fig, path)


def plot_per_class_accuracy(
    per_class: Mapping[str, float],
    *,
    overall: float | None = None,
    title: str = "Per-class accuracy",
    path: str | Path | None = None,
) -> bytes:
    """Bar chart of per-class accuracy (NaN, i.e. a class absent from the data, is drawn as an empty slot).

    Args:
        per_class: Label -> accuracy in [0, 1].
        overall: Overall accuracy, drawn as a dashed line.
        title: Figure title.
        path: Where to also write the PNG.

    Returns:
        PNG bytes.
    """
    names = list(per_class)
    values = np.array([per_class[k] for k in names], dtype=np.float64)
    fig = Figure(figsize=(1.5 + 0.6 * len(names), 3.2))
    ax = fig.add_subplot()
    bars = ax.bar(range(len(names)), np.nan_to_num(values), color="tab:blue")
    for bar, v in zip(bars, values):
        label = "n/a" if np.isnan(v) else f"{v:.2f}"
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, label, ha="center", fontsize=7)
    if overall is not None:
        ax.axhline(overall, color="tab:red", linestyle="--", label=f"overall {overall:.3f}")
        ax.legend(loc="lower right", fontsize=7)
    ax.set(ylim=(0, 1.08), ylabel="accuracy", title=title, xticks=range(len(names)))
    ax.set_xticklabels(names, rotation=45, ha="right")
    return _finish(fig, path)


def plot_learning_curves(
    history: Mapping[str, Sequence[float]],
    *,
    xlabel: str = "epoch",
    title: str = "Learning curves",
    path: str | Path | None = None,
) -> bytes:
    """Line plot of metric histories; loss-like series (name containing "loss") go on a left axis, others right.

    Args:
        history: Metric name -> one value per epoch (or step).
        xlabel: Label of the x axis.
        title: Figure title.
        path: Where to also write the PNG.

    Returns:
        PNG bytes.
    """
    if not history:
        raise ValueError("no metric histories to plot")
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.add_subplot()
    ax.set(xlabel=xlabel, title=title)
    losses = {k: v for k, v in history.items() if "loss" in k}
    others = {k: v for k, v in history.items() if "loss" not in k}
    for name, values in losses.items():
        ax.plot(range(1, len(values) + 1), values, label=name)
    ax.set_ylabel("loss" if losses else "value")
    axes = [ax]
    if others:
        ax2 = ax.twinx() if losses else ax
        for name, values in others.items():
            ax2.plot(range(1, len(values) + 1), values, linestyle="--" if losses else "-", label=name)
        ax2.set_ylabel("metric")
        if ax2 is not ax:
            axes.append(ax2)
    handles = [h for a in axes for h in a.get_legend_handles_labels()[0]]
    names = [n for a in axes for n in a.get_legend_handles_labels()[1]]
    ax.legend(handles, names, fontsize=7, loc="best")
    return _finish(fig, path)
