"""Video files: writers (H.264 through PyAV, fragmented MP4 playable even after a crash, or an OpenCV FourCC),
and the plain frame reader that tools, benchmarks and tests share (the runtime reads through edge.capture)."""

from __future__ import annotations

import errno
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np

from edge.capture import SourceError

log = logging.getLogger(__name__)

H264 = "h264"  # render.codec: H.264 through PyAV, falling back to OpenCV's mp4v without it
FALLBACK_FOURCC = "mp4v"
VIDEO_EXTRA_HINT = "pip install 'fer-edge[video]'"  # the extra that brings PyAV (and libx264 in its wheels)
TIME_BASE = Fraction(1, 90_000)  # MPEG's 90 kHz clock: frame times of 30 and 29.97 fps are whole ticks
FRAGMENTED = {".mp4", ".m4v", ".mov"}  # ISO-BMFF files, written as fragments; Matroska needs no flags
OPENCV_ONLY = {".avi"}  # AVI keeps no per-frame times (a live source's, or B-frames'): OpenCV writes it (mp4v)
# A fragment per keyframe, a keyframe a second, each fragment written out when it is complete: a run
# killed mid-way leaves a file that plays up to about a second before the kill.
FRAGMENT_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


class VideoWriter(Protocol):
    """Frames in, one video file out. ``write`` and ``close`` raise OSError when the file cannot be written."""

    path: Path
    size: tuple[int, int]  # (width, height) of the frames it takes
    frames: int

    def write(self, frame: np.ndarray, timestamp: float) -> None: ...

    def close(self) -> None: ...


def pyav_available() -> bool:
    """Whether PyAV (the ``video`` extra) can be imported."""
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def even_size(width: int, height: int) -> tuple[int, int]:
    """4:2:0 chroma needs even dimensions: an odd frame gets one replicated column or row."""
    return width + width % 2, height + height % 2


class H264Writer:
    """H.264 (libx264) in MP4, MOV or MKV through PyAV; frame times become the video's timestamps."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], preset: str, threads: int) -> None:
        import av

        self._av = av
        self.path = path
        self.frames = 0
        self.size = size  # what callers pass
        self.coded_size = even_size(*size)
        self._packet_bytes = 0  # compressed bytes handed to the muxer: the file holds at least these
        self._failed = False
        self._first_t: float | None = None
        self._last_pts = -1
        rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)
        options = dict(FRAGMENT_OPTIONS) if path.suffix.lower() in FRAGMENTED else {}
        try:
            self.container = av.open(str(path), "w", options=options)
            self.stream = self.container.add_stream("libx264", rate=rate)
        except av.FFmpegError as exc:
            raise OSError(exc.errno or errno.EIO, f"cannot write video {path}: {exc.strerror or exc}") from None
        self.stream.width, self.stream.height = self.coded_size
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = TIME_BASE
        self.stream.codec_context.time_base = TIME_BASE
        self.stream.codec_context.thread_count = threads  # 0: libx264 picks (about 1.5 per core)
        keyframe_interval = max(1, round(float(rate)))  # frames
        self.stream.options = {"preset": preset, "crf": "23", "g": str(keyframe_interval)}

    def write(self, frame: np.ndarray, timestamp: float) -> None:
        if (frame.shape[1], frame.shape[0]) != self.coded_size:
            frame = cv2.copyMakeBorder(frame, 0, self.coded_size[1] - frame.shape[0], 0,
                                       self.coded_size[0] - frame.shape[1], cv2.BORDER_REPLICATE)
        yuv = self._av.VideoFrame.from_ndarray(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        yuv.pts = self._pts(timestamp)
        yuv.time_base = TIME_BASE
        self._encode(yuv)
        self.frames += 1

    def _pts(self, timestamp: float) -> int:
        """Ticks since the first frame, always increasing (a live source's clock may repeat a time)."""
        if self._first_t is None:
            self._first_t = timestamp
        pts = max(round((timestamp - self._first_t) / TIME_BASE), self._last_pts + 1)
        self._last_pts = pts
        return pts

    def _encode(self, frame: object | None) -> None:
        """Encode a frame (None: flush the encoder) and mux its packets; a failure is an OSError."""
        try:
            for packet in self.stream.encode(frame):
                self._packet_bytes += packet.size
                self.container.mux(packet)
        except self._av.FFmpegError as exc:
            self._failed = True
            raise OSError(exc.errno or errno.EIO, f"cannot write video {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        """Flush the encoder and finish the file; OSError if it is incomplete (not again after a failed write)."""
        if self.container is None:
            return
        try:
            if not self._failed:
                self._encode(None)
        finally:
            container, self.container = self.container, None
            try:
                container.close()
            except self._av.FFmpegError as exc:
                if not self._failed:
                    raise OSError(exc.errno or errno.EIO, f"cannot finish video {self.path}: {exc}") from None
        if not self._failed:
            self._check_complete()

    def _check_complete(self) -> None:
        # FFmpeg does not report a failed write of the last fragment when the file is closed: a file
        # smaller than the compressed frames it was given lost some (e.g. the disk filled up).
        size = self.path.stat().st_size if self.path.exists() else 0
        if size < self._packet_bytes:
            raise OSError(errno.EIO, f"video {self.path} is incomplete: {size} bytes written of at least "
                                     f"{self._packet_bytes} (disk full?)")


class OpenCVWriter:
    """A FourCC codec through cv2.VideoWriter (mp4v, MJPG, ...). Its writes fail silently: ``close`` checks."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], fourcc: str) -> None:
        self.path = path
        self.fourcc = fourcc
        self.size = size
        self.frames = 0
        self.writer: cv2.VideoWriter | None = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc),
                                                              fps if fps > 0 else 30.0, size)
        if not self.writer.isOpened():
            self.writer = None
            raise OSError(errno.EIO, f"cannot write video {path} with codec {fourcc}")

    def write(self, frame: np.ndarray, timestamp: float) -> None:
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file, then read it back: OSError unless every frame written is there."""
        if self.writer is None:
            return
        self.writer.release()
        self.writer = None
        readable = readable_frames(self.path)
        if readable != self.frames:
            raise OSError(errno.EIO, f"video {self.path} is incomplete: {readable} of {self.frames} frames "
                                     f"readable (disk full?)")


def readable_frames(path: Path) -> int:
    """Frames a finished video file says it holds (its index), 0 if it does not open."""
    if not path.is_file() or os.path.getsize(path) == 0:
        return 0
    capture = cv2.VideoCapture(str(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def decodable_frames(path: Path) -> int:
    """Frames OpenCV can decode from a video file, counted by reading it through (0 if it does not open)."""
    capture, frames = cv2.VideoCapture(str(path)), 0
    while capture.grab():
        frames += 1
    capture.release()
    return frames


def open_writer(path: Path, fps: float, size: tuple[int, int], codec: str, preset: str,
                threads: int) -> VideoWriter:
    """H.264 through PyAV for ``codec`` "h264" (mp4v with a warning without PyAV), else the FourCC via OpenCV."""
    if codec.lower() == H264 and path.suffix.lower() in OPENCV_ONLY:
        codec = FALLBACK_FOURCC
    elif codec.lower() == H264:
        if pyav_available():
            return H264Writer(path, fps, size, preset, threads)
        log.warning("writing %s as MPEG-4 Part 2 (mp4v), which browsers do not play; for H.264: %s",
                    path, VIDEO_EXTRA_HINT)
        codec = FALLBACK_FOURCC
    return OpenCVWriter(path, fps, size, codec)


def read_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Every BGR frame of a video file, in order, as OpenCV decodes it; SourceError when none decodes."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"not a decodable video: {path}")
    try:
        decoded = 0
        while (frame := capture.read()[1]) is not None:
            decoded += 1
            yield frame
        if decoded == 0:
            raise SourceError(f"not a decodable video (no frames): {path}")
    finally:
        capture.release()
