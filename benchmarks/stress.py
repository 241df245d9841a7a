"""Stress clips: the sample media made as hard as real footage (tilts, a hand over the face, close-ups at the frame's
edges, small faces, dim and low-contrast light, motion blur, faces entering at the edges, several faces).

    python benchmarks/stress.py --out stress/                          # from tests/data
    python benchmarks/stress.py --out stress/ --source my_clip.mp4     # ... and from your own clips too
    python benchmarks/fps.py --stress stress/                          # recall and speed on every clip

Every variant is a fixed function of the frame number (the same clips on every run). A source clip
is played forwards and backwards to the requested length, so nothing jumps; its largest face in
each frame (a full-resolution Haar scan) anchors the transforms. The clips are written as mp4v
video with a manifest (``stress.json``); they are not committed: this command makes them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/stress.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.group_clip import PHOTO, frame_camera, group_frame  # noqa: E402
from benchmarks.media import full_scan_detector  # noqa: E402
from edge.config import DetectorConfig  # noqa: E402
from edge.video import read_frames  # noqa: E402

DATA = REPO_ROOT / "tests" / "data"
DEFAULT_SOURCES = (DATA / "single_face.mp4",)
BACKGROUND = DATA / "no_face.mp4"  # sky and title lettering: behind pasted people, and a source of false boxes
FPS = 30.0
CODEC = "mp4v"
MANIFEST = "stress.json"
DEFAULT_FRAMES = 240  # 8 s at 30 fps
SMALL_SIZE = (1280, 720)  # small faces in a wide frame: 5-10% of its height is 36-72 px
MAX_TILT_DEG = 25.0
TILT_PERIOD_FRAMES = 150  # one full left-right-left swing
CLOSEUP_FACE = (0.60, 0.85)  # face height, fraction of the frame height
SMALL_FACE = (0.05, 0.10)
EDGE_FACE = 0.35  # face height while entering at the edges, fraction of the frame height
ANCHOR_SHARE = 0.5  # a source clip needs its face in at least this share of its frames
HAND_LENGTH = 1.05  # wrist to fingertip, x the face size: a real hand is about as long as a face
SHAKE_PX = 24.0  # camera shake amplitude of the blur clip
EXPOSURE_FRAMES = 0.8  # the blur streak is the shake's motion over this fraction of a frame

Frame = tuple[np.ndarray, np.ndarray]  # a BGR frame, and where its faces truly are: (n, 4) float xyxy
Render = Callable[["Scene", int, int], Frame]  # scene, frame number, clip length -> the frame


@dataclass(frozen=True)
class Scene:
    """A source clip's frames, where its face is in each, and a background clip for pasted people."""

    name: str
    frames: list[np.ndarray]
    faces: np.ndarray  # (n, 4) float64 xyxy: the largest face of each frame, gaps filled, smoothed
    background: list[np.ndarray]

    def frame(self, i: int) -> np.ndarray:
        return self.frames[bounce(i, len(self.frames))]

    def face(self, i: int) -> np.ndarray:
        return self.faces[bounce(i, len(self.frames))]

    def backdrop(self, i: int, size: tuple[int, int]) -> np.ndarray:
        frame = self.background[bounce(i, len(self.background))]
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if size[0] < frame.shape[1] else cv2.INTER_LINEAR)


@dataclass(frozen=True)
class Clip:
    """One written stress clip, as listed in the manifest."""

    name: str
    path: str
    variant: str
    source: str
    frames: int
    width: int
    height: int
    what: str


def bounce(i: int, n: int) -> int:
    """Frame i of a clip of n frames played forwards, backwards, forwards, ... (no jump at the turns)."""
    if n < 2:
        return 0
    period = 2 * (n - 1)
    k = i % period
    return k if k < n else period - k


def ease(u: float) -> float:
    """0 -> 1 with zero speed at both ends (a cosine step)."""
    return 0.5 - 0.5 * math.cos(math.pi * min(max(u, 0.0), 1.0))


def keyframed(keys: Sequence[Sequence[float]], u: float) -> np.ndarray:
    """Values eased between evenly spaced keyframes over u in [0, 1] (the last key returns to the first)."""
    keys = np.asarray(keys, np.float64)
    position = (u % 1.0) * len(keys)
    i = int(position)
    a, b = keys[i % len(keys)], keys[(i + 1) % len(keys)]
    return a + (b - a) * ease(position - i)


def anchor_faces(frames: list[np.ndarray], name: str) -> np.ndarray:
    """The largest face of every frame by a full-resolution Haar scan; frames without one take the nearest
    frame's, and the track is smoothed over 5 frames (the transforms follow the face, not the detector's jitter).
    The variants assume one face: a source's other faces are not followed."""
    detector = full_scan_detector(DetectorConfig(), 1.1, 4)
    found: list[np.ndarray | None] = []
    for frame in frames:
        boxes = detector.detect(frame, still=True).xyxy
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        found.append(boxes[int(np.argmax(areas))].astype(np.float64) if len(boxes) else None)
    known = [i for i, box in enumerate(found) if box is not None]
    if len(known) < ANCHOR_SHARE * len(frames):  # a few boxes are the scan's false positives, not a face
        raise ValueError(f"no face found in {name} (in {len(known)} of {len(frames)} frames): "
                         "stress variants need a clip with a face in most frames")
    filled = np.array([found[min(known, key=lambda k: abs(k - i))] for i in range(len(frames))])
    kernel = np.ones(5) / 5
    padded = np.pad(filled, ((2, 2), (0, 0)), mode="edge")
    return np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(4)], axis=1)


def load_scene(path: Path, background: Path = BACKGROUND) -> Scene:
    frames = list(read_frames(path))
    return Scene(path.stem, frames, anchor_faces(frames, str(path)), list(read_frames(background)))


def moved_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Boxes through a scale-and-shift affine map (no rotation)."""
    corners = np.concatenate([boxes[:, :2], boxes[:, 2:]])
    moved = corners @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]
    return np.concatenate([moved[:len(boxes)], moved[len(boxes):]], axis=1)


def centre_and_size(face: np.ndarray) -> tuple[float, float, float]:
    x1, y1, x2, y2 = face
    return (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1)


# --- the variants --------------------------------------------------------------------------------------------


def tilted(scene: Scene, i: int, n: int) -> Frame:
    """The head rolls left and right, slowly, up to MAX_TILT_DEG (about the face's centre)."""
    frame, face = scene.frame(i), scene.face(i)
    cx, cy, _ = centre_and_size(face)
    angle = MAX_TILT_DEG * math.sin(2 * math.pi * i / TILT_PERIOD_FRAMES)
    matrix = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
    return cv2.warpAffine(frame, matrix, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101), face[None]


# Where the hand is, relative to the face box (0..1 across, 0..1 down; its centre), and its angle
# (0 = fingers up, negative = leaning right): resting the chin, a cheek, wiping an eye, over the mouth.
HAND_PATH = ((0.55, 0.90, 0.0), (0.16, 0.70, 35.0), (0.30, 0.48, 20.0), (0.58, 0.80, -15.0), (0.84, 0.64, -35.0))
HAND_PERIOD_FRAMES = 200


def occluded(scene: Scene, i: int, n: int) -> Frame:
    """A skin-toned, shaded hand moves over about a third of the face (chin, cheek, eye, mouth)."""
    frame = scene.frame(i).copy()
    colour, alpha, centre = hand_at(scene, i)
    paste(frame, colour, alpha, *centre)
    return frame, scene.face(i)[None]


def hand_at(scene: Scene, i: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """The hand of frame i: its sprite, alpha and centre in the frame."""
    x1, y1, x2, y2 = scene.face(i)
    rx, ry, angle = keyframed(HAND_PATH, i / HAND_PERIOD_FRAMES)
    colour, alpha = hand_sprite(int(round(HAND_LENGTH * max(x2 - x1, y2 - y1))), angle)
    return colour, alpha, (x1 + rx * (x2 - x1), y1 + ry * (y2 - y1))


def hand_sprite(length: int, angle_deg: float, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A hand seen from the front, fingers up, ``length`` px from wrist to fingertips, turned by ``angle_deg``.

    Palm and fingers are filled ellipses; the colour is a skin tone, lighter where the hand is
    thick and darker at its rims, with skin-scale texture and soft edges, so the cascade meets
    something like a real hand rather than a flat box.
    """
    side = 2 * length
    mask = np.zeros((side, side), np.uint8)
    c = side / 2
    palm = (int(c), int(c + 0.18 * length))
    cv2.ellipse(mask, palm, (int(0.24 * length), int(0.26 * length)), 0, 0, 360, 255, -1)
    cv2.ellipse(mask, (int(c), int(c + 0.42 * length)), (int(0.16 * length), int(0.14 * length)), 0, 0, 360, 255, -1)
    for offset, spread, finger in ((-0.165, -9, 0.34), (-0.055, -3, 0.38), (0.055, 3, 0.36), (0.16, 9, 0.29)):
        base = (c + offset * length, c - 0.02 * length)
        tip = (base[0] + math.sin(math.radians(spread)) * finger * length,
               base[1] - math.cos(math.radians(spread)) * finger * length)
        centre = (int((base[0] + tip[0]) / 2), int((base[1] + tip[1]) / 2))
        cv2.ellipse(mask, centre, (int(0.052 * length), int(finger * length / 2)), spread, 0, 360, 255, -1)
    thumb = (int(c - 0.30 * length), int(c + 0.12 * length))
    cv2.ellipse(mask, thumb, (int(0.06 * length), int(0.2 * length)), -40, 0, 360, 255, -1)
    rng = np.random.default_rng(seed)
    depth = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    depth = np.clip(depth / max(depth.max(), 1.0) * 2.5, 0.0, 1.0)  # 0 at the rim, 1 inside
    fine = cv2.GaussianBlur(rng.normal(0, 1, mask.shape), (0, 0), max(0.8, length / 150))
    coarse = cv2.GaussianBlur(rng.normal(0, 1, mask.shape), (0, 0), max(2.0, length / 20))
    shade = 0.70 + 0.30 * depth + 0.06 * coarse / max(coarse.std(), 1e-6) + 0.012 * fine / max(fine.std(), 1e-6)
    skin = np.array([118.0, 150.0, 200.0])  # BGR of a medium skin tone
    colour = np.clip(shade[..., None] * skin, 0, 255).astype(np.uint8)
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255, (0, 0), max(1.0, length / 90))
    matrix = cv2.getRotationMatrix2D((c, c), angle_deg, 1.0)
    colour = cv2.warpAffine(colour, matrix, (side, side), flags=cv2.INTER_LINEAR)
    alpha = cv2.warpAffine(alpha, matrix, (side, side), flags=cv2.INTER_LINEAR)
    return colour, alpha


def paste(canvas: np.ndarray, colour: np.ndarray, alpha: np.ndarray, cx: float, cy: float) -> None:
    """Alpha-blend a sprite onto the canvas in place, centred at (cx, cy); parts off the canvas are cut."""
    h, w = alpha.shape
    x0, y0 = int(round(cx - w / 2)), int(round(cy - h / 2))
    ax1, ay1 = max(0, -x0), max(0, -y0)
    ax2, ay2 = min(w, canvas.shape[1] - x0), min(h, canvas.shape[0] - y0)
    if ax1 >= ax2 or ay1 >= ay2:
        return
    region = canvas[y0 + ay1:y0 + ay2, x0 + ax1:x0 + ax2].astype(np.float32)
    a = alpha[ay1:ay2, ax1:ax2, None]
    blended = region * (1 - a) + colour[ay1:ay2, ax1:ax2].astype(np.float32) * a
    canvas[y0 + ay1:y0 + ay2, x0 + ax1:x0 + ax2] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)


# Close-up keyframes: face height (fraction of the frame's), face centre x (fraction of the width), face
# bottom (fraction of the height; above 1 = below the frame's bottom edge). Mostly low, as a user leaning in.
CLOSEUP_PATH = ((0.60, 0.50, 0.97), (0.72, 0.45, 1.04), (0.85, 0.52, 1.10), (0.78, 0.20, 1.01),
                (0.66, 0.48, 1.06), (0.80, 0.83, 1.00), (0.70, 0.55, 0.90))


def close_up(scene: Scene, i: int, n: int) -> Frame:
    """The face fills 60-85% of the frame's height and touches or crosses its edges, the bottom one above all."""
    frame, face = scene.frame(i), scene.face(i)
    height, width = frame.shape[:2]
    fraction, x, bottom = keyframed(CLOSEUP_PATH, i / n)
    cx, cy, size = centre_and_size(face)
    scale = fraction * height / size
    tx, ty = x * width, bottom * height - fraction * height / 2
    matrix = np.float32([[scale, 0, tx - scale * cx], [0, scale, ty - scale * cy]])
    moved = cv2.warpAffine(frame, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return moved, moved_boxes(face[None], matrix)


def person_sprite(frame: np.ndarray, face: np.ndarray, face_px: float, mirror: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Head and shoulders cut from a frame with a soft oval edge, scaled so the face is ``face_px`` tall.

    Returns the sprite, its alpha and the face centre's offset from the sprite's centre.
    """
    cx, cy, size = centre_and_size(face)
    x1, x2 = int(max(0, cx - 0.85 * size)), int(min(frame.shape[1], cx + 0.85 * size))
    y1, y2 = int(max(0, cy - 0.85 * size)), int(min(frame.shape[0], cy + 1.1 * size))
    scale = face_px / size
    region = frame[y1:y2, x1:x2]
    sprite = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    h, w = sprite.shape[:2]
    alpha = np.zeros((h, w), np.float32)
    cv2.ellipse(alpha, (w // 2, h // 2), (int(w * 0.46), int(h * 0.48)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, w / 25))
    offset = ((cx - x1) * scale - w / 2, (cy - y1) * scale - h / 2)
    if mirror:
        sprite, alpha, offset = sprite[:, ::-1], alpha[:, ::-1], (-offset[0], offset[1])
    return np.ascontiguousarray(sprite), np.ascontiguousarray(alpha), offset


def place_person(canvas: np.ndarray, scene: Scene, i: int, face_px: float, centre: tuple[float, float],
                 mirror: bool = False) -> np.ndarray:
    """Paste source frame i's person with the face ``face_px`` tall, centred at ``centre``; the face's box."""
    sprite, alpha, (ox, oy) = person_sprite(scene.frame(i), scene.face(i), face_px, mirror)
    paste(canvas, sprite, alpha, centre[0] - ox, centre[1] - oy)
    x1, y1, x2, y2 = scene.face(i)
    half_w, half_h = (x2 - x1) / 2 * face_px / max(x2 - x1, y2 - y1), (y2 - y1) / 2 * face_px / max(x2 - x1, y2 - y1)
    return np.array([centre[0] - half_w, centre[1] - half_h, centre[0] + half_w, centre[1] + half_h])


def small_faces(scene: Scene, i: int, n: int) -> Frame:
    """Two people far away in a wide frame: faces 5-10% of its height, drifting slowly."""
    width, height = SMALL_SIZE
    canvas = scene.backdrop(i, SMALL_SIZE)
    low, high = SMALL_FACE
    u = i / n
    size_a = (low + (high - low) * ease(0.5 - 0.5 * math.cos(2 * math.pi * u))) * height
    size_b = (low + (high - low) * (0.5 + 0.5 * math.sin(2 * math.pi * u))) * height
    a = place_person(canvas, scene, i, size_a, (width * (0.25 + 0.08 * math.sin(2 * math.pi * u)), height * 0.45))
    b = place_person(canvas, scene, i + 37, size_b, (width * (0.70 - 0.10 * math.sin(2 * math.pi * u)),
                                                     height * (0.60 + 0.1 * math.cos(2 * math.pi * u))), mirror=True)
    return canvas, np.stack([a, b])


# Entering at the edges: each pass comes in from one side, pauses, and leaves by another
# (face centre as fractions of the width and height; beyond 0..1 = out of view).
EDGE_PASSES = (((-0.25, 0.45), (0.40, 0.45), (1.25, 0.50)),
               ((0.55, 1.45), (0.55, 0.55), (-0.25, 0.60)),
               ((1.25, 0.40), (0.65, 0.45), (0.50, 1.45)),
               ((0.40, -0.35), (0.45, 0.40), (1.25, 0.35)))


def entering(scene: Scene, i: int, n: int) -> Frame:
    """A person walks in from an edge (left, bottom, right, top), stops, and walks out by another."""
    height, width = scene.frames[0].shape[:2]
    canvas = scene.backdrop(i, (width, height))
    passes = len(EDGE_PASSES)
    k = min(passes - 1, i * passes // n)
    u = (i - k * n / passes) / (n / passes)
    start, middle, end = (np.array(p) for p in EDGE_PASSES[k])
    where = start + (middle - start) * ease(u / 0.35) if u < 0.35 else (
        middle if u < 0.6 else middle + (end - middle) * ease((u - 0.6) / 0.4))
    face = place_person(canvas, scene, i, EDGE_FACE * height, (where[0] * width, where[1] * height))
    return canvas, face[None]


def dim(scene: Scene, i: int, n: int) -> Frame:
    """Evening light: 18-40% of the exposure, with the sensor noise that comes with it."""
    frame = scene.frame(i).astype(np.float32)
    gain = 0.18 + 0.22 * (0.5 + 0.5 * math.cos(2 * math.pi * i / n))
    noise = np.random.default_rng(i).normal(0, 3.0, frame.shape).astype(np.float32)
    return np.clip(frame * gain + 4 + noise, 0, 255).astype(np.uint8), scene.face(i)[None]


def low_contrast(scene: Scene, i: int, n: int) -> Frame:
    """Backlight or haze: contrast cut to 25-45% around a bright grey, a little noise."""
    frame = scene.frame(i).astype(np.float32)
    contrast = 0.25 + 0.20 * (0.5 + 0.5 * math.cos(2 * math.pi * i / n))
    noise = np.random.default_rng(10_000 + i).normal(0, 2.0, frame.shape).astype(np.float32)
    return np.clip(160 + (frame - 128) * contrast + noise, 0, 255).astype(np.uint8), scene.face(i)[None]


def shake(i: int) -> np.ndarray:
    """The camera's offset at frame i (pixels): two slow sways that do not repeat together."""
    return np.array([SHAKE_PX * math.sin(2 * math.pi * i / 23), 0.5 * SHAKE_PX * math.sin(2 * math.pi * i / 37)])


def motion_kernel(motion: np.ndarray) -> np.ndarray:
    """A normalised line kernel along one frame's motion (pixels): a streak as the shutter saw it."""
    length = float(np.hypot(*motion))
    side = max(1, int(math.ceil(length)) | 1)
    kernel = np.zeros((side, side), np.float32)
    if length < 1:
        kernel[0, 0] = 1
        return kernel
    c = side // 2
    dx, dy = motion / length * (side - 1) / 2
    cv2.line(kernel, (int(round(c - dx)), int(round(c - dy))), (int(round(c + dx)), int(round(c + dy))), 1.0, 1,
             cv2.LINE_AA)
    return kernel / kernel.sum()


def blurred(scene: Scene, i: int, n: int) -> Frame:
    """A shaking hand-held camera: the frame sways and every frame is smeared along its motion (up to ~15 px)."""
    frame = scene.frame(i)
    offset = shake(i)
    motion = (shake(i + 1) - shake(i - 1)) / 2 * EXPOSURE_FRAMES * 2.5
    matrix = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    moved = cv2.warpAffine(frame, matrix, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REFLECT_101)
    return cv2.filter2D(moved, -1, motion_kernel(motion)), moved_boxes(scene.face(i)[None], matrix)


def plain(scene: Scene, i: int, n: int) -> Frame:
    """The clip as it is (played forwards and backwards): what the other variants are compared with."""
    return scene.frame(i), scene.face(i)[None]


VARIANTS: dict[str, tuple[Render, str]] = {
    "plain": (plain, "the clip as it is"),
    "tilt": (tilted, f"head rolls slowly up to +-{MAX_TILT_DEG:.0f} degrees"),
    "occluded": (occluded, "a skin-toned hand over about a third of the face, moving"),
    "closeup": (close_up, "face 60-85% of the frame height, crossing its edges (the bottom above all)"),
    "small": (small_faces, "two faces 5-10% of the height of a 1280x720 frame"),
    "dim": (dim, "18-40% exposure with sensor noise"),
    "low_contrast": (low_contrast, "contrast 25-45% around a bright grey"),
    "blur": (blurred, "camera shake with motion blur up to ~15 px"),
    "edges": (entering, "a face walking in and out at the left, bottom, right and top edges"),
}
GROUP = "group"  # the five-face pan and zoom of benchmarks/group_clip.py


def render_frames(scene: Scene, variant: str, first: int, count: int, frames: int = DEFAULT_FRAMES) -> list[Frame]:
    """Frames ``first`` .. ``first + count - 1`` of a variant of a clip ``frames`` long, in memory (for tests)."""
    render, _ = VARIANTS[variant]
    return [render(scene, i, frames) for i in range(first, first + count)]


def write_clip(path: Path, render: Callable[[int], Frame], count: int) -> tuple[int, int]:
    """Write ``count`` frames (a function of the frame number) as an mp4v video, and where their faces are
    as ``<clip>.truth.json``; the clip's (width, height)."""
    first, faces = render(0)
    height, width = first.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*CODEC), FPS, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write {path}")
    truth = [np.round(faces).astype(int).tolist()]
    writer.write(first)
    for i in range(1, count):
        frame, faces = render(i)
        writer.write(frame)
        truth.append(np.round(faces).astype(int).tolist())
    writer.release()
    truth_path(path).write_text(json.dumps({"boxes": truth}) + "\n")
    return width, height


def truth_path(clip: Path) -> Path:
    return clip.with_suffix(".truth.json")


def read_truth(clip: Path) -> list[np.ndarray]:
    """Where a stress clip's faces are, frame by frame: (n, 4) int xyxy boxes (parts may lie outside the frame)."""
    return [np.array(boxes, np.int32).reshape(-1, 4) for boxes in json.loads(truth_path(clip).read_text())["boxes"]]


def write_variant(scene: Scene, variant: str, out: Path, frames: int, source: str) -> Clip:
    render, what = VARIANTS[variant]
    name = f"{scene.name}_{variant}"
    path = out / f"{name}.mp4"
    width, height = write_clip(path, lambda i: render(scene, i, frames), frames)
    return Clip(name, path.name, variant, source, frames, width, height, what)


def write_group(out: Path, frames: int, photo: Path = PHOTO) -> Clip:
    """The five-face pan and zoom of benchmarks/group_clip.py, with its faces' boxes through the camera."""
    image = cv2.imread(str(photo))
    if image is None:
        raise OSError(f"cannot read {photo}")
    faces = full_scan_detector(DetectorConfig(), 1.1, 4).detect(image, still=True).xyxy.astype(np.float64)

    def render(i: int) -> Frame:
        return group_frame(image, i, frames), moved_boxes(faces, frame_camera(image, i, frames))

    path = out / f"{GROUP}.mp4"
    width, height = write_clip(path, render, frames)
    return Clip(GROUP, path.name, GROUP, "tests/data/multi_face.jpg", frames, width, height,
                "five faces panned and zoomed, leaving and coming back at the edges")


def write_stress_set(out: Path, sources: Sequence[Path] = DEFAULT_SOURCES, frames: int = DEFAULT_FRAMES,
                     variants: Sequence[str] | None = None, group: bool = True) -> list[Clip]:
    """Every variant of every source clip (and the group clip) into ``out``, with the manifest; the clips."""
    out.mkdir(parents=True, exist_ok=True)
    clips: list[Clip] = []
    for source in sources:
        scene = load_scene(source)
        shown = str(source.relative_to(REPO_ROOT)) if source.is_relative_to(REPO_ROOT) else str(source)
        for variant in variants or VARIANTS:
            clips.append(write_variant(scene, variant, out, frames, shown))
    if group:
        clips.append(write_group(out, frames))
    (out / MANIFEST).write_text(json.dumps({"fps": FPS, "clips": [asdict(c) for c in clips]}, indent=2) + "\n")
    return clips


def read_manifest(folder: Path) -> list[tuple[Clip, Path]]:
    """The clips a stress folder's manifest lists, with their paths."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(f"no stress set in {folder} (no {MANIFEST}): python benchmarks/stress.py --out {folder}")
    clips = [Clip(**entry) for entry in json.loads(manifest.read_text())["clips"]]
    return [(clip, folder / clip.path) for clip in clips]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/stress.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the clips and stress.json into")
    parser.add_argument("--source", type=Path, nargs="+", help="clips with a face to make variants of "
                        "(default: tests/data/single_face.mp4)")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help="frames per clip (30 fps)")
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), help="just these variants")
    parser.add_argument("--no-group", action="store_true", help="leave out the five-face group clip")
    args = parser.parse_args(argv)
    if args.frames < 2:
        parser.error("--frames must be at least 2")
    sources = args.source or list(DEFAULT_SOURCES)
    missing = [s for s in sources if not s.is_file()]
    if missing:
        print(f"error: source not found: {missing[0]}", file=sys.stderr)
        return 2
    try:
        clips = write_stress_set(args.out, [s.resolve() for s in sources], args.frames, args.only, not args.no_group)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for clip in clips:
        print(f"{args.out / clip.path}: {clip.width}x{clip.height}, {clip.frames} frames: {clip.what}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
