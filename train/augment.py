"""On-the-fly augmentation of grayscale face batches: resized crop, flip, shift, rotation, zoom, contrast,
sharpness and random erasing."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np

log = logging.getLogger(__name__)

CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratio range of a random resized crop (width / height)
ERASE_AREA = (0.02, 0.33)  # random erasing: area range, fraction of the image (Zhong et al. 2017)
ERASE_RATIO = (0.3, 3.3)  # ... and aspect ratio range of the erased rectangle


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; each image draws its own values uniformly within them.

    The defaults are the seeds' augmentation; ``train.recipes`` holds the paper's.
    """

    flip: bool = True  # horizontal flip with probability 0.5 (expressions are left-right symmetric)
    shift: float = 0.1  # fraction of the image side, in each direction
    rotation: float = 10.0  # degrees, either way
    zoom: float = 0.1  # scale in [1 - zoom, 1 + zoom]
    contrast: float = 0.2  # contrast factor in [1 - contrast, 1 + contrast] around the image mean
    sharpness: float = 0.5  # unsharp-mask amount in [0, sharpness]; 0 turns it off
    # random resized crop: a region of area crop_scale[0]..crop_scale[1] x the image (above 1: larger
    # than the image, the border repeated) and aspect ratio in CROP_RATIO, stretched to the full side;
    # (1, 1) turns it off
    crop_scale: tuple[float, float] = (1.0, 1.0)
    erase: float = 0.0  # random erasing: probability that one rectangle of the image becomes noise

    def __post_init__(self) -> None:
        for name, high in (("shift", 0.5), ("rotation", 180.0), ("zoom", 0.9), ("contrast", 0.9),
                           ("sharpness", 5.0), ("erase", 1.0)):
            value = getattr(self, name)
            if not 0.0 <= value <= high:
                raise ValueError(f"augmentation {name} must be in [0, {high}], got {value}")
        low, high = self.crop_scale
        if not 0.1 <= low <= high <= 2.0:
            raise ValueError(f"augmentation crop_scale must be 0.1 <= min <= max <= 2, got {self.crop_scale}")

    @property
    def resized_crop(self) -> bool:
        return self.crop_scale != (1.0, 1.0)


def crop_matrix(side: int, rng: np.random.Generator, scale: tuple[float, float]) -> np.ndarray:
    """3x3 affine that stretches a random crop (area fraction in ``scale``, aspect in CROP_RATIO) to the image."""
    area = rng.uniform(*scale) * side * side
    ratio = math.exp(rng.uniform(math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])))
    width, height = math.sqrt(area * ratio), math.sqrt(area / ratio)
    # a crop smaller than the image lies inside it; a larger one covers it (its border repeated)
    x0 = rng.uniform(min(0.0, side - width), max(0.0, side - width))
    y0 = rng.uniform(min(0.0, side - height), max(0.0, side - height))
    sx, sy = side / width, side / height
    return np.array([[sx, 0.0, -x0 * sx], [0.0, sy, -y0 * sy], [0.0, 0.0, 1.0]])


def affine_matrix(side: int, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """A random 2x3 affine (resized crop, then rotation and zoom about the centre, shift, optional flip)."""
    centre = (side - 1) / 2.0
    angle = rng.uniform(-config.rotation, config.rotation)
    scale = rng.uniform(1.0 - config.zoom, 1.0 + config.zoom)
    matrix = cv2.getRotationMatrix2D((centre, centre), angle, scale)
    matrix[:, 2] += rng.uniform(-config.shift, config.shift, size=2) * side
    if config.flip and rng.random() < 0.5:
        # mirror first (x -> 2 * centre - x): fold the mirror into the x column and the translation
        matrix[:, 2] += matrix[:, 0] * 2.0 * centre
        matrix[:, 0] *= -1.0
    if config.resized_crop:
        matrix = matrix @ crop_matrix(side, rng, config.crop_scale)
    return matrix


def erase_rectangle(image: np.ndarray, rng: np.random.Generator) -> None:
    """Random erasing in place: one rectangle (area in ERASE_AREA, aspect in ERASE_RATIO) filled with noise."""
    height, width = image.shape
    for _ in range(10):  # redraw a rectangle that does not fit, as Zhong et al. do
        area = rng.uniform(*ERASE_AREA) * height * width
        ratio = math.exp(rng.uniform(math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])))
        h, w = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < h < height and 0 < w < width:
            y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
            image[y:y + h, x:x + w] = rng.uniform(0.0, 255.0, size=(h, w))
            return


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
    if config.erase > 0:
        for i in np.flatnonzero(rng.random(n) < config.erase):
            erase_rectangle(out[i], rng)
    return np.clip(out, 0.0, 255.0, out=out)
