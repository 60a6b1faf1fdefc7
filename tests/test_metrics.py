"""Metrics equal values computed by hand on small arrays; V/A only over annotated clips; plots render."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from classemo.metrics import MetricAccumulator, classification_metrics, scalar_metrics
from classemo.plots import plot_confusion_matrix, plot_learning_curves, plot_per_class_accuracy

PRED = [0, 0, 1, 2, 2, 2, 1, 0]
TRUE = [0, 1, 1, 2, 2, 0, 1, 0]


def _hand_ccc(x: list[float], y: list[float]) -> float:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    vx = sum((a - mx) ** 2 for a in x) / (n - 1)
    vy = sum((b - my) ** 2 for b in y) / (n - 1)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y)) / (n - 1)
    return 2 * cov / (vx + vy + (mx - my) ** 2)


def _hand_rmse(x: list[float], y: list[float]) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(x, y)) / len(x))


def test_classification_metrics_by_hand() -> None:
    m = classification_metrics(torch.tensor(PRED), torch.tensor(TRUE), 4)
    # class 0: 3 true, 2 right; class 1: 3 true, 2 right; class 2: 2 true, 2 right; class 3 absent.
    assert m["accuracy"] == pytest.approx(6 / 8) and m["war"] == m["accuracy"]
    assert m["uar"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    np.testing.assert_allclose(m["per_class_accuracy"][:3], [2 / 3, 2 / 3, 1.0])
    assert math.isnan(m["per_class_accuracy"][3])
    expected = np.zeros((4, 4), int)
    for t, p in zip(TRUE, PRED):
        expected[t, p] += 1
    np.testing.assert_array_equal(m["confusion_matrix"], expected)


def test_accumulator_va_over_annotated_only_and_derived_separately() -> None:
    labels = ["fear", "happy", "neutral", "sad"]
    acc = MetricAccumulator(4, labels)
    va_true = np.array([[0.1, 0.2], [0.5, -0.3], [-0.4, 0.6], [0.9, 0.1],
                        [0.0, 0.0], [0.3, 0.3], [np.nan, np.nan], [-0.2, np.nan]], np.float32)
    va_pred = np.array([[0.2, 0.1], [0.4, -0.1], [-0.5, 0.2], [0.6, 0.3],
                        [0.7, -0.9], [0.1, 0.5], [0.8, 0.8], [-0.1, 0.4]], np.float32)
    source = ["annotated", "annotated", "annotated", "annotated", "derived", "derived", "none", "annotated"]
    logits = torch.nn.functional.one_hot(torch.tensor(PRED), 4).float() * 3
    # Two batches, the second through a separate accumulator merged from its state (as a worker's would be).
    acc.update(logits[:5], TRUE[:5], va_pred=va_pred[:5], va_true=va_true[:5], va_source=source[:5])
    other = MetricAccumulator(4, labels)
    other.update(logits[5:], torch.tensor(TRUE[5:]), va_pred=va_pred[5:], va_true=va_true[5:], va_source=source[5:])
    acc.merge(other.state())
    assert len(acc) == 8
    m = acc.compute()

    assert m["num_samples"] == 8 and m["accuracy"] == pytest.approx(0.75)
    # Every clip's confidence is softmax([3, 0, 0, 0])[0] = e^3 / (e^3 + 3), one bin, 6 of 8 right.
    assert m["ece"] == pytest.approx(abs(math.exp(3) / (math.exp(3) + 3) - 0.75), rel=1e-5)
    assert m["uar"] == pytest.approx(7 / 9)
    assert m["per_class_accuracy"]["neutral"] == pytest.approx(1.0) and math.isnan(m["per_class_accuracy"]["sad"])

    ann_v = [0, 1, 2, 3, 7]  # rows annotated with a valence
    ann_a = [0, 1, 2, 3]  # row 7 has no arousal
    for d, name, rows in ((0, "valence", ann_v), (1, "arousal", ann_a)):
        p, t = va_pred[rows, d].tolist(), va_true[rows, d].tolist()
        assert m[f"{name}_rmse"] == pytest.approx(_hand_rmse(p, t), rel=1e-5)
        assert m[f"{name}_ccc"] == pytest.approx(_hand_ccc(p, t), rel=1e-5)
        dp, dt = va_pred[[4, 5], d].tolist(), va_true[[4, 5], d].tolist()
        assert m[f"derived_{name}_rmse"] == pytest.approx(_hand_rmse(dp, dt), rel=1e-5)
        assert m[f"derived_{name}_ccc"] == pytest.approx(_hand_ccc(dp, dt), rel=1e-5)
    assert m["va_count"] == 5 and m["derived_va_count"] == 2

    flat = scalar_metrics(m, prefix="val_")
    assert flat["val_acc_fear"] == pytest.approx(2 / 3) and "val_acc_sad" not in flat
    assert "val_confusion_matrix" not in flat and all(isinstance(v, float) for v in flat.values())


def test_accumulator_without_va_and_bad_input() -> None:
    acc = MetricAccumulator(3)
    acc.update(torch.tensor([0, 2, 1]), [0, 2, 2])
    m = acc.compute()
    assert m["accuracy"] == pytest.approx(2 / 3) and m["va_count"] == 0 and math.isnan(m["valence_ccc"])
    assert math.isnan(m["ece"]) and "ece" not in scalar_metrics(m)  # class indices carry no probabilities
    assert set(m["per_class_accuracy"]) == {"0", "1", "2"}
    with pytest.raises(ValueError, match="no samples"):
        MetricAccumulator(3).compute()
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        acc.update(torch.tensor([0]), [3])
    with pytest.raises(ValueError, match="4 classes"):
        acc.update(torch.zeros(2, 4), [0, 1])
    with pytest.raises(ValueError, match="va_source"):
        acc.update(torch.zeros(1, 3), [0], va_pred=np.zeros((1, 2)), va_true=np.zeros((1, 2)), va_source=["maybe"])
    with pytest.raises(ValueError, match=r"shape \(1, 2\)"):
        acc.update(torch.zeros(1, 3), [0], va_pred=np.zeros((1, 3)), va_true=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="missing"):
        acc.merge({"pred": np.zeros(1)})


def _png_shape(data: bytes) -> tuple[int, ...]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None
    return img.shape


def test_plots_render_png(tmp_path) -> None:
    m = classification_metrics(torch.tensor(PRED), torch.tensor(TRUE), 4)
    labels = ["fear", "happy", "neutral", "sad"]
    out = tmp_path / "cm.png"
    data = plot_confusion_matrix(m["confusion_matrix"], labels, path=out)
    assert out.read_bytes() == data and _png_shape(data)[0] > 100
    assert _png_shape(plot_confusion_matrix(m["confusion_matrix"], labels, normalize=False))[1] > 100
    per_class = dict(zip(labels, m["per_class_accuracy"].tolist()))
    assert _png_shape(plot_per_class_accuracy(per_class, overall=m["accuracy"]))[1] > 100
    history = {"train_loss": [2.0, 1.2, 0.7], "val_loss": [2.1, 1.5, 1.1], "val_accuracy": [0.3, 0.5, 0.7]}
    curves = plot_learning_curves(history, path=tmp_path / "sub" / "curves.png")
    assert (tmp_path / "sub" / "curves.png").is_file() and _png_shape(curves)[1] > 100
    with pytest.raises(ValueError, match="does not fit"):
        plot_confusion_matrix(np.zeros((2, 2)), labels)
