"""The measured variants: decode only, the sequential seeds-style loop, and the multi-process pipeline."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.media import full_scan_detector
from benchmarks.paced import PacedVideoSource
from benchmarks.procmon import CpuCheckpoints, ProcessMonitor
from edge.capture import VideoSource
from edge.config import Config, override
from edge.detect import Detections
from edge.pipeline import Pipeline
from edge.results import FrameResult
from edge.run import Presenter
from edge.runner import Runner, Stages
from edge.sinks import Outputs

SEEDS_SCALE_FACTOR = 1.3  # the seeds' detectMultiScale(gray, 1.3, 5) on the full frame
SEEDS_MIN_NEIGHBORS = 5
NO_FACES = np.empty((0, 4), np.int32)
CPU_MARK_EVERY = 10  # frames between two readings of the pipeline's CPU time (each costs ~0.3 ms)


@dataclass
class FrameLog:
    """What a variant did, frame by frame: source index, finish time, face boxes, stage latencies (ms)."""

    started: float = field(default_factory=time.perf_counter)
    finished: float = 0.0
    indices: list[int] = field(default_factory=list)
    done: list[float] = field(default_factory=list)  # perf_counter when the frame was fully rendered
    boxes: list[np.ndarray] = field(default_factory=list)  # (n, 4) xyxy faces of each frame
    latencies: list[dict[str, float]] = field(default_factory=list)
    first_frame_s: float | None = None  # from the variant's start to its first rendered frame
    extra: dict = field(default_factory=dict)

    def add(self, index: int, done: float, boxes: np.ndarray = NO_FACES,
            latencies: dict[str, float] | None = None) -> None:
        if self.first_frame_s is None:
            self.first_frame_s = done - self.started
        self.indices.append(index)
        self.done.append(done)
        self.boxes.append(boxes)
        if latencies is not None:
            self.latencies.append(latencies)

    @property
    def has_face(self) -> list[bool]:
        return [len(boxes) > 0 for boxes in self.boxes]

    @property
    def elapsed_s(self) -> float:
        return self.finished - self.started


def outputs(workdir: Path, name: str) -> Outputs:
    """What `python -m edge.run --source S --headless --output V --events E` shows and writes."""
    return Outputs(video=workdir / f"{name}.mp4", events=workdir / f"{name}.jsonl", headless=True)


def decode_only(path: Path, config: Config) -> FrameLog:
    """Read every frame through the capture stage's own source into one reused buffer: the ceiling."""
    log = FrameLog()
    source = VideoSource(str(path), config.capture, live=False)
    buffer = np.empty(source.frame_shape, np.uint8)
    index = 0
    while source.read(buffer) is not None:
        log.add(index, time.perf_counter())
        index += 1
    source.close()
    log.finished = time.perf_counter()
    return log


class SeedsDetector:
    """The seeds' detector: a full-frame Haar scan of every frame at scale 1.3, 5 neighbours; nothing followed."""

    def __init__(self, config: Config) -> None:
        self.scan = full_scan_detector(config.detector, SEEDS_SCALE_FACTOR, SEEDS_MIN_NEIGHBORS)

    def detect(self, frame: np.ndarray, still: bool = False) -> Detections:
        return self.scan.detect(frame, still=True)


def sequential(path: Path, config: Config, model: Path, workdir: Path, name: str, detector: str) -> FrameLog:
    """One process, one frame at a time (the library's single-process Runner): read, detect, classify every
    face; then the CLI's Presenter tracks, draws and writes video and events, as in the pipeline variant."""
    log = FrameLog()
    stages = Stages(config, model, detector=SeedsDetector(config) if detector == "seeds" else None)
    runner = Runner(str(path), config, stages=stages, track=False)  # the Presenter tracks, as it does for Pipeline
    presenter = Presenter(runner, outputs(workdir, name), config)
    try:
        for frame, result in runner:
            presenter(frame, result, runner)
            result.stamps.rendered = time.perf_counter()
            log.add(result.index, result.stamps.rendered, result.faces.xyxy, result.latencies_ms())
    finally:
        presenter.close()
    log.finished = time.perf_counter()
    return log


def pipelined(path: Path, config: Config, model: Path, workdir: Path, name: str, monitor: ProcessMonitor,
              paced_fps: float | None = None) -> FrameLog:
    """The multi-process pipeline doing what `python -m edge.run --headless --output --events` does.

    With ``paced_fps`` the file is replayed as a live camera at that rate (capture.live = yes).
    """
    log = FrameLog()
    if paced_fps:  # a live source; at the end of the file it is over, not stalled: no reopening
        config = override(config, "capture", live="yes", reopen_attempts=0)
    source = PacedVideoSource(str(path), config.capture, paced_fps) if paced_fps else None
    pipeline = Pipeline(source or str(path), config, model=model)
    presenter = Presenter(pipeline, outputs(workdir, name), config)
    cpu = CpuCheckpoints(CPU_MARK_EVERY)

    results: list[FrameResult] = []  # their stamps are complete once on_result has returned

    def on_result(frame: np.ndarray, result: FrameResult, runner: Pipeline) -> bool:
        keep = presenter(frame, result, runner)
        if not monitor.names:
            monitor.names.update({pid: name for name, pid in runner.workers.items()})
        log.add(result.index, time.perf_counter(), result.faces.xyxy)
        cpu(len(log.done))
        results.append(result)
        return keep

    try:
        summary = pipeline.run(on_result)
    finally:
        presenter.close()
    if source is not None:
        log.extra["source_skipped"] = source.skipped
    log.finished = time.perf_counter()
    log.latencies = [result.latencies_ms() for result in results]  # the pipeline's per-stage records, in order
    log.extra["cpu_marks"] = cpu.marks
    log.extra.update(frames_read=summary.frames_read, frames_done=summary.frames_done, dropped=summary.dropped,
                     run_first_frame_s=summary.first_frame_s, stopped_by=summary.stopped_by)
    if summary.error and not paced_fps:  # a replay's end reads as "stopped delivering frames"
        log.extra["error"] = summary.error
    return log
