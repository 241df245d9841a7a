"""Benchmark media: bit-exact looped copies of a clip, and the per-frame full-resolution Haar reference."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.config import DetectorConfig, override
from edge.detect import FaceDetector, make_detector
from edge.video import read_frames

log = logging.getLogger(__name__)

REENCODE_CODEC = "mp4v"  # fallback when the compressed stream cannot be copied as it is
ANY_FACE = 1e-3  # min_face of a full scan: every size from the cascade's own 24 px window up


@dataclass(frozen=True)
class BenchVideo:
    """The file every variant reads, and how its frames relate to the original clip."""

    path: Path
    original: Path
    clip_frames: int  # frames in the original clip
    loop: int
    fps: float
    width: int
    height: int
    codec: str
    bit_exact: bool  # every frame decodes identically to frame (i % clip_frames) of the original

    @property
    def frames(self) -> int:
        return self.clip_frames * self.loop


def probe(path: Path) -> tuple[int, float, int, int, str]:
    """Frames (counted by decoding), frame rate, width, height and codec of a video file."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"not a decodable video: {path}")
    fps = capture.get(cv2.CAP_PROP_FPS)
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode("ascii", "replace")
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = 0
    while capture.grab():
        frames += 1
    capture.release()
    if frames == 0:
        raise ValueError(f"no frames could be decoded from {path}")
    return frames, (fps if 0 < fps < 1000 else 30.0), width, height, fourcc.strip("\x00")


def compressed_packets(path: Path) -> list[np.ndarray]:
    """The clip's compressed video packets, demuxed without decoding (empty if the backend cannot)."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    packets: list[np.ndarray] = []
    if capture.isOpened() and capture.set(cv2.CAP_PROP_FORMAT, -1):
        while capture.grab():
            ok, packet = capture.retrieve()
            if not ok or packet is None:
                return []
            packets.append(packet.copy())
    capture.release()
    return packets


def write_copied(packets: list[np.ndarray], loop: int, target: Path, fourcc: str, fps: float,
                 size: tuple[int, int]) -> bool:
    """Write the packets ``loop`` times into a new container without re-encoding."""
    raw = getattr(cv2, "VIDEOWRITER_PROP_RAW_VIDEO", None)
    if raw is None or not packets:
        return False
    writer = cv2.VideoWriter(str(target), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps, size, [raw, 1])
    if not writer.isOpened():
        return False
    for _ in range(loop):
        for packet in packets:
            writer.write(packet)
    writer.release()
    return True


def write_reencoded(source: Path, loop: int, target: Path, fps: float, size: tuple[int, int]) -> None:
    writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*REENCODE_CODEC), fps, size)
    for _ in range(loop):
        for frame in read_frames(source):
            writer.write(frame)
    writer.release()


def same_frames(looped: Path, original: Path, clip_frames: int, check_frames: int = 3) -> bool:
    """Whether the first frames of the second copy decode exactly like the original's first frames."""
    a, b = cv2.VideoCapture(str(looped)), cv2.VideoCapture(str(original))
    for _ in range(clip_frames):
        a.grab()
    try:
        for _ in range(check_frames):
            (ok_a, fa), (ok_b, fb) = a.read(), b.read()
            if not (ok_a and ok_b) or fa.shape != fb.shape or not np.array_equal(fa, fb):
                return False
        return True
    finally:
        a.release()
        b.release()


def is_loop_of(looped: Path, source: Path, clip_frames: int, loop: int) -> bool:
    """Whether a stream copy decodes as ``loop`` bit-exact copies of the clip.

    Not every stream survives a copy: MPEG-4 Part 2 packets lose the headers the decoder needs,
    and the copy decodes to nothing.
    """
    try:
        return probe(looped)[0] == clip_frames * loop and same_frames(looped, source, clip_frames)
    except ValueError:
        return False


def bench_video(source: Path, loop: int, workdir: Path) -> BenchVideo:
    """The clip itself (loop 1), or a copy repeating it ``loop`` times: stream-copied where possible, so
    decoding costs what the original costs and every frame is bit-exact, else re-encoded."""
    frames, fps, width, height, codec = probe(source)
    if loop <= 1:
        return BenchVideo(source, source, frames, 1, fps, width, height, codec, True)
    target = workdir / f"{source.stem}_x{loop}{source.suffix if source.suffix else '.mp4'}"
    fourcc = codec if len(codec) == 4 and codec.isalnum() else "avc1"
    fourcc = "avc1" if fourcc.lower() == "h264" else fourcc
    copied = write_copied(compressed_packets(source), loop, target, fourcc, fps, (width, height))
    if copied and is_loop_of(target, source, frames, loop):
        return BenchVideo(target, source, frames, loop, fps, width, height, codec, True)
    log.warning("could not copy the compressed stream of %s; re-encoding the loop with %s", source, REENCODE_CODEC)
    target = target.with_suffix(".mp4")
    write_reencoded(source, loop, target, fps, (width, height))
    return BenchVideo(target, source, frames, loop, fps, width, height, REENCODE_CODEC, False)


def full_scan_detector(config: DetectorConfig, scale_factor: float, min_neighbors: int) -> FaceDetector:
    """A Haar detector that scans every frame whole at full resolution, every size from the cascade's window up:
    ``detectMultiScale(gray, scale_factor, min_neighbors)`` per frame, nested hits of one face counted once."""
    haar = override(config, "haar", scale_factor=scale_factor, min_neighbors=min_neighbors, min_face=ANY_FACE,
                    max_face=1.0).haar
    return make_detector(dataclasses.replace(config, kind="haar", haar=haar))


def reference_faces(video: BenchVideo, config: DetectorConfig, scale_factor: float, min_neighbors: int
                    ) -> list[np.ndarray]:
    """Per frame of the benchmark video: the faces a full-resolution Haar scan finds, (n, 4) xyxy boxes.

    Nested or overlapping hits of one face count once. A bit-exact loop is scanned once through
    the original clip and its answers repeated.
    """
    detector = full_scan_detector(config, scale_factor, min_neighbors)
    path = video.original if video.bit_exact else video.path
    found = [detector.detect(frame, still=True).xyxy for frame in read_frames(path)]
    return found * video.loop if video.bit_exact else found
