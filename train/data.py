"""Datasets: the FER2013 CSV, FER+ vote labels, image-folder datasets, and the class sets they map to."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from edge.capture import IMAGE_SUFFIXES
from edge.datasets import (FER2013_COLUMNS, FER2013_SIDE, FERPLUS_COLUMNS, FERPLUS_EMOTIONS,  # noqa: F401
                           FERPLUS_NAMES, FERPLUS_VOTES, LABEL_ALIASES, SPLITS, ClassSet, DatasetError,
                           ferplus_labels, read_fer2013, read_ferplus)
from edge.model import FER2013_LABELS
from train import TrainError

log = logging.getLogger(__name__)

# image-folder names -> split; class-folder names -> FER2013 class name
SPLIT_FOLDERS = {"train": "Training", "training": "Training", "val": "PublicTest", "valid": "PublicTest",
                 "validation": "PublicTest", "publictest": "PublicTest", "test": "PrivateTest",
                 "privatetest": "PrivateTest"}
CLASS_FOLDERS = LABEL_ALIASES


class DataError(TrainError):
    """A dataset file, row or folder is missing or malformed."""


@contextmanager
def data_errors() -> Iterator[None]:
    """edge.datasets' readers (FER2013, FER+) raise DatasetError; train reports it as a DataError."""
    try:
        yield
    except DatasetError as exc:
        raise DataError(str(exc)) from None


CLASS_SETS = {
    "7": ClassSet(FER2013_LABELS, {"contempt": "neutral"}),
    "8": ClassSet((*FER2013_LABELS, "contempt")),
    "5": ClassSet(("angry", "happy", "sad", "surprise", "neutral"), {"contempt": "neutral"}),
}


def class_set_for_labels(labels: tuple[str, ...] | list[str]) -> str:
    """The name of the class set whose labels are exactly these (a saved model's labels)."""
    for name, class_set in CLASS_SETS.items():
        if tuple(labels) == class_set.labels:
            return name
    raise DataError(f"model labels {list(labels)} are none of the known class sets "
                    f"{[list(c.labels) for c in CLASS_SETS.values()]}")


@dataclass(frozen=True)
class Dataset:
    """Images with their class index and split; ``soft`` holds per-image label distributions, if any."""

    images: np.ndarray  # (n, side, side) uint8
    labels: np.ndarray  # (n,) int64, index into ``classes``
    splits: np.ndarray  # (n,) str, one of SPLITS
    classes: tuple[str, ...]
    soft: np.ndarray | None = None  # (n, len(classes)) float32, rows sum to 1
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.ndim != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (n, h, w) uint8, got {self.images.shape} {self.images.dtype}")
        if self.labels.shape != (n,) or self.splits.shape != (n,):
            raise ValueError(f"expected labels and splits of shape ({n},), "
                             f"got {self.labels.shape} and {self.splits.shape}")
        if self.soft is not None and self.soft.shape != (n, len(self.classes)):
            raise ValueError(f"expected soft labels of shape ({n}, {len(self.classes)}), got {self.soft.shape}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def side(self) -> int:
        return int(self.images.shape[1])

    def subset(self, mask: np.ndarray) -> Dataset:
        soft = None if self.soft is None else self.soft[mask]
        return replace(self, images=self.images[mask], labels=self.labels[mask], splits=self.splits[mask],
                       soft=soft)

    def split(self, name: str) -> Dataset:
        return self.subset(self.splits == name)

    def counts(self) -> np.ndarray:
        """Images per class, in class order."""
        return np.bincount(self.labels, minlength=len(self.classes))

    def targets(self) -> np.ndarray:
        """Training targets: the soft label distributions if present, else one-hot labels."""
        if self.soft is not None:
            return self.soft.astype(np.float32)
        return np.eye(len(self.classes), dtype=np.float32)[self.labels]


def resize_images(images: np.ndarray, side: int) -> np.ndarray:
    """(n, h, w) uint8 -> (n, side, side) uint8; area interpolation when shrinking, linear when growing."""
    if images.shape[1:] == (side, side):
        return images
    interpolation = cv2.INTER_AREA if side < images.shape[1] else cv2.INTER_LINEAR
    out = np.empty((len(images), side, side), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = cv2.resize(image, (side, side), interpolation=interpolation)
    return out


def load_fer2013(path: str | Path, ferplus: str | Path | None = None, classes: str = "7", side: int = 48,
                 soft: bool = False, vote: str = "plurality") -> Dataset:
    """fer2013.csv (optionally relabelled by FER+ votes) as a Dataset of the chosen class set."""
    class_set = class_set_of(classes)
    with data_errors():
        images, emotions, usage = read_fer2013(path)
    if ferplus is None:
        if soft:
            raise DataError("soft labels need FER+ vote counts: pass --ferplus fer2013new.csv")
        if "contempt" in class_set.labels:
            raise DataError("FER2013 has no contempt class: the 8-class set needs --ferplus fer2013new.csv")
        labels = np.array([class_set.index(FER2013_LABELS[e]) for e in emotions], dtype=np.int64)
        distributions = None
        source = f"FER2013 ({Path(path).name})"
    else:
        with data_errors():
            votes, named = read_ferplus(ferplus, usage)
            labels, distributions = ferplus_labels(votes, class_set, vote)
        labels[~named] = -1
        distributions = distributions if soft else None
        source = f"FER2013 images with FER+ labels ({Path(path).name}, {Path(ferplus).name})"
    keep = labels >= 0
    log.info("%s: %d of %d images kept for the %d-class set", source, keep.sum(), len(keep),
             len(class_set.labels))
    dataset = Dataset(images, labels, usage, class_set.labels, distributions, source).subset(keep)
    return replace(dataset, images=resize_images(dataset.images, side))


def class_set_of(classes: str) -> ClassSet:
    if classes not in CLASS_SETS:
        raise DataError(f"class set must be one of {list(CLASS_SETS)}, got {classes!r}")
    return CLASS_SETS[classes]


def read_image(path: Path, side: int) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError(f"not a readable image: {path}")
    return resize_images(image[None], side)[0] if image.shape != (side, side) else image


def split_folders(root: Path) -> dict[str, Path]:
    """Split name -> folder, from a root holding train/ (and val/, test/) folders."""
    found: dict[str, Path] = {}
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        split = SPLIT_FOLDERS.get(child.name.lower())
        if split is not None:
            if split in found:
                raise DataError(f"{root}: both {found[split].name}/ and {child.name}/ map to split {split}")
            found[split] = child
    if "Training" not in found:
        raise DataError(f"{root}: no train/ folder; an image-folder dataset is "
                        "ROOT/train/<class>/*.png with ROOT/test/ (and optionally ROOT/val/) alike")
    return found


def load_image_folder(root: str | Path, classes: str = "7", side: int = 48) -> Dataset:
    """ROOT/{train,val,test}/<class>/<image> (e.g. an AffectNet export) as a Dataset."""
    root = Path(root)
    class_set = class_set_of(classes)
    images, labels, splits = [], [], []
    for split, folder in split_folders(root).items():
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            name = CLASS_FOLDERS.get(class_dir.name.lower())
            if name is None:
                raise DataError(f"{class_dir}: unknown class folder {class_dir.name!r}; "
                                f"expected one of {sorted(set(CLASS_FOLDERS))}")
            index = class_set.index(name)
            if index < 0:
                continue
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    images.append(read_image(file, side))
                    labels.append(index)
                    splits.append(split)
    if not images:
        raise DataError(f"{root}: no images of the {len(class_set.labels)}-class set found")
    log.info("read %d images from %s", len(images), root)
    return Dataset(np.stack(images), np.array(labels, dtype=np.int64), np.array(splits), class_set.labels,
                   source=f"image folder '{root.name}'")


def load_dataset(data: str | Path, ferplus: str | Path | None = None, classes: str = "7", side: int = 48,
                 soft: bool = False, vote: str = "plurality") -> Dataset:
    """A FER2013 CSV (with optional FER+ labels) or an image-folder root, as a Dataset."""
    data = Path(data)
    if data.is_dir():
        if ferplus is not None or soft:
            raise DataError("--ferplus and --soft-labels apply to fer2013.csv, not to an image folder")
        return load_image_folder(data, classes, side)
    return load_fer2013(data, ferplus, classes, side, soft, vote)
