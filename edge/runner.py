"""Single-process stage runner: a source's frames through detect, crop and classify in sequence, then tracking."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from edge.capture import Source, open_source
from edge.classify import Classifier
from edge.config import Config
from edge.crop import detect_and_crop
from edge.detect import FaceDetector, make_detector
from edge.models import resolve_model
from edge.results import Faces, FrameResult, Stamps
from edge.track import TrackedLabels

log = logging.getLogger(__name__)


def model_path(config: Config, model: str | Path | None = None) -> Path:
    """The model a run uses: the one named (a shipped model's name or a path), else the config's, else the default."""
    return resolve_model(model or config.classifier.model)


class Stages:
    """The per-frame stages in this process: detect the faces of a frame, crop them as the model asks, classify.

    The multi-process pipeline runs the same stages in their own processes; this is the
    one-process form that batch tasks, the Python API and the benchmarks' sequential loop use.
    """

    def __init__(self, config: Config, model: str | Path | None = None,
                 detector: FaceDetector | None = None, classifier: Classifier | None = None) -> None:
        self.config = config
        self.classifier = classifier if classifier is not None else Classifier(
            model_path(config, model), num_threads=config.classifier.threads, flip=config.classifier.flip)
        self.own_detector = detector is None  # built here from detector.kind, so it can be rebuilt for a new source
        self.detector: FaceDetector = make_detector(config.detector) if detector is None else detector
        self._detector_used = False
        self._no_faces = np.zeros((0, len(self.classifier.labels)), np.float32)

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def reset(self) -> None:
        """A new source begins: a detector that follows faces must not look for the last source's.

        The detector built here is built again (the protocol has no reset; ~16 ms for Haar's two
        cascades); one passed in is the caller's to reset.
        """
        if self.own_detector and self._detector_used:
            self.detector = make_detector(self.config.detector)
            self._detector_used = False

    def faces(self, frame: np.ndarray, still: bool = False, stamps: Stamps | None = None) -> Faces:
        """The faces of one BGR frame (``still``: an independent image, searched whole), classified.

        ``stamps`` receives the detect and classify stage boundaries.
        """
        stamps = Stamps() if stamps is None else stamps
        stamps.detect_start = time.perf_counter()
        self._detector_used = True
        boxes, crops = detect_and_crop(self.detector, frame, self.classifier.info, still=still)
        stamps.detect_end = stamps.classify_start = time.perf_counter()
        probs = self.classifier.classify(crops) if len(crops) else self._no_faces
        stamps.classify_end = time.perf_counter()
        return Faces(boxes, probs, self.labels)


class Runner:
    """One source through the stages in this process, frame by frame: ``for frame, result in runner``.

    Video frames are then tracked and their labels smoothed (``TrackedLabels``), as the CLI shows
    them; images are independent and not tracked. ``track=False`` leaves that to the caller (the
    CLI's Presenter does it). Every frame of a file is processed, in order; the frame yielded is
    the caller's to draw on or keep. The source is opened when iteration starts and closed when
    it ends, is stopped early, or fails. Reads like the CLI's ``Run`` (labels, source, dropped,
    paced), so the CLI's Presenter can present it.
    """

    dropped = 0  # one process reads a frame only when the last is done: nothing is ever dropped
    paced = False

    def __init__(self, source: str | Source, config: Config, model: str | Path | None = None,
                 stages: Stages | None = None, track: bool = True) -> None:
        self.source_spec = source
        self.config = config
        self.stages = stages if stages is not None else Stages(config, model)
        self.track = track
        self.source: Source | None = None
        self.frames_done = 0

    @property
    def labels(self) -> tuple[str, ...]:
        return self.stages.labels

    def __iter__(self) -> Iterator[tuple[np.ndarray, FrameResult]]:
        spec = self.source_spec
        self.source = open_source(spec, self.config.capture) if isinstance(spec, str) else spec
        source = self.source
        self.stages.reset()
        tracks = TrackedLabels(self.config.tracker, self.config.smoothing, self.labels) if self.track else None
        self.frames_done = 0
        index = 0
        try:
            while True:
                stamps = Stamps(read_start=time.perf_counter())
                frame = source.read()
                if frame is None:
                    return
                stamps.captured = time.perf_counter()
                faces = self.stages.faces(frame, still=source.still, stamps=stamps)
                stamps.render_start = time.perf_counter()
                result = FrameResult(seq=index, index=index, timestamp=source.timestamp(index), faces=faces,
                                     stamps=stamps, name=source.current_name())
                if tracks is not None and not source.still:
                    result.faces = tracks.update(result.faces, result.timestamp)
                index += 1
                self.frames_done = index
                yield frame, result
        finally:
            source.close()
