"""The pipeline: capture thread -> detector process -> classifier process -> renderer, over a shared-memory frame ring."""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing as mp
import os
import queue
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge.capture import FrameReader, FrameTask, Source, frame_view, open_source
from edge.channel import Channel
from edge.config import ClassifierConfig, Config
from edge.model import ModelInfo, load_model_info
from edge.models import resolve_model
from edge.results import Faces, FrameResult

log = logging.getLogger(__name__)

QUEUE_WAIT_S = 0.2  # every blocking get wakes this often to check the stop flag and the workers
STARTUP_TIMEOUT_S = 60.0  # workers import OpenCV / LiteRT; a cold Raspberry Pi SD card is slow
JOIN_TIMEOUT_S = 3.0
LIVE_MAX_IN_FLIGHT = 2  # frames being processed at once from a live source
STILL_IMAGE_CAPACITY = 4096 * 4096 * 3  # bytes per slot for image folders (sparse until written)
MAX_RECORDED_FRAMES = 100_000  # latency records kept for the summary
SHM_PREFIX = "fer_edge_"


class PipelineError(RuntimeError):
    """A stage failed while running."""


class StartupError(PipelineError):
    """A stage could not start (e.g. the model cannot be loaded): the input is at fault."""


class FrameRing:
    """Frame slots in one shared-memory block; processes pass slot numbers, never pixels."""

    def __init__(self, slots: int, capacity: int, name: str | None = None) -> None:
        self.slots = slots
        self.capacity = capacity  # bytes per slot
        create = name is None
        if create:  # the owner's pid in the name: a leak can be traced to its run
            name = f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        # Workers are spawned children sharing the owner's resource tracker, so attaching
        # needs no tracking fix-up; only the owner unlinks.
        self.shm = shared_memory.SharedMemory(name=name, create=create, size=slots * capacity)
        self.owner = create
        array = np.ndarray((slots, capacity), dtype=np.uint8, buffer=self.shm.buf)
        self.buffers = [array[i] for i in range(slots)]

    @property
    def name(self) -> str:
        return self.shm.name

    def frame(self, slot: int, shape: tuple[int, ...]) -> np.ndarray:
        return frame_view(self.buffers[slot], shape)

    def close(self) -> None:
        self.buffers = []
        try:
            self.shm.close()
        except BufferError:  # a frame view is still alive somewhere; unlink anyway
            log.debug("shared memory %s still referenced at close", self.name)
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


def worker_signals() -> None:
    """Workers leave Ctrl-C and SIGTERM to the main process, which stops them in order.

    Both often reach the whole process group (a terminal, `timeout`, systemd); a worker that
    died of them would turn an orderly stop into a failure. The main process ends its
    workers with the end-of-stream message, and kills any that do not stop; a worker whose
    parent is gone ends by itself.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def parent_gone(parent_pid: int) -> bool:
    return os.getppid() != parent_pid


def report(status: Channel, kind: str, stage: str, detail: str | None) -> None:
    """A status message to the main process, unless it has stopped reading (it is ending the run) or died."""
    with contextlib.suppress(BrokenPipeError):
        status.put((kind, stage, detail))


def received(tasks: Channel, out: Channel, parent_pid: int) -> Iterator[Any]:
    """A worker's inbox: each item until the end of the stream (passed on downstream) or until upstream is gone."""
    while True:
        try:
            item = tasks.get(timeout=QUEUE_WAIT_S)
        except queue.Empty:
            if parent_gone(parent_pid):
                return
            continue
        except EOFError:  # the stage upstream is gone (it died, or the main process did): not an end of stream
            return
        if item is None:
            out.put(None)
            return
        yield item


def detector_main(config: Config, model: ModelInfo,
                  tasks: Channel, out: Channel, status: Channel, parent_pid: int) -> None:
    """Detector process: frame slot -> face boxes and face crops (status messages go to the main process)."""
    worker_signals()
    tasks.reading()
    out.writing()
    status.writing()
    try:
        import cv2

        from edge.crop import detect_and_crop
        from edge.detect import make_detector

        if config.detector.threads > 0:  # 0 keeps OpenCV's default; cv2.setNumThreads(0) would disable threads
            cv2.setNumThreads(config.detector.threads)
        detector = make_detector(config.detector)
        report(status, "ready", "detector", None)
    except Exception as exc:  # report any start-up failure as one line to the main process
        report(status, "error", "detector", str(exc))
        return
    ring: FrameRing | None = None
    try:
        for task in received(tasks, out, parent_pid):
            if isinstance(task, tuple):  # ("ring", name, slots, capacity)
                ring = FrameRing(task[2], task[3], name=task[1])
                continue
            task.stamps["detect_start"] = time.perf_counter()
            frame = ring.frame(task.slot, task.shape)
            boxes, crops = detect_and_crop(detector, frame, model, still=task.still)  # as the model's sidecar says
            task.stamps["detect_end"] = time.perf_counter()
            out.put((task, boxes, crops))
    except BrokenPipeError:
        pass  # the classifier is gone, or the main process ended the run: the main process reports why
    except Exception as exc:
        log.exception("detector failed")
        report(status, "error", "detector", str(exc))
    finally:
        if ring is not None:
            ring.close()


def classifier_main(model_path: str, settings: ClassifierConfig, tasks: Channel, out: Channel,
                    parent_pid: int) -> None:
    """Classifier process: face crops -> probabilities, in label order."""
    worker_signals()
    tasks.reading()
    out.writing()
    try:
        from edge.classify import Classifier

        classifier = Classifier(model_path, num_threads=settings.threads, flip=settings.flip)
        report(out, "ready", "classifier", None)
    except Exception as exc:
        report(out, "error", "classifier", str(exc))
        return
    try:
        for task, boxes, crops in received(tasks, out, parent_pid):
            task.stamps["classify_start"] = time.perf_counter()
            probs = classifier.classify(crops) if len(crops) else np.zeros((0, len(classifier.labels)), np.float32)
            task.stamps["classify_end"] = time.perf_counter()
            out.put((task, boxes, probs))
    except BrokenPipeError:
        pass  # the main process stopped reading results (it is ending the run) or died
    except Exception as exc:
        log.exception("classifier failed")
        report(out, "error", "classifier", str(exc))


@dataclass
class RunSummary:
    """What a run did: frames in and out, drops, how it ended, per-frame latencies."""

    frames_read: int = 0
    frames_done: int = 0
    dropped: int = 0
    faces: int = 0
    frames_with_faces: int = 0
    started: float = 0.0  # perf_counter at Pipeline.run
    first_frame_s: float | None = None  # from run start to the first rendered frame
    elapsed_s: float = 0.0
    stopped_by: str = "end"  # "end", "user", "interrupt", "terminate", "error"
    error: str | None = None
    latencies: collections.deque = field(default_factory=lambda: collections.deque(maxlen=MAX_RECORDED_FRAMES))

    @property
    def fps(self) -> float:
        return self.frames_done / self.elapsed_s if self.elapsed_s > 0 else 0.0


OnResult = Callable[[np.ndarray, FrameResult, "Pipeline"], bool]


class Pipeline:
    """Runs one source through the stages; calls ``on_result(frame, result, pipeline)`` in order.

    ``on_result`` runs in the main process on the frame's own shared-memory pixels (draw on
    them freely) and returns False to stop early.
    """

    def __init__(self, source: str | Source, config: Config, model: str | Path | None = None,
                 pace: bool = False) -> None:
        self.source_spec = source  # what --source says, or an already open Source
        self.pace = pace  # play a video file at its own frame rate (cameras and images never wait)
        self.config = config
        self.model_path = resolve_model(model or config.classifier.model)
        self.model_info: ModelInfo = load_model_info(self.model_path)
        self.labels = self.model_info.labels
        self.source: Source | None = None
        self.summary = RunSummary()
        self._stop = threading.Event()
        self._stop_reason = ""
        self._processes: list[mp.process.BaseProcess] = []
        self._ring: FrameRing | None = None
        self._reader: FrameReader | None = None

    def request_stop(self, reason: str) -> None:
        """Stop after the frames in flight (safe from signal handlers)."""
        if not self._stop_reason:
            self._stop_reason = reason
        self._stop.set()

    def run(self, on_result: OnResult) -> RunSummary:
        summary = self.summary
        summary.started = time.perf_counter()
        ctx = mp.get_context("spawn")
        # det: capture thread -> detector; cls: detector -> classifier; res: both workers -> main.
        det, cls, res = Channel(ctx), Channel(ctx), Channel(ctx, writers=2)
        self._channels = (det, cls, res)
        try:
            self._start_workers(ctx, det, cls, res)
            det.writing()  # the workers hold the other ends now; a stage's death then reads as EOF or EPIPE
            cls.close()
            res.reading()
            spec = self.source_spec
            self.source = open_source(spec, self.config.capture) if isinstance(spec, str) else spec
            self._ring = self._make_ring(self.source)
            self._to_detector(("ring", self._ring.name, self._ring.slots, self._ring.capacity))
            self._wait_ready(res)
            max_in_flight = LIVE_MAX_IN_FLIGHT if self.source.live else self._ring.slots
            self._reader = FrameReader(self.source, self._ring.buffers, self._to_detector, self.config.capture,
                                       self._stop, max_in_flight=max_in_flight, pace=self.pace)
            self._reader.start()
            self._consume(res, on_result)
        finally:
            self._shutdown()
            summary.elapsed_s = time.perf_counter() - summary.started
        return summary

    def _start_workers(self, ctx: Any, det: Channel, cls: Channel, res: Channel) -> None:
        pid = os.getpid()
        info = self.model_info
        self._processes = [
            ctx.Process(target=detector_main, name="edge.detector",
                        args=(self.config, info, det, cls, res, pid)),
            ctx.Process(target=classifier_main, name="edge.classifier",
                        args=(str(self.model_path), self.config.classifier, cls, res, pid)),
        ]
        for process in self._processes:
            process.start()

    def _make_ring(self, source: Source) -> FrameRing:
        capacity = int(np.prod(source.frame_shape))
        if source.still:
            capacity = max(capacity, STILL_IMAGE_CAPACITY)
        slots = self.config.capture.ring_slots
        return FrameRing(slots, capacity)

    def _to_detector(self, message: Any) -> None:
        """The ring, then the capture thread's frames. A detector that died is reported from its exit code."""
        try:
            self._channels[0].put(message)
        except OSError:  # BrokenPipeError: the detector is gone; or the run has ended and closed the channel
            pass

    def _next_result(self, res: Channel) -> Any:
        """The next message from the workers; queue.Empty after QUEUE_WAIT_S without one."""
        try:
            return res.get(timeout=QUEUE_WAIT_S)
        except EOFError:  # both workers have ended: the callers' checks say why (without a busy loop)
            time.sleep(QUEUE_WAIT_S)
            raise queue.Empty from None

    def _wait_ready(self, res: Channel) -> None:
        """Both workers report ready (or their start-up error) before the first frame is read."""
        waiting = {"detector", "classifier"}
        deadline = time.perf_counter() + STARTUP_TIMEOUT_S
        while waiting:
            try:
                message = self._next_result(res)
            except queue.Empty:
                self._check_workers()
                if self._stop.is_set():
                    raise PipelineError(f"stopped during start-up ({self._stop_reason})")
                if time.perf_counter() > deadline:
                    raise PipelineError(f"{', '.join(sorted(waiting))} did not start in {STARTUP_TIMEOUT_S:.0f} s")
                continue
            kind, stage, detail = message
            if kind == "error":
                raise StartupError(f"{stage}: {detail}")
            waiting.discard(stage)

    def _check_workers(self) -> None:
        for process in self._processes:
            if process.exitcode is not None and process.exitcode != 0:
                raise PipelineError(f"{process.name} process died (exit code {process.exitcode})")

    def _workers_ended(self) -> bool:
        """Whether a worker has exited (the end-of-stream message can no longer arrive)."""
        return any(process.exitcode is not None for process in self._processes)

    def _consume(self, res: Channel, on_result: OnResult) -> None:
        """Results in sequence order to on_result until end of stream, a stop, or a failure."""
        summary = self.summary
        waiting: dict[int, tuple[FrameTask, np.ndarray, np.ndarray]] = {}
        next_seq = 0
        stopping = False
        while True:
            try:
                message = self._next_result(res)
            except queue.Empty:
                if self._stop_reason and self._workers_ended():
                    break  # stopping anyway, and a worker was killed too (e.g. SIGKILL to the group)
                self._check_workers()
                if self._stop.is_set() and not stopping:
                    stopping = True  # the reader ends the stream; results in flight still arrive
                continue
            if message is None:
                break
            if isinstance(message[0], str):
                raise PipelineError(f"{message[1]}: {message[2]}")
            task = message[0]
            waiting[task.seq] = message
            while next_seq in waiting:
                task, boxes, probs = waiting.pop(next_seq)
                next_seq += 1
                if not self._deliver(task, boxes, probs, on_result) and not stopping:
                    self.request_stop("user")
                    stopping = True
        if self._reader is not None and self._reader.error and not self._stop_reason:
            summary.error = self._reader.error

    def _deliver(self, task: FrameTask, boxes: np.ndarray, probs: np.ndarray, on_result: OnResult) -> bool:
        summary = self.summary
        stamps = task.stamps
        stamps["render_start"] = time.perf_counter()
        frame = self._ring.frame(task.slot, task.shape)
        result = FrameResult(seq=task.seq, index=task.index, timestamp=task.timestamp,
                             faces=Faces(boxes, probs, self.labels), stamps=stamps, name=task.name)
        try:
            keep_going = on_result(frame, result, self)
        finally:
            del frame
            stamps["rendered"] = time.perf_counter()
            self._reader.release(task.slot)
        summary.frames_done += 1
        summary.faces += len(boxes)
        summary.frames_with_faces += len(boxes) > 0
        if summary.first_frame_s is None:
            summary.first_frame_s = stamps["rendered"] - summary.started
        summary.latencies.append(result.latencies_ms())
        return keep_going is not False

    @property
    def paced(self) -> bool:
        """Whether frames are read at the source's own rate."""
        return self._reader is not None and self._reader.pacer is not None

    @property
    def workers(self) -> dict[str, int]:
        """Process name -> pid of the running workers (for monitoring)."""
        return {p.name: p.pid for p in self._processes if p.pid is not None}

    @property
    def dropped(self) -> int:
        return self._reader.dropped if self._reader is not None else 0

    def _shutdown(self) -> None:
        """Stop every stage, end every process, free the shared memory: whatever happened."""
        self._stop.set()
        det, cls, res = self._channels
        # Results are no longer read: a worker blocked writing one gets EPIPE and ends (and so does
        # a detector waiting for the classifier), so the joins below do not wait on the pipes.
        res.close()
        if self._reader is not None:
            self._reader.join(timeout=JOIN_TIMEOUT_S)
            self.summary.frames_read = self._reader.frames_read
            self.summary.dropped = self._reader.dropped
        if self._reader is None or not self._reader.is_alive():  # (not under a send of the capture thread)
            det.close()  # the detector reads on to the reader's end of stream, or to EOF without a reader
        cls.close()
        for process in self._processes:
            process.join(timeout=JOIN_TIMEOUT_S)
        for process in self._processes:
            if process.is_alive():
                log.warning("%s did not stop; terminating it", process.name)
                process.terminate()
                process.join(timeout=JOIN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
        if self.source is not None:
            self.source.close()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._stop_reason and self.summary.stopped_by == "end":
            self.summary.stopped_by = self._stop_reason
