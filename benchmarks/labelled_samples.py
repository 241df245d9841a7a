"""The sample media's faces labelled by eye, as a path,label[,box] list for `python -m edge.evaluate`.

    python benchmarks/labelled_samples.py --out /tmp/labelled    # then: python -m edge.evaluate /tmp/labelled/labels.csv

Only unambiguous expressions are labelled (looked at by one person, not a panel): the smiling
portrait, the four broadly smiling faces of the group photo (the fifth, a faint closed-mouth smile,
is left out) and the clip's frames 0-15 (neutral) and 24-66 (a grin); frames 16-23 and 67-71
change between the two and are left out. That is 6 people and 2 classes: it checks that a model
and the evaluation work, not how well a model reads emotions.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import cv2

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "tests" / "data"
# (file, label, box or None = the detector finds it); boxes are the group photo's Haar faces
PHOTOS = [
    ("single_face.jpg", "happy", None),
    ("multi_face.jpg", "happy", (671, 288, 801, 418)),
    ("multi_face.jpg", "happy", (303, 232, 427, 356)),
    ("multi_face.jpg", "happy", (516, 306, 637, 427)),
    ("multi_face.jpg", "happy", (209, 68, 319, 178)),
]
CLIP = "single_face.mp4"
CLIP_FRAMES = {"neutral": range(0, 16), "happy": range(24, 67)}


def write_labelled(out: Path) -> Path:
    """Writes out/frames/*.png (the labelled clip frames) and out/labels.csv; returns the CSV."""
    frames_dir = out / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    rows = [[str(DATA / name), label, " ".join(map(str, box)) if box else ""] for name, label, box in PHOTOS]
    wanted = {i: label for label, frames in CLIP_FRAMES.items() for i in frames}
    capture = cv2.VideoCapture(str(DATA / CLIP))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            path = frames_dir / f"clip_{index:02d}.png"
            cv2.imwrite(str(path), frame)
            rows.append([str(path.relative_to(out)), wanted[index], ""])
        index += 1
    capture.release()
    labels = out / "labels.csv"
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "box"])
        writer.writerows(rows)
    return labels


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for labels.csv and the clip frames")
    args = parser.parse_args(argv)
    print(write_labelled(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
