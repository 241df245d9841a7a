"""Capture stage: frame sources (camera, file, stream, image, folder, Pi camera) and the threaded reader."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edge.config import CaptureConfig
from edge.messages import END, EndOfStream, FrameTask
from edge.results import Stamps

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".pgm", ".ppm"}
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
SLOT_WAIT_S = 0.1  # how long a blocking wait lasts before the stop flag is checked again
MAX_PACE_LAG_S = 0.5  # a paced source this far behind restarts its clock instead of rushing to catch up
MAX_CAMERA_INDEX = 2**31 - 1  # OpenCV takes a C int
LINEAR_SEEKS = 60  # past a damaged part of a file, the next frames are tried one by one this many times ...
MAX_FRAME_COUNT = 10**9  # (a container's frame count above this is not a count)


class SourceError(ValueError):
    """A source cannot be opened or read: the message says which and why."""


class Source:
    """A sequence of BGR frames. ``read`` fills ``out`` when its shape fits and returns the frame."""

    name: str = ""
    live: bool = False  # frames arrive in real time and must not queue up
    fps: float = 0.0
    still: bool = False  # independent images, not a video
    can_stall: bool = False  # a failed read may be a stall worth reopening (cameras, streams), not the end
    skipped: int = 0  # frames passed over so far (a damaged file's, a replay's): their numbers are left out
    frame_count: int = 0  # frames it gives, where known (a file's count from its container, a folder's images)

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        raise NotImplementedError

    def timestamp(self, index: int) -> float:
        """Seconds into the source of the frame with this index."""
        return index / self.fps if self.fps > 0 else 0.0

    def current_name(self) -> str:
        return ""

    def reopen(self) -> bool:
        return False

    def close(self) -> None:
        pass


class VideoSource(Source):
    """A camera, a video file or a network stream, read through cv2.VideoCapture."""

    def __init__(self, target: int | str, config: CaptureConfig, live: bool) -> None:
        self.target = target
        self.config = config
        self.live = live
        self.name = f"camera {target}" if isinstance(target, int) else str(target)
        self.can_stall = isinstance(target, int) or target.startswith(STREAM_PREFIXES)
        self._started = time.perf_counter()
        self.capture = self._open()
        first = self.capture.read()[1] if self.capture is not None else None
        if first is None:
            self.close()
            raise SourceError(self._open_error())
        self._first: np.ndarray | None = first
        self.frame_shape = first.shape
        fps = self.capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 0 < fps < 1000 else 30.0
        count = self.capture.get(cv2.CAP_PROP_FRAME_COUNT)
        # A file's frame count from its container, for going on past damage; 0 when unknown or not a file.
        self.frame_count = int(count) if not self.can_stall and 0 < count < MAX_FRAME_COUNT else 0
        self.position = 1  # index of the next frame in the file
        self.damaged = 0  # frames that could not be decoded and were passed over
        self._ended = False

    def _open(self) -> cv2.VideoCapture | None:
        if isinstance(self.target, int):
            capture = cv2.VideoCapture(self.target)
            for prop, value in ((cv2.CAP_PROP_FRAME_WIDTH, self.config.width),
                                (cv2.CAP_PROP_FRAME_HEIGHT, self.config.height),
                                (cv2.CAP_PROP_FPS, self.config.fps)):
                if value:
                    capture.set(prop, value)
            # One buffered frame: a camera's internal queue would only add latency.
            capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        elif self.target.startswith(STREAM_PREFIXES):
            timeout_ms = int(self.config.stall_timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, params + self._decode_params())
        else:
            params = self._decode_params()
            capture = cv2.VideoCapture(self.target, cv2.CAP_ANY, params)
            if not capture.isOpened() and params:  # a backend that refuses the property
                capture = cv2.VideoCapture(self.target)
        return capture if capture.isOpened() else None

    def _decode_params(self) -> list[int]:
        # FFmpeg's default decodes on every core: on a small machine those threads compete with the
        # detector and classifier for the same cores, and frame threading delays each frame.
        threads = self.config.decode_threads
        return [cv2.CAP_PROP_N_THREADS, threads] if threads else []

    def _open_error(self) -> str:
        if isinstance(self.target, int):
            return f"camera {self.target} could not be opened"
        if self.target.startswith(STREAM_PREFIXES):
            return f"stream could not be opened (unreachable or not a video stream): {self.target}"
        return f"not a decodable video or image: {self.target}"

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        if self._first is not None:
            frame, self._first = self._first, None
            if out is not None and out.shape == frame.shape:
                out[...] = frame
                return out
            return frame
        if self.capture is None:
            return None
        fits = out is not None and out.shape == self.frame_shape
        ok, frame = self.capture.read(out) if fits else self.capture.read()
        if ok:
            self.position += 1
            return frame
        if self.frame_count and not self._ended:
            return self._past_damage(out if fits else None)
        return None

    def skip(self) -> bool:
        """Pass over the next frame without converting it (a camera that replaced it); False at the end."""
        if self._first is not None:
            self._first = None
            return True
        if self.capture is None or not self.capture.grab():
            return False
        self.position += 1
        return True

    def _past_damage(self, out: np.ndarray | None) -> np.ndarray | None:
        """After a failed read inside a file: the first frame that decodes past the damage, or None at its end.

        The next frames are tried one by one, then at doubling distances, so a long damaged stretch
        costs a few dozen seeks (each decodes from the keyframe before its target).
        """
        failed, step, attempts = self.position, 1, 0
        while failed + step - 1 < self.frame_count:
            target = failed + step - 1
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, target)
            if int(self.capture.get(cv2.CAP_PROP_POS_FRAMES)) == target:
                ok, frame = self.capture.read(out) if out is not None else self.capture.read()
                if ok:
                    self.skipped += target - failed
                    self.damaged += target - failed
                    self.position = target + 1
                    return frame
            attempts += 1
            step = step + 1 if attempts < LINEAR_SEEKS else step * 2
        self._ended = True
        self._report_damage(missing_tail=self.frame_count - failed)
        return None

    def _report_damage(self, missing_tail: int) -> None:
        """One warning at the end of a damaged file; a tail shorter than a second is a container's inexact count."""
        lost = self.damaged + (missing_tail if missing_tail > self.fps else 0)
        if lost:
            log.warning("%s: %d of its %d frames could not be decoded (the file is damaged) and were skipped",
                        self.name, lost, self.frame_count)

    def timestamp(self, index: int) -> float:
        if self.live:
            return time.perf_counter() - self._started
        return super().timestamp(index)

    def reopen(self) -> bool:
        self.close()
        self.capture = self._open()
        return self.capture is not None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None


class ImageSource(Source):
    """One image file or every image in a folder (sorted by name), each an independent frame."""

    still = True

    def __init__(self, paths: list[Path], config: CaptureConfig, name: str) -> None:
        if not paths:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder: {name}")
        self.paths = paths
        self.frame_count = len(paths)
        self.name = name
        self.fps = config.image_fps
        self._next = 0
        self._current = ""
        first = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)
        if first is None:
            raise SourceError(f"not a decodable image: {paths[0]}")
        self._first: np.ndarray | None = first
        self.frame_shape = first.shape

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        while self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            self._current = path.name
            if self._first is not None:
                image, self._first = self._first, None
            else:
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping %s: not a decodable image", path)
                continue
            return image
        return None

    def current_name(self) -> str:
        return self._current


class PiCameraSource(Source):
    """The Raspberry Pi camera through picamera2."""

    live = True
    can_stall = True

    def __init__(self, config: CaptureConfig) -> None:
        try:
            from picamera2 import Picamera2  # type: ignore[import-not-found]
        except ImportError:
            raise SourceError(
                "--source picamera needs picamera2, which is not installed "
                "(on Raspberry Pi OS: sudo apt install python3-picamera2, and create the venv "
                "with --system-site-packages)"
            ) from None
        width, height = config.width or 640, config.height or 480
        try:
            self.camera = Picamera2()
            video = self.camera.create_video_configuration(
                main={"size": (width, height), "format": "BGR888"})
            self.camera.configure(video)
            self.camera.start()
        except (RuntimeError, IndexError, OSError) as exc:
            raise SourceError(f"Pi camera could not be opened ({exc})") from None
        self.name = "picamera"
        self.fps = config.fps or 30.0
        self._started = time.perf_counter()
        self.frame_shape = (height, width, 3)

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        frame = self.camera.capture_array("main")
        return None if frame is None else frame[..., :3]

    def timestamp(self, index: int) -> float:
        return time.perf_counter() - self._started

    def close(self) -> None:
        self.camera.stop()
        self.camera.close()


def is_camera_index(spec: str) -> bool:
    """Whether --source names a camera by number (ASCII digits only: '²' is a digit to str.isdigit)."""
    return spec.isascii() and spec.isdigit()


def open_source(spec: str, config: CaptureConfig) -> Source:
    """Open what --source names: a camera index, 'picamera', a URL, an image, a folder or a video."""
    live_override = {"yes": True, "no": False}.get(config.live)
    if is_camera_index(spec):
        if int(spec) > MAX_CAMERA_INDEX:
            raise SourceError(f"camera index out of range (0 to {MAX_CAMERA_INDEX}): {spec}")
        return VideoSource(int(spec), config, live=True if live_override is None else live_override)
    if spec == "picamera":
        return PiCameraSource(config)
    if spec.startswith(STREAM_PREFIXES):
        return VideoSource(spec, config, live=True if live_override is None else live_override)
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"source not found: {spec}")
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return ImageSource(images, config, name=spec)
    if not os.access(path, os.R_OK):
        raise SourceError(f"source is not readable: {spec}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource([path], config, name=spec)
    return VideoSource(spec, config, live=bool(live_override))


class SourceOpener(threading.Thread):
    """Opens a source on its own thread, so that a stop can abandon an open that blocks.

    Opening may block without end or timeout (a FIFO with no writer, a camera driver that hangs);
    the main thread waits for ``result`` in short steps and stays free to handle a stop signal.
    An opener that is abandoned closes its source itself if the open ever completes.
    """

    def __init__(self, spec: str, config: CaptureConfig) -> None:
        super().__init__(name="open-source", daemon=True)
        self.spec = spec
        self.config = config
        self._lock = threading.Lock()
        self._source: Source | None = None
        self._error: Exception | None = None
        self._abandoned = False

    def run(self) -> None:
        try:
            source = open_source(self.spec, self.config)
        except Exception as exc:  # handed to the waiting thread, which raises it
            with self._lock:
                self._error = exc
            return
        with self._lock:
            if not self._abandoned:
                self._source = source
                return
        source.close()

    def result(self, timeout: float) -> Source | None:
        """The open source once opened (None while still opening); raises what the open raised."""
        self.join(timeout)
        with self._lock:
            if self._error is not None:
                raise self._error
            return self._source

    def abandon(self, wait_s: float = 0.3) -> None:
        """The source is no longer wanted: closed now if open (waiting ``wait_s`` for an open about to end),
        or when its open completes."""
        self.join(wait_s)
        with self._lock:
            self._abandoned = True
            source, self._source = self._source, None
        if source is not None:
            source.close()


class Pacer:
    """Holds each frame of a file until its time in the source has come, so it plays at its own rate."""

    def __init__(self) -> None:
        self.origin: float | None = None  # perf_counter at timestamp 0

    def wait(self, timestamp: float, stop: threading.Event | None = None) -> None:
        """Sleep until the frame with this timestamp (seconds into the source) is due, or stop is set."""
        now = time.perf_counter()
        if self.origin is None or now - (self.origin + timestamp) > MAX_PACE_LAG_S:
            self.origin = now - timestamp
        delay = self.origin + timestamp - now
        if delay > 0:
            (stop or threading.Event()).wait(delay)


class FrameReader(threading.Thread):
    """Reads a source into shared-memory slots on its own thread and hands frames on.

    File sources are lossless: the reader waits for a free slot (backpressure), so every
    frame is processed in order. Live sources keep latency bounded: at most
    ``max_in_flight`` frames are being processed; a frame captured while the pipeline is
    full waits as the single pending frame, and a newer one replaces it (a counted drop).
    """

    def __init__(self, source: Source, buffers: list[np.ndarray], send: Callable[[FrameTask | EndOfStream], None],
                 config: CaptureConfig, stop: threading.Event, max_in_flight: int = 2,
                 pace: bool = False) -> None:
        super().__init__(name="capture", daemon=True)
        self.source = source
        self.buffers = buffers  # flat uint8 slot buffers in shared memory
        self.send = send
        self.config = config
        self.stop_event = stop
        self.max_in_flight = max_in_flight
        # A file played at its own frame rate (for viewers): read each frame when it is due, so
        # frames never wait in the ring and the latencies stay those of the pipeline.
        self.pacer = Pacer() if pace and not source.live and not source.still else None
        self.free: queue.Queue[int] = queue.Queue()
        for slot in range(len(buffers)):
            self.free.put(slot)
        self.lock = threading.RLock()  # send() may release a slot at once (re-entry)
        self.in_flight = 0
        self.pending: FrameTask | None = None
        self._next_seq = 0
        self.frames_read = 0
        self.dropped = 0
        self.error: str | None = None

    @property
    def dispatched(self) -> int:
        """Frames handed on so far."""
        return self._next_seq

    def release(self, slot: int) -> None:
        """A frame is fully rendered: its slot is free again, and a pending frame may go."""
        with self.lock:
            self.free.put(slot)
            self.in_flight -= 1
            if self.pending is not None and self.in_flight < self.max_in_flight:
                task, self.pending = self.pending, None
                self._dispatch(task)

    def _number(self, task: FrameTask) -> None:
        # Sequence numbers count dispatched frames only, so the renderer sees no gaps.
        task.seq = self._next_seq
        self._next_seq += 1
        self.in_flight += 1

    def _dispatch(self, task: FrameTask) -> None:
        """Under the lock, so that frames dispatched by release() on another thread go out in order."""
        self._number(task)
        self.send(task)

    def _offer(self, task: FrameTask) -> None:
        if not self.source.live:
            # Only this thread dispatches a file's frames (none is ever pending), so send() runs
            # outside the lock: it may block while every stage downstream is full, and the thread
            # that empties them calls release(), which takes the lock.
            with self.lock:
                self._number(task)
            self.send(task)
            return
        with self.lock:
            if self.in_flight < self.max_in_flight:  # max_in_flight small messages: send() cannot block
                self._dispatch(task)
                return
            if self.pending is not None:
                self.free.put(self.pending.slot)
                self.dropped += 1
            self.pending = task

    def _free_slot(self) -> int | None:
        while not self.stop_event.is_set():
            try:
                return self.free.get(timeout=SLOT_WAIT_S)
            except queue.Empty:
                continue
        return None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                slot = self._free_slot()
                if slot is None:
                    break
                if self.pacer is not None:
                    self.pacer.wait(self.source.timestamp(self.frames_read + self.source.skipped), self.stop_event)
                read_start = time.perf_counter()
                frame = self._read_into(self.buffers[slot])
                if frame is None:
                    self.free.put(slot)
                    break
                captured = time.perf_counter()
                index = self.frames_read + self.source.skipped  # a damaged file's skipped frames leave a gap
                self.frames_read += 1
                self._offer(FrameTask(
                    slot=slot, seq=-1, index=index, timestamp=self.source.timestamp(index),
                    shape=frame.shape, still=self.source.still, name=self.source.current_name(),
                    stamps=Stamps(read_start=read_start, captured=captured)))
        except Exception as exc:  # a capture failure must end the stream, not hang it
            log.exception("capture failed")
            self.error = f"capture failed: {exc}"
        finally:
            with self.lock:  # the newest frame of a live source that ended is still shown
                if self.pending is not None:
                    task, self.pending = self.pending, None
                    self._dispatch(task)
            self.send(END)

    def _read_into(self, buffer: np.ndarray) -> np.ndarray | None:
        """Read the next frame into a slot buffer; a camera or stream that stalls is reopened with back-off."""
        target = frame_view(buffer, self.source.frame_shape) if fits(buffer, self.source.frame_shape) else None
        frame = self.source.read(target)
        attempts = 0
        while frame is None and self.source.can_stall and not self.stop_event.is_set():
            if attempts >= self.config.reopen_attempts:
                self.error = f"{self.source.name} stopped delivering frames"
                return None
            delay = min(self.config.reopen_backoff_s * 2 ** attempts, 30.0)
            log.warning("%s stalled; reopening in %.1f s", self.source.name, delay)
            if self.stop_event.wait(delay):
                return None
            attempts += 1
            if self.source.reopen():
                frame = self.source.read(target)
        if frame is None or frame is target:
            return frame
        return fit_into(frame, buffer)


def fits(buffer: np.ndarray, shape: tuple[int, ...]) -> bool:
    return int(np.prod(shape)) <= buffer.size


def frame_view(buffer: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The frame of this shape stored at the start of a flat slot buffer."""
    return buffer[: int(np.prod(shape))].reshape(shape)


def fit_into(frame: np.ndarray, buffer: np.ndarray) -> np.ndarray:
    """Copy a frame into a flat slot buffer, shrinking it first if it does not fit."""
    if frame.ndim == 2:
        frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if not fits(buffer, frame.shape):
        height, width = frame.shape[:2]
        scale = (buffer.size / frame.size) ** 0.5
        new_height = max(1, int(height * scale))
        new_width = max(1, min(int(width * scale), buffer.size // (3 * new_height)))  # never over capacity
        size = (new_width, new_height)
        log.warning("frame %dx%d larger than the frame slots; shrunk to %dx%d", width, height, *size)
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    view = frame_view(buffer, frame.shape)
    view[...] = frame
    return view
