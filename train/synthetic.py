"""Synthetic FER2013 / FER+ CSV files with learnable class patterns, for smoke tests without the real data."""

# `python -m train.synthetic --out DIR` writes DIR/fer2013.csv and DIR/fer2013new.csv in the real formats.
# Each class is a different shape (bar, blob, ring, gradient, cross...) on a noisy background, drawn
# left-right symmetric so that flip augmentation keeps the class. Nothing here looks like a face.
# ``--style hard`` makes the choices of a training recipe matter: stronger noise, shapes placed and
# sized more freely and slightly rotated, half of them an occluding patch (flat or textured) that may
# cover part of the shape, and blur; the classes stay learnable (a small CNN trained well gets most
# of them right) but not trivially. ``--unlabelled N`` also writes N unlabelled face-sized crops of
# the same kind to DIR/unlabelled/, for distillation.

from __future__ import annotations

import argparse
import csv
import logging
import sys
from dataclasses import dataclass
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
UNLABELLED_SHARE = 0.04  # FER+ rows whose majority is unknown or NF, or without an image name
UNLABELLED_FOLDER = "unlabelled"


@dataclass(frozen=True)
class Style:
    """How hard the synthetic images are."""

    noise: float  # Gaussian noise, grey levels
    jitter: float  # shape centre offset, pixels either way
    size: tuple[float, float]  # shape half-size range, fraction of the side
    rotation: float = 0.0  # degrees either way
    occluders: int = 0  # up to this many patches cover part of the image
    occluder_size: tuple[float, float] = (0.2, 0.4)  # patch side range, fraction of the image side
    blur: float = 0.0  # largest Gaussian blur sigma, pixels


STYLES = {
    "easy": Style(noise=12.0, jitter=3.0, size=(0.3, 0.4)),
    "hard": Style(noise=30.0, jitter=6.0, size=(0.22, 0.42), rotation=10.0, occluders=1, blur=1.0),
}


def draw_pattern(name: str, rng: np.random.Generator, side: int = FER2013_SIDE,
                 style: Style = STYLES["easy"]) -> np.ndarray:
    """One (side, side) uint8 image of the class's shape, jittered in place, size and contrast."""
    background = rng.uniform(70, 130)
    ink = background + rng.choice([-1, 1]) * rng.uniform(60, 100)
    image = np.full((side, side), background, dtype=np.float32)
    c = side / 2 + rng.uniform(-style.jitter, style.jitter, size=2)
    cx, cy = int(c[0]), int(c[1])
    half = int(side * rng.uniform(*style.size))
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
    if style.rotation:
        matrix = cv2.getRotationMatrix2D((float(cx), float(cy)), rng.uniform(-style.rotation, style.rotation), 1.0)
        image = cv2.warpAffine(image, matrix, (side, side), borderMode=cv2.BORDER_REPLICATE)
    for _ in range(int(rng.integers(0, style.occluders + 1)) if style.occluders else 0):
        occlude(image, rng, style)
    if style.blur:
        image = cv2.GaussianBlur(image, (0, 0), sigmaX=rng.uniform(0.3, style.blur))
    image += rng.normal(0.0, style.noise, size=image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def occlude(image: np.ndarray, rng: np.random.Generator, style: Style) -> None:
    """A patch of flat grey or of coarse texture (a hand, hair, a shadow) somewhere on the image."""
    side = image.shape[0]
    h, w = (int(side * rng.uniform(*style.occluder_size)) for _ in range(2))
    y, x = int(rng.integers(0, side - h)), int(rng.integers(0, side - w))
    if rng.random() < 0.5:
        image[y:y + h, x:x + w] = rng.uniform(40, 200)
    else:
        coarse = rng.uniform(40, 200, size=(max(1, h // 6), max(1, w // 6))).astype(np.float32)
        image[y:y + h, x:x + w] = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)


def synthetic_rows(rng: np.random.Generator, scale: float = 1.0,
                   test_fraction: float = TEST_FRACTION) -> list[tuple[str, str]]:
    """(class name, split) per row, in a shuffled order, Training first like FER2013."""
    rows = []
    for split in SPLITS:
        fraction = 1.0 if split == "Training" else test_fraction
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


def write_synthetic(out: str | Path, seed: int = 0, scale: float = 1.0, style: str = "easy",
                    test_fraction: float = TEST_FRACTION) -> tuple[Path, Path]:
    """Write out/fer2013.csv and out/fer2013new.csv (row-aligned); return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    look = style_of(style)
    fer_path, plus_path = out / "fer2013.csv", out / "fer2013new.csv"
    with fer_path.open("w", newline="") as fer, plus_path.open("w", newline="") as plus:
        fer_writer, plus_writer = csv.writer(fer), csv.writer(plus)
        fer_writer.writerow(FER2013_COLUMNS)
        plus_writer.writerow(FERPLUS_COLUMNS)
        for index, (name, split) in enumerate(synthetic_rows(rng, scale, test_fraction)):
            pixels = " ".join(map(str, draw_pattern(name, rng, style=look).ravel().tolist()))
            fer_writer.writerow([FER2013_CODE[name], pixels, split])
            draw = rng.random()
            votes = unlabelled_votes(rng) if draw < UNLABELLED_SHARE else ferplus_votes(name, rng)
            image_name = "" if draw < UNLABELLED_SHARE / 4 else f"fer{index:07d}.png"
            plus_writer.writerow([split, image_name, *votes])
    log.info("wrote %s and %s", fer_path, plus_path)
    return fer_path, plus_path


def style_of(name: str) -> Style:
    if name not in STYLES:
        raise ValueError(f"synthetic style must be one of {list(STYLES)}, got {name!r}")
    return STYLES[name]


def write_unlabelled(out: str | Path, count: int, seed: int = 1, style: str = "easy") -> Path:
    """out/unlabelled/NNNNNN.png: ``count`` 48x48 crops, classes drawn in the Training split's proportions."""
    folder = Path(out) / UNLABELLED_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    look = style_of(style)
    share = np.array(TRAIN_COUNTS, dtype=np.float64) / sum(TRAIN_COUNTS)
    for index, name in enumerate(rng.choice(SYNTHETIC_CLASSES, size=count, p=share)):
        cv2.imwrite(str(folder / f"{index:06d}.png"), draw_pattern(str(name), rng, style=look))
    log.info("wrote %d unlabelled crops to %s", count, folder)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.synthetic",
                                     description="Write synthetic fer2013.csv + fer2013new.csv for smoke tests.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the number of rows per class")
    parser.add_argument("--test-fraction", type=float, default=TEST_FRACTION,
                        help=f"rows of each test split per Training row (default {TEST_FRACTION})")
    parser.add_argument("--style", choices=tuple(STYLES), default="easy",
                        help="easy: clean shapes (default); hard: noise, jitter, rotation, occluders, blur")
    parser.add_argument("--unlabelled", type=int, default=0, metavar="N",
                        help="also write N unlabelled crops to OUT/unlabelled/ (default 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(levelname)s %(name)s: %(message)s")
    if args.scale <= 0 or args.unlabelled < 0 or args.test_fraction <= 0:
        print(f"error: --scale and --test-fraction must be > 0 and --unlabelled >= 0, got {args.scale}, "
              f"{args.test_fraction} and {args.unlabelled}", file=sys.stderr)
        return 2
    for path in write_synthetic(args.out, args.seed, args.scale, args.style, args.test_fraction):
        print(path)
    if args.unlabelled:
        print(write_unlabelled(args.out, args.unlabelled, args.seed + 1, args.style))
    return 0


if __name__ == "__main__":
    sys.exit(main())
