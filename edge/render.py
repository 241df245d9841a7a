"""Render stage: draw boxes, labels, FPS and latency; the window, video, image and event sinks."""

from __future__ import annotations

import collections
import contextlib
import csv
import errno
import io
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge import video
from edge.capture import IMAGE_SUFFIXES, Source
from edge.config import RenderConfig
from edge.outputs import Context, Option, Outputs
from edge.progress import expected_frames
from edge.results import UNCERTAIN, Faces, FrameResult

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v"}
FONT = cv2.FONT_HERSHEY_SIMPLEX
BOX_COLOR = (0, 220, 0)  # BGR
TEXT_COLOR = (255, 255, 255)
PANEL_COLOR = (0, 0, 0)
QUIT_KEYS = {ord("q"), ord("Q"), 27}  # q, Q, Esc
SYNC_INTERVAL_S = 1.0  # events reach the disk itself this often: a power cut loses at most the last second


class OutputError(ValueError):
    """An output path cannot be written (found before the run writes anything to it)."""


class WriteError(RuntimeError):
    """An output could not be written while running (a full disk, an I/O error); the message names the file."""


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


Rect = tuple[int, int, int, int]  # x1, y1, x2, y2 in pixels
TAG_PAD = 2  # pixels of tag around its text
TAG_SHIFTS = 3  # a tag may move this many tag heights further above or below its face to clear another


def tag_text(faces: Faces, i: int) -> str:
    """``#3 happy 62%``: track id (videos), shown label and its score (none for ``uncertain``)."""
    label = faces.shown_label[i]
    track = f"#{faces.track_id[i]} " if faces.track_id[i] >= 0 else ""
    return f"{track}{label}" + ("" if label == UNCERTAIN else f" {faces.score[i]:.0%}")


def overlap(a: Rect, b: Rect) -> int:
    """Area two rectangles share (0 when they only touch)."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def place_tags(boxes: np.ndarray, sizes: list[tuple[int, int]], frame_size: tuple[int, int]) -> list[Rect]:
    """Where each face's label tag goes: just above its box, else the nearest place beside it, inside the
    frame, that no tag placed before it covers (faces from the top of the frame down)."""
    width, height = frame_size
    placed: dict[int, Rect] = {}
    for i in sorted(range(len(boxes)), key=lambda i: (boxes[i][1], boxes[i][0])):
        x1, y1, x2, y2 = (int(v) for v in boxes[i])
        w, h = sizes[i]
        ys = [y1 - h, y1, y2 - h, y2]  # above, inside its top, inside its bottom, below
        ys += [y1 - h - k * h for k in range(1, TAG_SHIFTS + 1)] + [y2 + k * h for k in range(1, TAG_SHIFTS + 1)]
        xs = [x1, x2 - w, x1 - w // 2, x2 - w // 2]
        preferred = (min(max(x1, 0), max(width - w, 0)), min(max(y1 - h, 0), max(height - h, 0)))
        candidates = []
        for y in ys:
            for x in xs:
                x, y = min(max(x, 0), max(width - w, 0)), min(max(y, 0), max(height - h, 0))
                rect = (x, y, x + w, y + h)
                covered = sum(overlap(rect, other) for other in placed.values())
                candidates.append((covered, abs(x - preferred[0]) + abs(y - preferred[1]), rect))
        placed[i] = min(candidates)[2]
    return [placed[i] for i in range(len(boxes))]


def draw_faces(frame: np.ndarray, result: FrameResult, probabilities: bool) -> None:
    """Box, label tag and confidence for every face (tags moved apart where faces are close); optional
    probability bars beside it."""
    faces = result.faces
    scale = text_scale(frame.shape[0])
    thickness = max(1, int(round(scale * 2)))
    bars = faces.probs if faces.smoothed is None else faces.smoothed
    texts = [tag_text(faces, i) for i in range(len(faces))]
    metrics = [cv2.getTextSize(text, FONT, scale, thickness) for text in texts]
    sizes = [(tw + 2 * TAG_PAD, th + base + 2 * TAG_PAD) for (tw, th), base in metrics]
    for x1, y1, x2, y2 in faces.xyxy:
        cv2.rectangle(frame, (int(x1), int(y1)), (int(x2), int(y2)), BOX_COLOR, thickness)
    for text, ((_, th), _), (tx1, ty1, tx2, ty2) in zip(texts, metrics,
                                                        place_tags(faces.xyxy, sizes, (frame.shape[1], frame.shape[0]))):
        cv2.rectangle(frame, (tx1, ty1), (tx2 - 1, ty2 - 1), BOX_COLOR, -1)
        cv2.putText(frame, text, (tx1 + TAG_PAD, ty1 + TAG_PAD + th), FONT, scale, PANEL_COLOR, thickness,
                    cv2.LINE_AA)
    if probabilities:
        for i, (x1, y1, x2, y2) in enumerate(faces.xyxy):
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


LIVE_STAGES = ("detect", "classify", "total")
FILE_STAGES = ("detect", "classify")  # a file's frames wait in the ring ahead of the detector: no latency total


def status_lines(latencies: dict[str, float], dropped: int, show_latency: bool, fps: float | None = None,
                 source_t: float | None = None) -> list[str]:
    """The status panel: the source time (files), the frame rate (live), stage latencies in ms, drops."""
    lines = [f"t {source_t:.1f} s"] if source_t is not None else []
    if fps is not None:
        lines.append(f"FPS {fps:5.1f}")
    if show_latency and latencies:
        stages = LIVE_STAGES if fps is not None else FILE_STAGES
        lines.append("ms " + " ".join(f"{k} {latencies[k]:.1f}" for k in stages if k in latencies))
    if dropped:
        lines.append(f"dropped {dropped}")
    return lines


class Renderer:
    """Draws a result onto its frame: faces, then a status panel that says what means something for the source.

    Live sources (and files played at their own rate) get the frame rate over a sliding window and the
    stage latencies; a file processed as fast as it goes gets its source time instead (its processing
    rate has nothing to do with the rate the video plays at); still images get no panel.
    """

    def __init__(self, config: RenderConfig) -> None:
        self.config = config
        self.fps = FpsMeter(config.fps_window_s)
        self._previous: FrameResult | None = None

    def render(self, frame: np.ndarray, result: FrameResult, dropped: int = 0, *, still: bool = False,
               realtime: bool = True) -> None:
        draw_faces(frame, result, self.config.probabilities)
        if still:
            return
        latencies = self.latencies(result)
        if realtime:
            lines = status_lines(latencies, dropped, self.config.latency, fps=self.fps.tick())
        else:
            lines = status_lines(latencies, dropped, self.config.latency, source_t=result.timestamp)
        draw_status(frame, lines)

    def latencies(self, result: FrameResult) -> dict[str, float]:
        """This frame's stage latencies; "total" is the previous frame's, as a frame's own ends after drawing."""
        latencies = result.latencies_ms()
        previous, self._previous = self._previous, result
        if previous is not None and "total" in (done := previous.latencies_ms()):
            latencies["total"] = done["total"]
        return latencies


def opencv_has_gui() -> bool:
    """Whether this OpenCV build can open windows (opencv-python-headless cannot)."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip().upper() != "NONE"
    return True


def display_available() -> bool:
    """Whether a window can be opened: Linux needs an X11 or Wayland display, and OpenCV a GUI backend."""
    display = not sys.platform.startswith("linux") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if display and not opencv_has_gui():
        log.warning("this OpenCV cannot open windows (opencv-python-headless): running headless; "
                    "for a window install opencv-python instead")
        return False
    return display


class Window:
    """An OpenCV window named after the source; ``write`` returns False when the user pressed q or Esc, or closed it."""

    options = (Option("--headless", "headless", "no window, even when a display exists"),)

    def __init__(self) -> None:
        self.title: str | None = None  # the window, once opened

    @classmethod
    def build(cls, outputs: Outputs, context: Context) -> Window | None:
        if outputs.headless:
            return None
        if not display_available():
            log.info("no display found; running headless")
            return None
        return cls()

    def open(self, source: Source, paced: bool) -> None:
        self.title = f"edge: {source.name}"
        cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)

    def write(self, frame: np.ndarray, result: FrameResult) -> bool:
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT_KEYS:
            return False
        return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        if self.title is not None:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)


def check_writable(path: Path) -> None:
    """An output file can be created at ``path``: its folder exists and is writable, and it is no folder itself."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    if path.is_dir():
        raise OutputError(f"output is a folder, not a file: {path}")


def disk_full(path: Path) -> bool:
    """Whether the file system holding ``path`` has no space left."""
    try:
        return os.statvfs(path.parent if str(path.parent) else ".").f_bavail == 0
    except OSError:
        return False


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write part of it, e.g. just before a disk fills up)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class VideoSink:
    """Writes annotated frames to a video at the source's size and frame rate (see edge.video for the codecs).

    The frame rate is the source's (``open``) unless given. ``write`` and ``close`` raise OSError
    when the file cannot be written or finished (a full disk included); after a failed ``write``,
    ``close`` only releases the file and does not raise again.
    """

    def __init__(self, path: Path, render: RenderConfig, fps: float = 0.0) -> None:
        check_writable(path)
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise OutputError(f"output video must end in one of {sorted(VIDEO_SUFFIXES)}: {path}")
        if render.codec.lower() != video.H264 and len(render.codec) != 4:
            raise OutputError(f"render.codec must be {video.H264!r} or a 4-character FourCC, got {render.codec!r}")
        self.path = path
        self.fps = fps
        self.render = render
        self.writer: video.VideoWriter | None = None

    def open(self, source: Source, paced: bool) -> None:
        self.fps = self.fps or source.fps

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        if self.writer is None:
            self.writer = self._open((frame.shape[1], frame.shape[0]))
        size = self.writer.size
        if (frame.shape[1], frame.shape[0]) != size:  # an image folder's frames vary in size
            frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        self.writer.write(frame, result.timestamp)

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
    """Writes annotated images of an image source: one file for one image (an image path), else a folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.single = False

    def open(self, source: Source, paced: bool) -> None:
        """Check the file, or make the folder; OutputError for a video source (its output must be a video)."""
        if not source.still:
            raise OutputError(f"output video must end in one of {sorted(VIDEO_SUFFIXES)}: {self.path}")
        self.single = expected_frames(source) == 1 and self.path.suffix.lower() in IMAGE_SUFFIXES
        if self.single:
            check_writable(self.path)
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create output folder {self.path} ({exc.strerror or exc})") from None

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """OSError naming the image when it cannot be written (OpenCV gives no reason: a full disk, an I/O error)."""
        target = self.path if self.single else self.path / (result.name or f"frame_{result.index:06d}.jpg")
        try:
            written = cv2.imwrite(str(target), frame)
        except cv2.error as exc:  # an encoder's failure
            raise OSError(errno.EIO, str(exc).strip().splitlines()[-1], str(target)) from None
        if not written:
            reason = os.strerror(errno.ENOSPC) if disk_full(target) else "the image could not be written"
            raise OSError(errno.EIO, reason, str(target))

    def close(self) -> None:
        pass


class PeriodicSync(threading.Thread):
    """Asks the OS to put a file's written data on the disk itself every SYNC_INTERVAL_S, off the frame loop.

    Each write already reaches the OS (a killed process loses nothing written); this bounds what a
    power cut loses. A sync that fails (an I/O error) is raised by the sink's next write.
    """

    def __init__(self, fd: int) -> None:
        super().__init__(name="sync", daemon=True)
        self.fd = fd
        self.dirty = False
        self.error: OSError | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(SYNC_INTERVAL_S):
            if self.dirty:
                self.dirty = False
                try:
                    os.fdatasync(self.fd)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:  # EINVAL: nothing to sync (a pipe, /dev/null)
                        self.error = exc
                    return

    def stop(self) -> None:
        self._halt.set()
        self.join()


class EventSink:
    """Per-frame face records: JSON Lines (one object per frame), or CSV (one row per face).

    CSV columns: frame, t, image, face, track_id, box, shown label and score, raw probabilities,
    raw_label, smoothed probabilities (``smoothed_<label>``, empty when not smoothed).

    Crash-safe: each frame's text goes to the OS in one unbuffered write as it is rendered, so a
    run that is killed leaves every frame before the last complete; the data reaches the disk
    within SYNC_INTERVAL_S. A write that fails raises OSError; the file then keeps every whole frame
    written before it (a part written when the disk filled up is cut off), and ``close`` raises
    nothing more.
    """

    options = (Option("--events", "events", "per-frame faces: JSON Lines, or CSV if it ends in .csv", type=Path,
                      writes=lambda path, source: [path]),)

    def __init__(self, path: Path, labels: tuple[str, ...]) -> None:
        check_writable(path)
        self.path = path
        self.labels = labels
        self.csv = path.suffix.lower() == ".csv"
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise OutputError(f"cannot write events file {path} ({exc.strerror or exc})") from None
        self.size = 0  # bytes of whole frames written
        self.failed = False
        self.sync = PeriodicSync(self.fd)
        self.sync.start()

    @classmethod
    def build(cls, outputs: Outputs, context: Context) -> EventSink | None:
        return cls(outputs.events, context.labels) if outputs.events else None

    def header(self) -> list[str]:
        labels = self.labels
        return ["frame", "t", "image", "face", "track_id", "x1", "y1", "x2", "y2", "label", "score", *labels,
                "raw_label", *(f"smoothed_{name}" for name in labels)]

    def text(self, event: dict) -> str:
        """One frame's event as a JSON line, or as CSV rows (the header before the first)."""
        if not self.csv:
            return json.dumps(event) + "\n"
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        if self.size == 0:
            writer.writerow(self.header())
        frame = [event["frame"], f"{event['t']:.4f}", event.get("image", "")]
        if not event["faces"]:  # the frame still appears, with no face
            writer.writerow(frame + [""] * (9 + 2 * len(self.labels)))
        for i, face in enumerate(event["faces"]):
            smoothed = face.get("smoothed", {})
            writer.writerow([*frame, i, face["track_id"], *face["box"], face["label"], face["score"],
                             *(face["probs"][name] for name in self.labels),
                             face.get("raw_label", face["label"]),
                             *(smoothed.get(name, "") for name in self.labels)])
        return buffer.getvalue()

    def open(self, source: Source, paced: bool) -> None:
        pass

    def write(self, frame: np.ndarray, result: FrameResult) -> None:
        """One frame's event; OSError if it cannot be written."""
        self.write_event(result.record())

    def write_event(self, event: dict) -> None:
        """One frame's event, as ``FrameResult.record()`` gives it; OSError if it cannot be written."""
        if self.failed:
            raise OSError(errno.EIO, "an earlier write failed", str(self.path))
        if self.sync.error is not None:
            self.failed = True
            raise OSError(self.sync.error.errno, self.sync.error.strerror, str(self.path))
        data = self.text(event).encode()
        try:
            write_all(self.fd, data)
        except OSError as exc:
            self.failed = True
            with contextlib.suppress(OSError):  # keep the file whole: cut a frame written in part
                os.ftruncate(self.fd, self.size)
            raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        self.size += len(data)
        self.sync.dirty = True

    def close(self) -> None:
        """Close the file (a CSV of no frame still gets its header); OSError if the last of it cannot be written."""
        self.sync.stop()
        try:
            if self.csv and self.size == 0 and not self.failed:
                buffer = io.StringIO()
                csv.writer(buffer).writerow(self.header())
                write_all(self.fd, buffer.getvalue().encode())
            if not self.failed:
                os.fdatasync(self.fd)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # a file that cannot be synced (a pipe, /dev/null) has nothing to lose
                raise OSError(exc.errno, exc.strerror, str(self.path)) from None
        finally:
            os.close(self.fd)


def frame_sink(path: Path, render: RenderConfig) -> VideoSink | ImageSink:
    """Annotated frames: a video for a video path (from any source); else images, for an image source."""
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return VideoSink(path, render)
    return ImageSink(path)


def frame_outputs(output: Path, source: list[Path]) -> list[Path]:
    """The files ``frame_sink(output)`` writes for a source of these files: a video, one image, or a folder
    of images named as the source's."""
    suffix = output.suffix.lower()
    if suffix in VIDEO_SUFFIXES or (len(source) == 1 and suffix in IMAGE_SUFFIXES):
        return [output]
    return [output / image.name for image in source]


class AnnotatedFrames:
    """--output: the drawn frames, as a video, or as images for an image source (``frame_sink`` decides)."""

    options = (Option("--output", "video", "annotated video (.mp4/.avi/...), or image/folder for images",
                      type=Path, writes=frame_outputs),)

    @staticmethod
    def build(outputs: Outputs, context: Context) -> VideoSink | ImageSink | None:
        return frame_sink(outputs.video, context.config.render) if outputs.video else None

