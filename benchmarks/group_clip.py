"""A several-face benchmark clip: a slow pan and zoom over the group photo of tests/data.

    python benchmarks/group_clip.py --out group.mp4                # 240 frames, 640x360, 30 fps
    python benchmarks/fps.py --source group.mp4 --loop 3           # then measure it like any clip

The five faces of tests/data/multi_face.jpg drift across the frame and change size (about 65 to 130 px),
and the ones at the edges leave and come back: tracking, discovery and per-face classification all work.
The camera path is a fixed function of the frame number, so every run measures the same clip.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
PHOTO = REPO_ROOT / "tests" / "data" / "multi_face.jpg"
SIZE = (640, 360)
FPS = 30.0
ZOOM = (0.66, 1.0)  # photo pixels -> clip pixels, from wide (all five faces) to close


def camera(t: float, photo_size: tuple[int, int]) -> np.ndarray:
    """The 2x3 affine map from photo to clip at time t in [0, 1]: zoom in and out once, pan twice."""
    width, height = photo_size
    zoom = ZOOM[0] + (ZOOM[1] - ZOOM[0]) * (0.5 - 0.5 * np.cos(2 * np.pi * t))
    half_w, half_h = SIZE[0] / zoom / 2, SIZE[1] / zoom / 2  # the view, in photo pixels, stays inside the photo
    cx = np.clip(width / 2 + 0.2 * width * np.sin(4 * np.pi * t), half_w, max(half_w, width - half_w))
    cy = np.clip(height / 2 + 0.1 * height * np.cos(2 * np.pi * t), half_h, max(half_h, height - half_h))
    return np.float32([[zoom, 0, SIZE[0] / 2 - zoom * cx], [0, zoom, SIZE[1] / 2 - zoom * cy]])


def write_group_clip(out: Path, frames: int = 240, photo: Path = PHOTO) -> Path:
    image = cv2.imread(str(photo))
    if image is None:
        raise FileNotFoundError(f"cannot read {photo}")
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    if not writer.isOpened():
        raise OSError(f"cannot write {out}")
    for i in range(frames):
        writer.write(group_frame(image, i, frames))
    writer.release()
    return out


def frame_camera(image: np.ndarray, i: int, frames: int) -> np.ndarray:
    """The camera of frame i of a clip of ``frames`` frames."""
    return camera(i / max(frames - 1, 1), (image.shape[1], image.shape[0]))


def group_frame(image: np.ndarray, i: int, frames: int) -> np.ndarray:
    """Frame i of a clip of ``frames`` frames over the photo."""
    return cv2.warpAffine(image, frame_camera(image, i, frames), SIZE, flags=cv2.INTER_AREA)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/group_clip.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="video to write (.mp4)")
    parser.add_argument("--frames", type=int, default=240, help="clip length in frames (30 fps)")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    try:
        write_group_clip(args.out, args.frames)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {args.frames} frames, {SIZE[0]}x{SIZE[1]}, {FPS:.0f} fps", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
