"""Report files of a run: metrics.json, confusion matrix, learning curves and class-distribution charts."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen before pyplot loads)
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from edge.metrics import plot_confusion_matrix  # noqa: E402,F401  (train's reports draw it too)

log = logging.getLogger(__name__)

CURVES = (("loss", "loss"), ("accuracy", "accuracy"))  # (log column, axis title)
DPI = 100  # dots per inch of the PNG files


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def read_log(path: Path) -> dict[str, list[float]]:
    """The CSV training log as column -> values (empty when there is no log yet)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {key: [float(row[key]) for row in rows if row.get(key)] for key in rows[0]}


def plot_learning_curves(log_path: Path, path: Path) -> Path:
    """Training and validation loss and accuracy per epoch, from the CSV training log."""
    history = read_log(log_path)
    epochs = [e + 1 for e in history.get("epoch", [])]
    fig, axes = plt.subplots(1, len(CURVES), figsize=(11, 4))
    for ax, (key, title) in zip(axes, CURVES):
        for prefix, name in (("", "training"), ("val_", "validation")):
            values = history.get(prefix + key, [])
            if values:
                ax.plot(epochs[:len(values)], values, marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    return save(fig, path)


def plot_class_distribution(labels: list[str] | tuple[str, ...], before: np.ndarray, after: np.ndarray | None,
                            path: Path) -> Path:
    """Training images per class, before and (when oversampling) after oversampling."""
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(1.5 + 0.9 * len(labels), 4))
    width = 0.4 if after is not None else 0.8
    offset = width / 2 if after is not None else 0.0
    bars = ax.bar(x - offset, before, width, label="training set")
    ax.bar_label(bars, fontsize=7)
    if after is not None:
        bars = ax.bar(x + offset, after, width, label="after oversampling (per epoch)")
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylabel("images")
    ax.set_ylim(0, max(np.max(before), np.max(after) if after is not None else 0) * 1.3 + 1)
    ax.set_title("training images per class")
    ax.legend(loc="upper center", ncols=2)
    return save(fig, path)


def save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    log.info("wrote %s", path)
    return path
