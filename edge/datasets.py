"""Labelled faces on disk: class folders, path/label lists, FER2013 and FER+ CSVs (no TensorFlow)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.capture import IMAGE_SUFFIXES
from edge.model import FER2013_LABELS

log = logging.getLogger(__name__)

FER2013_SIDE = 48  # pixels, every FER2013 image is 48x48
FER2013_COLUMNS = ("emotion", "pixels", "Usage")
SPLITS = ("Training", "PublicTest", "PrivateTest")
FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
FERPLUS_COLUMNS = ("Usage", "Image name", *FERPLUS_EMOTIONS, "unknown", "NF")
FERPLUS_VOTES = ("plurality", "majority")
# Label and class-folder names, lower case -> the runtime's class names (FER2013's, and FER+'s contempt)
LABEL_ALIASES = {"angry": "angry", "anger": "angry", "disgust": "disgust", "disgusted": "disgust",
                 "fear": "fear", "fearful": "fear", "happy": "happy", "happiness": "happy", "sad": "sad",
                 "sadness": "sad", "surprise": "surprise", "surprised": "surprise", "neutral": "neutral",
                 "contempt": "contempt"}
FERPLUS_NAMES = {name: LABEL_ALIASES[name] for name in FERPLUS_EMOTIONS}  # FER+ vote column -> class name
BOX_COLUMNS = ("x1", "y1", "x2", "y2")


class DatasetError(ValueError):
    """A dataset file, row or folder is missing or malformed; the message names it."""


def canonical_label(name: str) -> str | None:
    """The runtime's class name for a label or folder name (angry/anger, happy/happiness, ...), or None."""
    return LABEL_ALIASES.get(name.strip().lower())


@dataclass(frozen=True)
class ClassSet:
    """The classes a model predicts, in output order, and how other classes fold into them."""

    labels: tuple[str, ...]
    fold: dict[str, str] = field(default_factory=dict)  # e.g. contempt -> neutral

    def index(self, name: str) -> int:
        """Output index of a FER2013/FER+ class name, or -1 when this class set drops it."""
        name = self.fold.get(name, name)
        return self.labels.index(name) if name in self.labels else -1


# ---------------------------------------------------------------- FER2013 and FER+ CSV files

def csv_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[str, dict[str, str]]]:
    """Rows of a CSV whose header must name ``columns``, as ("<file>: line N", {column: value})."""
    if not path.is_file():
        raise DatasetError(f"file not found: {path}")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in columns if name not in header]
            if missing:
                raise DatasetError(f"{path}: line 1: header lacks column(s) {missing}; "
                                   f"expected {','.join(columns)}")
            index = {name: header.index(name) for name in header}
            for row in reader:
                where = f"{path}: line {reader.line_num}"
                if not row:
                    continue
                if len(row) != len(header):
                    raise DatasetError(f"{where}: expected {len(header)} fields, got {len(row)}")
                yield where, {name: row[i] for name, i in index.items()}
        except UnicodeDecodeError as exc:  # decoded a block at a time: no line number to give
            raise DatasetError(f"{path}: not a UTF-8 text file ({exc.reason})") from None
        except csv.Error as exc:
            raise DatasetError(f"{path}: line {reader.line_num}: not a readable CSV row ({exc})") from None


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV file (empty for an empty or unreadable file)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def parse_pixels(text: str, where: str) -> np.ndarray:
    """One FER2013 ``pixels`` field -> (48, 48) uint8: exactly 2304 space-separated integers 0-255."""
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        raise DatasetError(f"{where}: pixels must be space-separated integers 0-255") from None
    if values.size != FER2013_SIDE * FER2013_SIDE:
        raise DatasetError(f"{where}: expected {FER2013_SIDE * FER2013_SIDE} pixel values "
                           f"({FER2013_SIDE}x{FER2013_SIDE}), got {values.size}")
    if values.min() < 0 or values.max() > 255:
        raise DatasetError(f"{where}: pixel values must be 0-255, got {values.min()}..{values.max()}")
    return values.astype(np.uint8).reshape(FER2013_SIDE, FER2013_SIDE)


def check_usage(value: str, where: str) -> str:
    value = value.strip()
    if value not in SPLITS:
        raise DatasetError(f"{where}: Usage must be one of {list(SPLITS)}, got {value!r}")
    return value


def read_fer2013(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fer2013.csv -> images (n, 48, 48) uint8, emotion codes (n,) 0-6, usage (n,) str."""
    path = Path(path)
    images, emotions, usages = [], [], []
    for where, row in csv_rows(path, FER2013_COLUMNS):
        emotion = row["emotion"].strip()
        if not emotion.isdigit() or int(emotion) >= len(FER2013_LABELS):
            raise DatasetError(f"{where}: emotion must be an integer 0-{len(FER2013_LABELS) - 1}, got {emotion!r}")
        emotions.append(int(emotion))
        images.append(parse_pixels(row["pixels"], where))
        usages.append(check_usage(row["Usage"], where))
    if not images:
        raise DatasetError(f"{path}: no data rows")
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
            raise DatasetError(f"{where}: Usage {split!r} differs from fer2013.csv row {index + 1} "
                               f"({usage[index]!r}); the FER+ file must be row-aligned with fer2013.csv")
        try:
            counts = [float(row[name].strip() or 0) for name in FERPLUS_COLUMNS[2:]]
        except ValueError:
            raise DatasetError(f"{where}: vote counts must be numbers") from None
        if min(counts) < 0:
            raise DatasetError(f"{where}: vote counts must be >= 0")
        votes.append(counts)
        named.append(bool(row["Image name"].strip()))
    if len(votes) != len(usage):
        raise DatasetError(f"{path} has {len(votes)} data rows but fer2013.csv has {len(usage)}; "
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
        raise DatasetError(f"FER+ vote must be one of {FERPLUS_VOTES}, got {vote!r}")
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


# ---------------------------------------------------------------- labelled faces for evaluation

@dataclass(frozen=True)
class LabelledFace:
    """One labelled example: an image file (the face found in it, or in ``box``) or a ready-made face."""

    name: str  # the image path, or "<csv>: line N" for a FER2013 row
    label: str  # a runtime class name (canonical_label)
    path: Path | None = None
    box: tuple[int, int, int, int] | None = None  # x1, y1, x2, y2 in the image; None: detect
    pixels: np.ndarray | None = None  # (h, w) uint8 face, already cropped (FER2013): no detection


def read_class_folders(root: Path) -> list[LabelledFace]:
    """ROOT/<label>/<image>: every image under a folder named by a label (angry/anger, happy/happiness, ...)."""
    faces: list[LabelledFace] = []
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"{root}: no class folders; expected ROOT/<label>/*.jpg with labels such as "
                           f"{', '.join(sorted(set(LABEL_ALIASES)))}")
    for folder in folders:
        label = canonical_label(folder.name)
        if label is None:
            raise DatasetError(f"{folder}: unknown label folder {folder.name!r}; expected one of "
                               f"{', '.join(sorted(LABEL_ALIASES))}")
        images = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            log.warning("%s: empty class folder (no %s images)", folder, "/".join(sorted(IMAGE_SUFFIXES)))
        faces += [LabelledFace(str(p), label, path=p) for p in images]
    return faces


def parse_box(row: dict[str, str], where: str) -> tuple[int, int, int, int] | None:
    """A face box from a list row: a 'box' column "x1 y1 x2 y2", or columns x1,y1,x2,y2; None when empty."""
    text = row.get("box", " ".join(row.get(c, "") for c in BOX_COLUMNS)).replace(",", " ").strip()
    if not text:
        return None
    try:
        x1, y1, x2, y2 = (int(round(float(v))) for v in text.split())
    except ValueError:
        raise DatasetError(f"{where}: box must be 4 numbers x1 y1 x2 y2, got {text!r}") from None
    if x2 <= x1 or y2 <= y1 or min(x1, y1) < 0:
        raise DatasetError(f"{where}: box must have x1 < x2 and y1 < y2, all >= 0, got {text!r}")
    return x1, y1, x2, y2


def read_image_list(path: Path) -> list[LabelledFace]:
    """A CSV of path,label (optionally box, or x1,y1,x2,y2); relative paths are relative to the CSV's folder."""
    faces = []
    for where, row in csv_rows(path, ("path", "label")):
        label = canonical_label(row["label"])
        if label is None:
            raise DatasetError(f"{where}: unknown label {row['label']!r}; expected one of "
                               f"{', '.join(sorted(LABEL_ALIASES))}")
        image = Path(row["path"].strip()).expanduser()
        image = image if image.is_absolute() else path.parent / image
        faces.append(LabelledFace(str(image), label, path=image, box=parse_box(row, where)))
    return faces


def read_fer2013_faces(path: Path, usage: str | None = None, ferplus: Path | None = None,
                       vote: str = "majority") -> list[LabelledFace]:
    """FER2013 rows as ready-made faces, labelled by FER2013's emotion or by FER+ votes (``vote``).

    With FER+, rows without an image name or a winning emotion are dropped (counted in the log).
    """
    images, emotions, usages = read_fer2013(path)
    names = [FER2013_LABELS[e] for e in emotions]
    if ferplus is not None:
        votes, named = read_ferplus(ferplus, usages)
        every = ClassSet((*FER2013_LABELS, "contempt"))
        labels, _ = ferplus_labels(votes, every, vote)
        labels[~named] = -1
        log.info("%s: %d of %d rows have a FER+ %s label", ferplus, (labels >= 0).sum(), len(labels), vote)
        names = [every.labels[i] if i >= 0 else "" for i in labels]
    if usage is not None and usage not in SPLITS:
        raise DatasetError(f"usage must be one of {list(SPLITS)}, got {usage!r}")
    return [LabelledFace(f"{path}: line {i + 2}", name, pixels=images[i])
            for i, name in enumerate(names) if name and (usage is None or usages[i] == usage)]


def read_labelled(data: Path, usage: str | None = None, ferplus: Path | None = None) -> list[LabelledFace]:
    """Labelled faces from class folders, an image list CSV or a FER2013 CSV (with FER+ votes)."""
    if not data.exists():
        raise DatasetError(f"dataset not found: {data}")
    if (usage or ferplus) and (data.is_dir() or "pixels" not in csv_header(data)):
        raise DatasetError("--usage and --ferplus apply to a FER2013 CSV (emotion,pixels,Usage)")
    if data.is_dir():
        faces = read_class_folders(data)
    elif data.suffix.lower() != ".csv":
        raise DatasetError(f"{data}: expected a folder of class folders or a .csv file")
    elif "pixels" in csv_header(data):
        faces = read_fer2013_faces(data, usage, ferplus)
    else:
        faces = read_image_list(data)
    if not faces:
        raise DatasetError(f"{data}: no labelled images")
    return faces
