"""Detector stage interface: the FaceDetector protocol, its Detections, and the factory keyed by detector.kind.

A backend is one module (``edge/haar.py``, ...) with a class that has ``detect``, one settings
table in ``config.toml`` (``[detector.<kind>]``, a dataclass in ``edge.config``) and one line in
``BACKENDS`` below. Everything that needs a detector (the pipeline's detector process,
``convert/`` calibration, ``benchmarks/``) builds it with ``make_detector``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.config import DetectorConfig
from edge.crop import crop_faces  # noqa: F401 (its old home: scripts that import it from here keep working)

# kind -> "module:Class"; the class is built from its own table, config.detector.<kind>.
# Modules are imported only when chosen: a backend's dependencies load only if it is used.
BACKENDS = {
    "haar": "edge.haar:HaarDetector",
    "blazeface": "edge.blazeface:BlazeFaceDetector",
}


class DetectorError(RuntimeError):
    """The face detector cannot be built (unknown kind, missing or unusable model or cascade)."""


@dataclass
class Detections:
    """Faces found in one frame, as column arrays in frame pixels.

    ``xyxy`` (n, 4) int32 boxes, square and framed like a Haar face box (what the classifier's
    crop expects); ``scores`` (n,) float32 in [0, 1], None where the backend has none;
    ``keypoints`` (n, k, 2) float32 (x, y) landmarks, None where it has none.
    """

    xyxy: np.ndarray
    scores: np.ndarray | None = None
    keypoints: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.int32)
        if self.xyxy.size == 0:
            self.xyxy = self.xyxy.reshape(0, 4)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy: expected shape (_, 4), got {self.xyxy.shape}")
        n = len(self.xyxy)
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
            if self.scores.shape != (n,):
                raise ValueError(f"scores: expected shape ({n},), got {self.scores.shape}")
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
            if self.keypoints.ndim != 3 or self.keypoints.shape[0] != n or self.keypoints.shape[2] != 2:
                raise ValueError(f"keypoints: expected shape ({n}, _, 2), got {self.keypoints.shape}")

    def __len__(self) -> int:
        return len(self.xyxy)


class FaceDetector(Protocol):
    """Finds the faces of a frame: a BGR uint8 (h, w, 3) frame in, Detections out.

    Backends may follow faces from frame to frame (a video); ``still=True`` says the frame
    stands alone (a photo, the next image of a folder): forget earlier frames, search it whole.
    """

    def detect(self, frame: np.ndarray, still: bool = False) -> Detections: ...


def make_detector(config: DetectorConfig) -> FaceDetector:
    """The backend ``config.kind`` names, built from its own settings table."""
    target = BACKENDS.get(config.kind)
    if target is None:
        raise DetectorError(f"unknown detector.kind {config.kind!r} (known: {', '.join(BACKENDS)})")
    module_name, class_name = target.split(":")
    backend = getattr(importlib.import_module(module_name), class_name)
    return backend(getattr(config, config.kind))
