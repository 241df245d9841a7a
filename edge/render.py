"""Render stage: draw boxes, labels, FPS and latency; show, and write video, images and events."""

from __future__ import annotations

import collections
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from edge import video
from edge.config import RenderConfig
from edge.results import UNCERTAIN, FrameResult

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
FONT = cv2.FONT_HERSHEY_SIMPLEX
BOX_COLOR = (0, 220, 0)  # BGR
TEXT_COLOR = (255, 255, 255)
PANEL_COLOR = (0, 0, 0)
QUIT_KEYS = {ord("q"), ord("Q"), 27}  # q, Q, Esc


class OutputError(ValueError):
    """An output path cannot be written."""


class FpsMeter:
    """Frames per second over a sliding window of recent frame times."""

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self.times: collections.deque[float] = collections.deque()

    def tick(self, now: float | None = None) -> float:
        now = time.perf_counter() if now is None else now
        self.times.append(now)
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        return self.fps

    @property
    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0


def text_scale(frame_height: int) -> float:
    """Font scale that stays readable from 240p to 4K."""
    return max(0.4, frame_height / 900)


def draw_faces(frame: np.ndarray, result: FrameResult, probabilities: bool) -> None:
    """Box, label and confidence for every face; optional probability bars beside it."""
    faces = result.faces
    scale = text_scale(frame.shape[0])
    thickness = max(1, int(round(scale * 2)))
    labels, scores = faces.label, faces.score
    bars = faces.probs if faces.smoothed is None else faces.smoothed
    for i, (x1, y1, x2, y2) in enumerate(faces.xyxy):
        cv2.rectangle(frame, (int(x1), int(y1)), (int(x2), int(y2)), BOX_COLOR, thickness)
        track = f"#{faces.track_id[i]} " if faces.track_id[i] >= 0 else ""
        text = f"{track}{labels[i]}" + ("" if labels[i] == UNCERTAIN else f" {scores[i]:.0%}")
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
        top = max(int(y1) - th - base - 4, 0)
        cv2.rectangle(frame, (int(x1), top), (int(x1) + tw + 4, top + th + base + 4), BOX_COLOR, -1)
        cv2.putText(frame, text, (int(x1) + 2, top + th + 2), FONT, scale, PANEL_COLOR, thickness, cv2.LINE_AA)
        if probabilities:
            draw_probability_bars(frame, faces.labels, bars[i], (int(x2) + 4, int(y1)), scale)


def draw_probability_bars(frame: np.ndarray, labels: tuple[str, ...], probs: np.ndarray,
                          origin: tuple[int, int], scale: float) -> None:
    x, y = origin
    row = int(16 * scale * 1.6)
    width = int(80 * scale * 1.6)
    for j, (name, p) in enumerate(zip(labels, probs)):
        top = y + j * row
        cv2.rectangle(frame, (x, top), (x + int(width * float(p)), top + row - 3), BOX_COLOR, -1)
        cv2.putText(frame, f"{name} {p:.2f}", (x + 2, top + row - 5), FONT, scale * 0.6, TEXT_COLOR, 1,
                    cv2.LINE_AA)


def draw_status(frame: np.ndarray, lines: list[str]) -> None:
    """Status text (FPS, latencies, drops) top-left on a dark panel."""
    scale = text_scale(frame.shape[0]) * 0.8
    thickness = max(1, int(round(scale * 1.5)))
    line_h = int(22 * scale * 1.4)
    width = max(cv2.getTextSize(line, FONT, scale, thickness)[0][0] for line in lines) + 10
    cv2.rectangle(frame, (0, 0), (width, line_h * len(lines) + 6), PANEL_COLOR, -1)
    for i, line in enumerate(lines):
        cv2.putText(frame, line, (5, line_h * (i + 1)), FONT, scale, TEXT_COLOR, thickness, cv2.LINE_AA)


def status_lines(fps: float, latencies: dict[str, float], dropped: int, show_latency: bool) -> list[str]:
    lines = [f"FPS {fps:5.1f}"]
    if show_latency and latencies:
        parts = [f"{k} {latencies[k]:.1f}" for k in ("detect", "classify", "total") if k in latencies]
        lines.append("ms " + " ".join(parts))
    if dropped:
        lines.append(f"dropped {dropped}")
    return lines


class Renderer:
    """Draws a result onto its frame: faces, FPS over a sliding window, per-stage latency."""

    def __init__(self, config: RenderConfig) -> None:
        self.config = config
        self.fps = FpsMeter(config.fps_window_s)
        self._previous: FrameResult | None = None

    def render(self, frame: np.ndarray, result: FrameResult, dropped: int = 0) -> None:
        fps = self.fps.tick()
        draw_faces(frame, result, self.config.probabilities)
        draw_status(frame, status_lines(fps, self.latencies(result), dropped, self.config.latency))

    def latencies(self, result: FrameResult) -> dict[str, float]:
        """This frame's stage latencies; "total" is the previous frame's, as a frame's own ends after drawing."""
        latencies = result.latencies_ms()
        previous, self._previous = self._previous, result
        if previous is not None and "total" in (done := previous.latencies_ms()):
            latencies["total"] = done["total"]
        return latencies


def display_available() -> bool:
    """Whether a window can be opened: Linux needs an X11 or Wayland display."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class Window:
    """An OpenCV window; ``show`` returns False when the user pressed q or Esc, or closed it."""

    def __init__(self, title: str) -> None:
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, frame: np.ndarray) -> bool:
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS:
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyWindow(self.title)
        cv2.waitKey(1)


def check_writable(path: Path) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")


class VideoSink:
    """Writes annotated frames to a video at the source's size and frame rate (see edge.video for the codecs).

    ``write`` and ``close`` raise OSError when the file cannot be written or finished (a full disk
    included); after a failed ``write``, ``close`` only releases the file and does not raise again.
    """

    def __init__(self, path: Path, fps: float, render: RenderConfig) -> None:
        check_writable(path)
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise OutputError(f"output video must end in one of {sorted(VIDEO_SUFFIXES)}: {path}")
        if render.codec.lower() != video.H264 and len(render.codec) != 4:
            raise OutputError(f"render.codec must be {video.H264!r} or a 4-character FourCC, got {render.codec!r}")
        self.path = path
        self.fps = fps
        self.render = render
        self.writer: video.VideoWriter | None = None
        self.frames = 0

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if self.writer is None:
            self.writer = self._open((frame.shape[1], frame.shape[0]))
        size = self.writer.size
        if (frame.shape[1], frame.shape[0]) != size:  # an image folder's frames vary in size
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        self.writer.write(frame, result.timestamp)
        self.frames += 1

    def _open(self, size: tuple[int, int]) -> video.VideoWriter:
        try:
            return video.open_writer(self.path, self.fps, size, self.render.codec, self.render.preset,
                                     self.render.encoder_threads)
        except OSError as exc:  # at the first frame: the codec or the path is at fault, not the run
            raise OutputError(str(exc)) from None

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()


class ImageSink:
    """Writes annotated images: one file for one image, or a folder for many."""

    def __init__(self, path: Path, single: bool) -> None:
        self.path = path
        self.single = single
        if single and path.suffix.lower() in IMAGE_SUFFIXES:
            check_writable(path)
        else:
            self.single = False
            path.mkdir(parents=True, exist_ok=True)
        self.frames = 0

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        target = self.path if self.single else self.path / (result.name or f"frame_{result.index:06d}.jpg")
        if not cv2.imwrite(str(target), frame):
            raise OutputError(f"cannot write image {target}")
        self.frames += 1

    def close(self) -> None:
        pass


class EventSink:
    """Per-frame face records: JSON Lines (one object per frame), or CSV (one row per face).

    CSV columns: frame, t, image, face, track_id, box, shown label and score, raw probabilities,
    raw_label, smoothed probabilities (``smoothed_<label>``, empty when not smoothed).
    """

    def __init__(self, path: Path, labels: tuple[str, ...]) -> None:
        check_writable(path)
        self.path = path
        self.labels = labels
        self.csv = path.suffix.lower() == ".csv"
        self.file: IO[str] = open(path, "w", newline="" if self.csv else None)
        self.writer = None
        if self.csv:
            self.writer = csv.writer(self.file)
            self.writer.writerow(["frame", "t", "image", "face", "track_id", "x1", "y1", "x2", "y2",
                                  "label", "score", *labels, "raw_label", *(f"smoothed_{name}" for name in labels)])

    def write(self, event: dict) -> None:
        """One frame's event, as ``FrameResult.record()`` gives it."""
        if self.writer is None:
            self.file.write(json.dumps(event) + "\n")
            return
        frame = [event["frame"], f"{event['t']:.4f}", event.get("image", "")]
        if not event["faces"]:  # the frame still appears, with no face
            self.writer.writerow(frame + [""] * (9 + 2 * len(self.labels)))
        for i, face in enumerate(event["faces"]):
            smoothed = face.get("smoothed", {})
            self.writer.writerow([*frame, i, face["track_id"], *face["box"], face["label"], face["score"],
                                  *(face["probs"][name] for name in self.labels),
                                  face.get("raw_label", face["label"]),
                                  *(smoothed.get(name, "") for name in self.labels)])

    def close(self) -> None:
        self.file.flush()
        self.file.close()


def make_frame_sink(path: Path, source_still: bool, single_image: bool, fps: float,
                    render: RenderConfig) -> VideoSink | ImageSink:
    """A video file for video outputs; images for image sources with an image or folder path."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSink(path, fps, render)
    if source_still:
        return ImageSink(path, single=single_image)
    raise OutputError(f"output video must end in one of {sorted(VIDEO_SUFFIXES)}: {path}")
