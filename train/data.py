"""Datasets: the FER2013 CSV, FER+ vote labels, image-folder datasets, and the class sets they map to."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from edge.model import FER2013_LABELS
from train import TrainError

log = logging.getLogger(__name__)

FER2013_SIDE = 48  # pixels, every FER2013 image is 48x48
FER2013_COLUMNS = ("emotion", "pixels", "Usage")
SPLITS = ("Training", "PublicTest", "PrivateTest")
FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_COLUMNS = ("Usage", "Image name", *FERPLUS_EMOTIONS, "unknown", "NF")
# FER+ vote column -> FER2013 class name
FERPLUS_NAMES = {"neutral": "neutral", "happiness": "happy", "surprise": "surprise", "sadness": "sad",
                 "anger": "angry", "disgust": "disgust", "fear": "fear", "contempt": "contempt"}
FERPLUS_VOTES = ("plurality", "majority")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# image-folder names -> split; class-folder names -> FER2013 class name
SPLIT_FOLDERS = {"train": "Training", "training": "Training", "val": "PublicTest", "valid": "PublicTest",
                 "validation": "PublicTest", "publictest": "PublicTest", "test": "PrivateTest",
                 "privatetest": "PrivateTest"}
CLASS_FOLDERS = {"angry": "angry", "anger": "angry", "disgust": "disgust", "disgusted": "disgust",
                 "fear": "fear", "fearful": "fear", "happy": "happy", "happiness": "happy", "sad": "sad",
                 "sadness": "sad", "surprise": "surprise", "surprised": "surprise", "neutral": "neutral",
                 "contempt": "contempt"}


class DataError(TrainError):
    """A dataset file, row or folder is missing or malformed."""


@dataclass(frozen=True)
class ClassSet:
    """The classes a model predicts, in output order, and how other classes fold into them."""

    labels: tuple[str, ...]
    fold: dict[str, str] = field(default_factory=dict)  # e.g. contempt -> neutral

    def index(self, name: str) -> int:
        """Output index of a FER2013/FER+ class name, or -1 when this class set drops it."""
        name = self.fold.get(name, name)
        return self.labels.index(name) if name in self.labels else -1


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


def csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of a CSV whose header must name ``columns``, as ("<file>: line N", {column: value})."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in columns if name not in header]
            if missing:
                raise DataError(f"{path}: line 1: header lacks column(s) {missing}; "
                                f"expected {','.join(columns)}")
            index = {name: header.index(name) for name in columns}
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                if not row:
                    continue
                if len(row) != len(header):
                    raise DataError(f"{where}: expected {len(header)} fields, got {len(row)}")
                yield where, {name: row[i] for name, i in index.items()}
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: line {reader.line_num}: not a readable CSV row ({exc})") from None


def parse_pixels(text: str, where: str) -> np.ndarray:
    """One FER2013 ``pixels`` field -> (48, 48) uint8."""
    try:
        values = np.fromstring(text, dtype=np.int32, sep=" ")
    except ValueError:
        raise DataError(f"{where}: pixels must be space-separated integers 0-255") from None
    if values.size != FER2013_SIDE * FER2013_SIDE:
        raise DataError(f"{where}: expected {FER2013_SIDE * FER2013_SIDE} pixel values "
                        f"({FER2013_SIDE}x{FER2013_SIDE}), got {values.size}")
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: pixel values must be 0-255, got {values.min()}..{values.max()}")
    return values.astype(np.uint8).reshape(FER2013_SIDE, FER2013_SIDE)


def check_usage(value: str, where: str) -> str:
    value = value.strip()
    if value not in SPLITS:
        raise DataError(f"{where}: Usage must be one of {list(SPLITS)}, got {value!r}")
    return value


def read_fer2013(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fer2013.csv -> images (n, 48, 48) uint8, emotion codes (n,) 0-6, usage (n,) str."""
    path = Path(path)
    images, emotions, usages = [], [], []
    for where, row in csv_rows(path, FER2013_COLUMNS):
        emotion = row["emotion"].strip()
        if not emotion.isdigit() or int(emotion) >= len(FER2013_LABELS):
            raise DataError(f"{where}: emotion must be an integer 0-{len(FER2013_LABELS) - 1}, got {emotion!r}")
        emotions.append(int(emotion))
        images.append(parse_pixels(row["pixels"], where))
        usages.append(check_usage(row["Usage"], where))
    if not images:
        raise DataError(f"{path}: no data rows")
    log.info("read %d images from %s", len(images), path)
    return np.stack(images), np.array(emotions, dtype=np.int64), np.array(usages)


def read_ferplus(path: str | Path, usage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fer2013new.csv -> votes (n, 10) in FERPLUS_COLUMNS order and which rows FER+ kept (named image).

    FER+ rows are aligned with fer2013.csv rows; ``usage`` (from fer2013.csv) checks that alignment.
    """
    path = Path(path)
    votes, named = [], []
    for where, row in csv_rows(path, FERPLUS_COLUMNS):
        index = len(votes)
        split = check_usage(row["Usage"], where)
        if index < len(usage) and split != usage[index]:
            raise DataError(f"{where}: Usage {split!r} differs from fer2013.csv row {index + 1} "
                            f"({usage[index]!r}); the FER+ file must be row-aligned with fer2013.csv")
        try:
            counts = [float(row[name].strip() or 0) for name in FERPLUS_COLUMNS[2:]]
        except ValueError:
            raise DataError(f"{where}: vote counts must be numbers") from None
        if min(counts) < 0:
            raise DataError(f"{where}: vote counts must be >= 0")
        votes.append(counts)
        named.append(bool(row["Image name"].strip()))
    if len(votes) != len(usage):
        raise DataError(f"{path} has {len(votes)} data rows but fer2013.csv has {len(usage)}; "
                        "the FER+ file must be row-aligned with fer2013.csv")
    return np.array(votes, dtype=np.float64).reshape(-1, len(FERPLUS_COLUMNS) - 2), np.array(named, dtype=bool)


def ferplus_labels(votes: np.ndarray, class_set: ClassSet, vote: str = "plurality",
                   ) -> tuple[np.ndarray, np.ndarray]:
    """FER+ votes (n, 10) -> class index per row (-1 = dropped) and vote distributions (n, classes).

    The label is the most-voted of the 10 FER+ columns (``plurality``; ties go to the earlier column,
    as the seeds' ``argmax`` did), or, with ``majority``, the column holding more than half of all
    votes (the FER+ paper's "majority" mode). Rows whose label is unknown or NF, which have no votes,
    or whose label the class set drops, get -1. Contempt folds into neutral after the vote in the
    7- and 5-class sets. The distributions count emotion votes only (unknown/NF votes ignored), with
    folded classes added together and dropped classes left out, normalised to sum to 1.
    """
    if vote not in FERPLUS_VOTES:
        raise DataError(f"FER+ vote must be one of {FERPLUS_VOTES}, got {vote!r}")
    column_class = np.array([class_set.index(FERPLUS_NAMES[name]) for name in FERPLUS_EMOTIONS])
    winner = votes.argmax(axis=1)
    total = votes.sum(axis=1)
    labels = np.full(len(votes), -1, dtype=np.int64)
    emotion = winner < len(FERPLUS_EMOTIONS)
    labels[emotion] = column_class[winner[emotion]]
    labels[total <= 0] = -1
    if vote == "majority":
        labels[votes.max(axis=1) <= total / 2] = -1
    soft = np.zeros((len(votes), len(class_set.labels)), dtype=np.float64)
    for column, index in enumerate(column_class):
        if index >= 0:
            soft[:, index] += votes[:, column]
    mass = soft.sum(axis=1, keepdims=True)
    soft = np.divide(soft, mass, out=np.zeros_like(soft), where=mass > 0)
    return labels, soft.astype(np.float32)


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
