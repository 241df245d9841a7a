"""Stage processes: the worker frame (signals, logging to the main process, parent-gone check, inbox loop) and its two stages.

A stage is a ``Worker`` subclass with a ``name``, a ``start`` that loads what it needs (an
exception there is reported as a ``StageError``, the main process's ``StartupError``), and a
``handle`` that turns each message of its inbox into the one it sends on (or None). The frame
around it is the same for every stage, as Frigate's process class is for its detectors:

- the stop signals are ignored (the main process alone stops a run, see ``ignore_stop_signals``);
- the stage's log records go to the main process (``LogLine``) and are logged there, so
  ``--log-level DEBUG`` shows what the workers do, in the main process's format;
- it says ``Ready`` once started, passes the end of the stream on and ends with it, and ends by
  itself when the stage upstream or the main process is gone;
- each frame it sends on is counted in ``links.done``, for the main process's watchdog.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import time
from dataclasses import dataclass
from typing import Any, Iterator

import cv2
import numpy as np

from edge.channel import Channel
from edge.classify import Classifier
from edge.config import ClassifierConfig, DetectorConfig
from edge.crop import detect_and_crop
from edge.detect import FaceDetector, make_detector
from edge.messages import Attach, Classified, Detected, EndOfStream, FrameTask, LogLine, Ready, StageError
from edge.model import ModelInfo
from edge.ring import FrameRing
from edge.signals import ignore_stop_signals

log = logging.getLogger(__name__)

QUEUE_WAIT_S = 0.2  # a worker's blocking get wakes this often to see whether the main process is still there


@dataclass
class Links:
    """A worker's channels and what it knows of the main process (it travels to the spawned process)."""

    inbox: Channel
    outbox: Channel  # the next stage's inbox; the last stage's is to_main
    to_main: Channel  # Ready, StageError and LogLine (and, from the last stage, its results)
    parent_pid: int
    done: Any  # a shared counter (multiprocessing RawValue "q"): frames this stage has sent on
    log_level: int = logging.WARNING  # the main process's


class Worker:
    """One stage in its own process: ``run`` is the process's body; subclasses give ``start`` and ``handle``."""

    name = ""  # the stage: "detector", "classifier"

    def __init__(self, links: Links) -> None:
        self.links = links

    @property
    def process_name(self) -> str:
        return f"edge.{self.name}"

    def start(self) -> None:
        """Load what the stage needs (models, cascades); an exception is the stage's start-up error."""

    def handle(self, message: Any) -> Any | None:
        """The message to send on for one from the inbox (None: nothing to send)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what ``start`` and ``handle`` took (e.g. the frame ring's mapping)."""

    def run(self) -> None:
        links = self.links
        ignore_stop_signals()
        links.inbox.reading()
        links.outbox.writing()
        links.to_main.writing()
        log_to_main(links.to_main, links.log_level, self.process_name)
        try:
            self.start()
        except Exception as exc:  # any start-up failure, as one line to the main process
            self.tell(StageError(self.name, str(exc)))
            return
        self.tell(Ready(self.name))
        try:
            for message in self.inbox():
                sent = self.handle(message)
                if sent is not None:
                    links.done.value += 1  # only this process writes it
                    links.outbox.put(sent)
        except BrokenPipeError:
            pass  # the stage downstream is gone, or the main process ended the run: the main process says why
        except Exception as exc:
            log.exception("%s failed", self.name)
            self.tell(StageError(self.name, str(exc)))
        finally:
            self.close()

    def inbox(self) -> Iterator[Any]:
        """Each message until the end of the stream (passed on downstream) or until upstream is gone."""
        links = self.links
        while True:
            try:
                message = links.inbox.get(timeout=QUEUE_WAIT_S)
            except queue.Empty:
                if os.getppid() != links.parent_pid:  # the main process is gone
                    return
                continue
            except EOFError:  # the stage upstream is gone (it died, or the main process did): not an end of stream
                return
            if isinstance(message, EndOfStream):
                links.outbox.put(message)
                return
            yield message

    def tell(self, message: Ready | StageError) -> None:
        """A status message to the main process, unless it has stopped reading (it is ending the run) or died."""
        with contextlib.suppress(BrokenPipeError):
            self.links.to_main.put(message)


class DetectorWorker(Worker):
    """The detector process: frame slot -> face boxes and the model's crops of them."""

    name = "detector"

    def __init__(self, links: Links, config: DetectorConfig, model: ModelInfo) -> None:
        super().__init__(links)
        self.config = config
        self.model = model
        self.ring: FrameRing | None = None  # once attached
        self.detector: FaceDetector | None = None

    def start(self) -> None:
        if self.config.threads > 0:  # 0 keeps OpenCV's default; cv2.setNumThreads(0) would disable threads
            cv2.setNumThreads(self.config.threads)
        self.detector = make_detector(self.config)

    def handle(self, message: Attach | FrameTask) -> Detected | None:
        match message:
            case FrameTask(stamps=stamps) as task:
                stamps.detect_start = time.perf_counter()
                frame = self.ring.frame(task.slot, task.shape)
                boxes, crops = detect_and_crop(self.detector, frame, self.model, still=task.still)
                stamps.detect_end = time.perf_counter()
                return Detected(task, boxes, crops)
            case Attach(ring, slots, capacity):
                self.ring = FrameRing(slots, capacity, name=ring)
                return None
        raise TypeError(f"the detector takes Attach and FrameTask messages, got {message!r}")

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()


class ClassifierWorker(Worker):
    """The classifier process: face crops -> probabilities, in label order."""

    name = "classifier"

    def __init__(self, links: Links, model_path: str, settings: ClassifierConfig) -> None:
        super().__init__(links)
        self.model_path = model_path
        self.settings = settings
        self.classifier: Classifier | None = None

    def start(self) -> None:
        self.classifier = Classifier(self.model_path, num_threads=self.settings.threads, flip=self.settings.flip)
        self.no_faces = np.zeros((0, len(self.classifier.labels)), np.float32)

    def handle(self, message: Detected) -> Classified:
        match message:
            case Detected(task, boxes, crops):
                task.stamps.classify_start = time.perf_counter()
                probs = self.classifier.classify(crops) if len(crops) else self.no_faces
                task.stamps.classify_end = time.perf_counter()
                return Classified(task, boxes, probs)
        raise TypeError(f"the classifier takes Detected messages, got {message!r}")


class ToMain(logging.Handler):
    """A worker's log records, sent to the main process as LogLine messages."""

    def __init__(self, channel: Channel, process: str) -> None:
        super().__init__()
        self.channel = channel
        self.process = process

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            self.channel.put(LogLine(record.name, record.levelno, message, self.process))
        except (OSError, ValueError, TypeError):  # the main process stopped reading (it is ending the run)
            pass


def log_to_main(channel: Channel, level: int, process: str) -> None:
    """In a worker: every log record at ``level`` or above goes to the main process, and nowhere else."""
    root = logging.getLogger()
    root.handlers[:] = [ToMain(channel, process)]
    root.setLevel(level)


def log_in_main(line: LogLine) -> None:
    """In the main process: a worker's log record, logged as if it were this process's own."""
    logger = logging.getLogger(line.logger)
    if logger.isEnabledFor(line.level):
        record = logger.makeRecord(line.logger, line.level, "(worker)", 0, line.message, (), None)
        record.processName = line.process
        logger.handle(record)
