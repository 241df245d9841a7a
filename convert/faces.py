"""Real face crops for calibration and validation, found and cut exactly as the device does."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from convert import ConvertError
from edge.capture import IMAGE_SUFFIXES, SourceError
from edge.config import DetectorConfig
from edge.crop import detect_and_crop, face_image, model_crops
from edge.datasets import DatasetError, read_fer2013
from edge.detect import make_detector
from edge.model import ModelInfo
from edge.video import read_frames

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
SHIFT_FRACTION = 0.05  # augmentation: a face box moved by this fraction of its size
FER_TRAIN_USAGE = "Training"  # FER2013 rows with this Usage calibrate; the test rows validate


@dataclass(frozen=True)
class Origin:
    """Where one face crop came from, so a report can say which faces were held out."""

    source: str
    index: int  # video frame, image number in its folder, or CSV row
    box: tuple[int, int, int, int] | None = None  # xyxy in the frame; None for ready-made crops
    augment: str = ""  # "", "flip" or "shift"


@dataclass
class FaceSet:
    """Face crops (n, h, w) uint8 and where each came from."""

    crops: np.ndarray  # (n, *ModelInfo.crop_shape) in the model's colour
    origins: list[Origin] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.origins)

    @classmethod
    def empty(cls, info: ModelInfo) -> FaceSet:
        return cls(np.zeros((0, *info.crop_shape), np.uint8), [])

    def extend(self, crops: np.ndarray, origins: list[Origin]) -> None:
        if len(origins):
            self.crops = np.concatenate([self.crops, crops])
            self.origins.extend(origins)

    def subsample(self, limit: int) -> FaceSet:
        """At most ``limit`` faces, evenly spread over the set (deterministic)."""
        if len(self) <= limit:
            return self
        keep = np.linspace(0, len(self) - 1, limit).round().astype(int)
        return FaceSet(self.crops[keep], [self.origins[i] for i in keep])

    def summary(self) -> list[dict]:
        """Per source: how many faces and which frames/rows/images they came from."""
        by_source: dict[str, list[Origin]] = {}
        for origin in self.origins:
            by_source.setdefault(origin.source, []).append(origin)
        rows = []
        for source, origins in by_source.items():
            indices = sorted({o.index for o in origins})
            rows.append({
                "source": source,
                "faces": len(origins),
                "augmented": sum(1 for o in origins if o.augment),
                "items": len(indices),
                "first": indices[0],
                "last": indices[-1],
            })
        return rows


@dataclass(frozen=True)
class SourceFaces:
    """The faces of one source before the split: ``count`` items (frames, images, rows)."""

    crops: np.ndarray
    origins: list[Origin]
    count: int
    usage: list[str] | None = None  # FER2013 'Usage' of every CSV row


@dataclass(frozen=True)
class FaceSplit:
    """Calibration faces and held-out validation faces."""

    calibration: FaceSet
    validation: FaceSet


def source_kind(path: Path) -> str:
    """'csv', 'folder', 'image' or 'video', or a one-line error."""
    if not path.exists():
        raise ConvertError(f"calibration source not found: {path}")
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    raise ConvertError(
        f"calibration source {path}: unknown kind {suffix!r} "
        f"(expected a FER2013 .csv, a folder, an image {IMAGE_SUFFIXES} or a video {VIDEO_SUFFIXES})"
    )


def held_out_by_position(n: int, fraction: float) -> np.ndarray:
    """Video frames: the last ``fraction`` of the clip is held out (neighbouring frames look alike)."""
    held = np.zeros(n, bool)
    count = int(n * fraction)
    if count:
        held[n - count:] = True
    return held


def held_out_interleaved(n: int, fraction: float) -> np.ndarray:
    """Independent images: every (1/fraction)-th one is held out, so both sets span the folder."""
    i = np.arange(n)
    return np.floor((i + 1) * fraction) > np.floor(i * fraction)


def read_image_file(path: Path) -> np.ndarray:
    """An image file as a BGR frame, as the runtime reads images."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ConvertError(f"not a decodable image: {path}")
    return image


def video_frames(path: Path) -> Iterator[np.ndarray]:
    """BGR frames of a video file, in order; ConvertError when none decodes."""
    try:
        yield from read_frames(path)
    except SourceError as exc:
        raise ConvertError(str(exc)) from None


def shifted_boxes(box: np.ndarray) -> list[np.ndarray]:
    """The face box moved diagonally both ways by SHIFT_FRACTION of its size."""
    step = max(1, int(round(SHIFT_FRACTION * (box[2] - box[0]))))
    return [box + np.array([step, step, step, step]), box - np.array([step, step, step, step])]


def frame_faces(frame: np.ndarray, boxes: np.ndarray, crops: np.ndarray, info: ModelInfo, source: str,
                index: int, augment: bool) -> tuple[np.ndarray, list[Origin]]:
    """The crops of the detected faces of one frame (plus flipped and shifted copies if augmenting)."""
    origins = [Origin(source, index, tuple(int(v) for v in box)) for box in boxes]
    if not augment or not len(boxes):
        return crops, origins
    extra_crops, extra_origins = [crops[:, :, ::-1]], [Origin(o.source, o.index, o.box, "flip") for o in origins]
    for box in boxes:
        moved = np.array(shifted_boxes(box), np.int32)
        extra_crops.append(model_crops(frame, moved, info))
        extra_origins += [Origin(source, index, tuple(int(v) for v in b), "shift") for b in moved]
    return np.concatenate([crops, *extra_crops]), origins + extra_origins


def crop_augment(crops: np.ndarray, origins: list[Origin]) -> tuple[np.ndarray, list[Origin]]:
    """Ready-made crops have no frame to shift in: add their mirror images only."""
    flipped = [Origin(o.source, o.index, o.box, "flip") for o in origins]
    return np.concatenate([crops, crops[:, :, ::-1]]), origins + flipped


class FaceCollector:
    """Collects face crops from sources into calibration and held-out validation sets."""

    def __init__(self, info: ModelInfo, holdout: float = 0.5, augment: bool = False,
                 crops: bool = False, detector: DetectorConfig | None = None) -> None:
        if not 0.0 <= holdout < 1.0:
            raise ConvertError(f"--holdout must be in [0, 1), got {holdout}")
        self.info = info
        self.holdout = holdout
        self.augment = augment
        self.crops = crops
        self.detector_config = detector or DetectorConfig()
        self.detector = make_detector(self.detector_config)
        self.calibration = FaceSet.empty(info)
        self.validation = FaceSet.empty(info)

    def add(self, path: Path, role: str = "split") -> None:
        """Add every face of one source; role 'split' holds part out, 'calibration'/'validation' not."""
        kind = source_kind(path)
        before = (len(self.calibration), len(self.validation))
        readers = {"csv": self.read_csv, "folder": self.read_folder, "image": self.read_image, "video": self.read_video}
        found = readers[kind](path)
        if role != "split":
            held = np.full(found.count, role == "validation")
        elif found.usage and any(found.usage):
            held = np.array([u != FER_TRAIN_USAGE for u in found.usage])
        elif kind == "video":
            held = held_out_by_position(found.count, self.holdout)
        else:
            held = held_out_interleaved(found.count, self.holdout)
        self.put(found.crops, found.origins, held)
        log.info("%s (%s): %d calibration and %d validation faces", path, kind,
                 len(self.calibration) - before[0], len(self.validation) - before[1])

    def result(self) -> FaceSplit:
        return FaceSplit(self.calibration, self.validation)

    def put(self, crops: np.ndarray, origins: list[Origin], held: np.ndarray) -> None:
        """Route faces by their item's held-out flag; augmented copies only ever calibrate."""
        is_held = np.array([bool(held[o.index]) for o in origins], bool)
        to_calibrate = np.flatnonzero(~is_held)
        to_validate = np.flatnonzero(is_held & np.array([not o.augment for o in origins], bool))
        self.calibration.extend(crops[to_calibrate], [origins[i] for i in to_calibrate])
        self.validation.extend(crops[to_validate], [origins[i] for i in to_validate])

    def read_video(self, path: Path) -> SourceFaces:
        """Faces of every frame, found frame after frame by a fresh detector following them, as in a live run."""
        detector = make_detector(self.detector_config)
        crops, origins, count = [self.no_crops()], [], 0
        for index, frame in enumerate(video_frames(path)):
            boxes, face_crops = detect_and_crop(detector, frame, self.info)
            found = frame_faces(frame, boxes, face_crops, self.info, str(path), index, self.augment)
            crops.append(found[0])
            origins += found[1]
            count = index + 1
        return SourceFaces(np.concatenate(crops), origins, count)

    def read_image(self, path: Path, index: int = 0) -> SourceFaces:
        """Faces of a photo (a complete still-image scan), or the image itself with --crops."""
        frame = read_image_file(path)
        if self.crops:
            found = face_image(frame, self.info)[None], [Origin(str(path), index)]
            return SourceFaces(*(crop_augment(*found) if self.augment else found), 1)
        boxes, face_crops = detect_and_crop(self.detector, frame, self.info, still=True)
        return SourceFaces(*frame_faces(frame, boxes, face_crops, self.info, str(path), index, self.augment), 1)

    def read_folder(self, path: Path) -> SourceFaces:
        images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        crops, origins = [self.no_crops()], []
        for index, image in enumerate(images):
            try:
                found = self.read_image(image, index)
            except ConvertError as exc:
                log.warning("skipped %s", exc)
                continue
            crops.append(found.crops)
            origins += found.origins
        return SourceFaces(np.concatenate(crops), origins, len(images))

    def read_csv(self, path: Path) -> SourceFaces:
        crops, origins, usage = read_fer_csv(path, self.info)
        count = len(origins)
        if self.augment and count:
            crops, origins = crop_augment(crops, origins)
        return SourceFaces(crops, origins, count, usage)

    def no_crops(self) -> np.ndarray:
        return np.zeros((0, *self.info.crop_shape), np.uint8)


def read_fer_csv(path: Path, info: ModelInfo) -> tuple[np.ndarray, list[Origin], list[str]]:
    """FER2013 CSV (emotion,pixels,Usage) -> crops resized to the model input, origins, usages."""
    try:
        images, _, usage = read_fer2013(path)
    except DatasetError as exc:
        raise ConvertError(str(exc)) from None
    crops = np.stack([face_image(image, info) for image in images])
    return crops, [Origin(str(path), row) for row in range(len(images))], list(usage)


def collect_faces(info: ModelInfo, calib: list[Path], val: list[Path] | None = None,
                  holdout: float = 0.5, augment: bool = False, crops: bool = False) -> FaceSplit:
    """Calibration and validation faces. Without ``val``, part of every calibration source is held out."""
    collector = FaceCollector(info, holdout=0.0 if val else holdout, augment=augment, crops=crops)
    for path in calib:
        collector.add(Path(path), "calibration" if val else "split")
    for path in val or []:
        collector.add(Path(path), "validation")
    return collector.result()
