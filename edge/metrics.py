"""Multi-class evaluation metrics in NumPy: confusion matrix, accuracy, per-class precision/recall/F1, and its plot."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(classes, classes) int64 counts; row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"{name} must hold class indices 0-{num_classes - 1}, got {y.min()}..{y.max()}")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (scikit-learn's zero_division=0)."""
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def classification_metrics(cm: np.ndarray, labels: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Accuracy, macro and weighted F1 and per-class precision/recall/F1/support from a confusion matrix.

    Macro averages run over the classes that occur in the truth or the predictions (as scikit-learn
    does when given no label list), so a class absent from a test split does not count as F1 = 0.
    Weighted averages weight each class by its support.
    """
    cm = np.asarray(cm, dtype=np.int64)
    true_positive = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = safe_divide(true_positive, predicted)
    recall = safe_divide(true_positive, support)
    f1 = safe_divide(2 * precision * recall, precision + recall)
    seen = (support + predicted) > 0
    total = int(cm.sum())
    return {
        "n": total,
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "macro_f1": float(f1[seen].mean()) if seen.any() else 0.0,
        "macro_precision": float(precision[seen].mean()) if seen.any() else 0.0,
        "macro_recall": float(recall[seen].mean()) if seen.any() else 0.0,
        "weighted_f1": float((f1 * support).sum() / total) if total else 0.0,
        "per_class": {label: {"precision": float(precision[i]), "recall": float(recall[i]),
                              "f1": float(f1[i]), "support": int(support[i])}
                      for i, label in enumerate(labels)},
        "labels": list(labels),
        "confusion_matrix": cm.tolist(),
    }


def evaluate_predictions(y_true: np.ndarray, probabilities: np.ndarray,
                         labels: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """Metrics of softmax outputs (n, classes) against true class indices (n,)."""
    y_pred = np.asarray(probabilities).argmax(axis=1)
    return classification_metrics(confusion_matrix(y_true, y_pred, len(labels)), labels)


def plot_confusion_matrix(cm: np.ndarray, labels: list[str] | tuple[str, ...], path: Path, title: str) -> Path:
    """Counts in each cell, colour by row share (recall), rows = true class. Needs matplotlib (an extra)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never a window
    import matplotlib.pyplot as plt

    cm = np.asarray(cm)
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.8 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, label="share of the true class")
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=45, ha="right")
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (row, col), count in np.ndenumerate(cm):
        ax.text(col, row, str(count), ha="center", va="center", fontsize=8,
                color="white" if share[row, col] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    log.info("wrote %s", path)
    return path
