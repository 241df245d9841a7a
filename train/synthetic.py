"""Synthetic FER2013 / FER+ CSV files with learnable class patterns, for smoke tests without the real data."""

# `python -m train.synthetic --out DIR` writes DIR/fer2013.csv and DIR/fer2013new.csv in the real formats.
# Each class is a different shape (bar, blob, ring, gradient, cross...) on a noisy background, drawn
# left-right symmetric so that flip augmentation keeps the class. Nothing here looks like a face.

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from train.data import FER2013_COLUMNS, FER2013_SIDE, FERPLUS_COLUMNS, FERPLUS_EMOTIONS, FERPLUS_NAMES, SPLITS

log = logging.getLogger(__name__)

# the 7 FER2013 classes then contempt; contempt rows carry FER2013 emotion 6 (neutral), as FER2013 has none
SYNTHETIC_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
FER2013_CODE = {name: min(i, 6) for i, name in enumerate(SYNTHETIC_CLASSES)}
# images per class in the Training split, shaped like FER2013 (disgust and contempt rare)
TRAIN_COUNTS = (160, 50, 160, 260, 180, 130, 180, 40)
TEST_FRACTION = 0.15  # PublicTest and PrivateTest each get this fraction of the Training count
NOISE_SIGMA = 12.0  # grey levels
UNLABELLED_SHARE = 0.04  # FER+ rows whose majority is unknown or NF, or without an image name


def draw_pattern(name: str, rng: np.random.Generator, side: int = FER2013_SIDE) -> np.ndarray:
    """One (side, side) uint8 image of the class's shape, jittered in place, size and contrast."""
    background = rng.uniform(70, 130)
    ink = background + rng.choice([-1, 1]) * rng.uniform(60, 100)
    image = np.full((side, side), background, dtype=np.float32)
    c = side / 2 + rng.uniform(-3, 3, size=2)
    cx, cy = int(c[0]), int(c[1])
    half = int(side * rng.uniform(0.3, 0.4))
    width = int(rng.integers(4, 8))
    if name == "angry":  # horizontal bar
        cv2.line(image, (cx - half, cy), (cx + half, cy), float(ink), width)
    elif name == "disgust":  # vertical bar
        cv2.line(image, (cx, cy - half), (cx, cy + half), float(ink), width)
    elif name == "fear":  # filled disc
        cv2.circle(image, (cx, cy), int(half * 0.6), float(ink), -1)
    elif name == "happy":  # ring
        cv2.circle(image, (cx, cy), half, float(ink), max(2, width // 2))
    elif name == "sad":  # dark top, bright bottom
        image += np.linspace(-50, 50, side, dtype=np.float32)[:, None]
    elif name == "surprise":  # two discs side by side
        for dx in (-half // 2 - 2, half // 2 + 2):
            cv2.circle(image, (cx + dx, cy), max(3, half // 3), float(ink), -1)
    elif name == "neutral":  # plus
        cv2.line(image, (cx - half, cy), (cx + half, cy), float(ink), width)
        cv2.line(image, (cx, cy - half), (cx, cy + half), float(ink), width)
    elif name == "contempt":  # X
        d = int(half * 0.75)
        cv2.line(image, (cx - d, cy - d), (cx + d, cy + d), float(ink), width)
        cv2.line(image, (cx - d, cy + d), (cx + d, cy - d), float(ink), width)
    else:
        raise ValueError(f"no synthetic pattern for class {name!r}")
    image += rng.normal(0.0, NOISE_SIGMA, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def synthetic_rows(rng: np.random.Generator, scale: float = 1.0) -> list[tuple[str, str]]:
    """(class name, split) per row, in a shuffled order, Training first like FER2013."""
    rows = []
    for split in SPLITS:
        fraction = 1.0 if split == "Training" else TEST_FRACTION
        split_rows = [(name, split) for name, count in zip(SYNTHETIC_CLASSES, TRAIN_COUNTS)
                      for _ in range(max(2, round(count * fraction * scale)))]
        rng.shuffle(split_rows)
        rows.extend(split_rows)
    return rows


def ferplus_votes(name: str, rng: np.random.Generator) -> list[int]:
    """Ten FER+ votes for an image of class ``name``: most for it, a few scattered on others."""
    votes = [0] * len(FERPLUS_COLUMNS[2:])
    column = [FERPLUS_NAMES[c] for c in FERPLUS_EMOTIONS].index(name)
    votes[column] = int(rng.integers(6, 10))
    for _ in range(10 - votes[column]):
        votes[int(rng.integers(0, len(votes)))] += 1
    return votes


def unlabelled_votes(rng: np.random.Generator) -> list[int]:
    """Votes whose majority is unknown or NF: FER+ drops such rows."""
    votes = [0] * len(FERPLUS_COLUMNS[2:])
    votes[8 + int(rng.integers(0, 2))] = 7
    votes[int(rng.integers(0, 8))] = 3
    return votes


def write_synthetic(out: str | Path, seed: int = 0, scale: float = 1.0) -> tuple[Path, Path]:
    """Write out/fer2013.csv and out/fer2013new.csv (row-aligned); return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fer_path, plus_path = out / "fer2013.csv", out / "fer2013new.csv"
    with fer_path.open("w", newline="") as fer, plus_path.open("w", newline="") as plus:
        fer_writer, plus_writer = csv.writer(fer), csv.writer(plus)
        fer_writer.writerow(FER2013_COLUMNS)
        plus_writer.writerow(FERPLUS_COLUMNS)
        for index, (name, split) in enumerate(synthetic_rows(rng, scale)):
            pixels = " ".join(map(str, draw_pattern(name, rng).ravel().tolist()))
            fer_writer.writerow([FER2013_CODE[name], pixels, split])
            draw = rng.random()
            votes = unlabelled_votes(rng) if draw < UNLABELLED_SHARE else ferplus_votes(name, rng)
            image_name = "" if draw < UNLABELLED_SHARE / 4 else f"fer{index:07d}.png"
            plus_writer.writerow([split, image_name, *votes])
    log.info("wrote %s and %s", fer_path, plus_path)
    return fer_path, plus_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.synthetic",
                                     description="Write synthetic fer2013.csv + fer2013new.csv for smoke tests.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the number of rows per class")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    if args.scale <= 0:
        print(f"error: --scale must be > 0, got {args.scale}", file=sys.stderr)
        return 2
    for path in write_synthetic(args.out, args.seed, args.scale):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
