"""Test-time augmentation views of face crops: single, flip (image + mirror) and ten-crop (corners, centre, mirrors)."""

# The probabilities of a face's views are averaged. Ten-crop follows Krizhevsky et al. 2012 and the
# Khaireddin & Chen recipe: four corner crops and the centre crop, and the mirror image of each.
# The paper crops 40x40 from the 48x48 face and feeds the network 40x40 crops; here a crop of
# ``fraction`` of the side is stretched back to the model's input size, so the same model serves
# the device (which feeds it the whole face) and the ten-crop evaluation, and random resized crops
# in training cover the zoom a crop applies.

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np

log = logging.getLogger(__name__)

TTA_MODES = ("single", "flip", "ten_crop")
DEFAULT_CROP_FRACTION = 0.9  # side of a ten-crop crop, fraction of the image side (within the zoom that
# random resized crops of area >= 0.8 train: their side is >= 0.894 of the face)


def crop_boxes(side: int, fraction: float) -> list[tuple[int, int, int]]:
    """(x, y, size) of the four corner crops and the centre crop of a side x side image."""
    if not 0.5 <= fraction <= 1.0:
        raise ValueError(f"ten-crop fraction must be in [0.5, 1], got {fraction}")
    size = max(1, int(round(side * fraction)))
    far, mid = side - size, (side - size) // 2
    return [(0, 0, size), (far, 0, size), (0, far, size), (far, far, size), (mid, mid, size)]


def views(images: np.ndarray, mode: str, fraction: float = DEFAULT_CROP_FRACTION) -> np.ndarray:
    """(n, s, s) uint8 -> (n, v, s, s) uint8: the ``mode``'s views of each image (v = 1, 2 or 10)."""
    if mode not in TTA_MODES:
        raise ValueError(f"test-time augmentation must be one of {TTA_MODES}, got {mode!r}")
    if mode == "single":
        return images[:, None]
    if mode == "flip":
        return np.stack([images, images[:, :, ::-1]], axis=1)
    side = images.shape[1]
    crops = []
    for x, y, size in crop_boxes(side, fraction):
        part = images[:, y:y + size, x:x + size]
        crops.append(np.stack([cv2.resize(p, (side, side), interpolation=cv2.INTER_LINEAR) for p in part])
                     if size != side else part)
    crops = np.stack(crops, axis=1)
    return np.concatenate([crops, crops[:, :, :, ::-1]], axis=1)


def averaged_probabilities(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, mode: str,
                           fraction: float = DEFAULT_CROP_FRACTION, batch: int = 256) -> np.ndarray:
    """Mean softmax output over each image's views; ``predict`` maps (m, s, s) uint8 to (m, classes)."""
    if not len(images):
        raise ValueError("test-time augmentation needs at least one image")
    parts = []
    for start in range(0, len(images), batch):
        stack = views(images[start:start + batch], mode, fraction)
        n, v = stack.shape[:2]
        probs = np.asarray(predict(stack.reshape(n * v, *stack.shape[2:])))
        parts.append(probs.reshape(n, v, -1).mean(axis=1))
    return np.concatenate(parts)
