"""On-the-fly augmentation of grayscale face batches: flip, shift, rotation, zoom, contrast, sharpness."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; each image draws its own values uniformly within them."""

    flip: bool = True  # horizontal flip with probability 0.5 (expressions are left-right symmetric)
    shift: float = 0.1  # fraction of the image side, in each direction
    rotation: float = 10.0  # degrees, either way
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom]
    contrast: float = 0.2  # contrast factor in [1 - contrast, 1 + contrast] around the image mean
    sharpness: float = 0.5  # unsharp-mask amount in [0, sharpness]; 0 turns it off

    def __post_init__(self) -> None:
        for name, high in (("shift", 0.5), ("rotation", 180.0), ("zoom", 0.9), ("contrast", 0.9),
                           ("sharpness", 5.0)):
            value = getattr(self, name)
            if not 0.0 <= value <= high:
                raise ValueError(f"augmentation {name} must be in [0, {high}], got {value}")


def affine_matrix(side: int, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """A random 2x3 affine (rotation and zoom about the centre, shift, optional flip) for one image."""
    centre = (side - 1) / 2.0
    angle = rng.uniform(-config.rotation, config.rotation)
    scale = rng.uniform(1.0 - config.zoom, 1.0 + config.zoom)
    matrix = cv2.getRotationMatrix2D((centre, centre), angle, scale)
    matrix[:, 2] += rng.uniform(-config.shift, config.shift, size=2) * side
    if config.flip and rng.random() < 0.5:
        # mirror first (x -> 2 * centre - x): fold the mirror into the x column and the translation
        matrix[:, 2] += matrix[:, 0] * 2.0 * centre
        matrix[:, 0] *= -1.0
    return matrix


def augment_batch(images: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """(n, h, w) uint8 -> (n, h, w) float32 in [0, 255], each image transformed at random."""
    n, side = len(images), images.shape[1]
    out = np.empty(images.shape, dtype=np.float32)
    for i in range(n):
        matrix = affine_matrix(side, rng, config)
        out[i] = cv2.warpAffine(images[i], matrix, (side, side), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
        if config.sharpness > 0:
            blurred = cv2.GaussianBlur(out[i], (0, 0), sigmaX=1.0)
            out[i] += rng.uniform(0.0, config.sharpness) * (out[i] - blurred)
    if config.contrast > 0:
        factor = rng.uniform(1.0 - config.contrast, 1.0 + config.contrast, size=(n, 1, 1)).astype(np.float32)
        mean = out.mean(axis=(1, 2), keepdims=True)
        out = (out - mean) * factor + mean
    return np.clip(out, 0.0, 255.0, out=out)
