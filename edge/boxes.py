"""Box geometry shared by the detector and the tracker: overlaps of xyxy boxes."""

from __future__ import annotations

import numpy as np


def intersections(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairwise intersection areas of boxes a (n, 4) and b (m, 4), and the areas of each."""
    a = a.astype(np.float64)[:, None, :]
    b = b.astype(np.float64)[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return w * h, area_a, area_b


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in a (n, 4) with every box in b (m, 4)."""
    inter, area_a, area_b = intersections(a, b)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def overlap_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area: 1.0 when one box lies inside the other."""
    inter, area_a, area_b = intersections(a, b)
    return inter / np.maximum(np.minimum(area_a, area_b), 1e-9)
