"""The pipeline: capture thread -> detector process -> classifier process -> renderer, over a shared-memory frame ring.

Its jobs, each in its own piece: the frame ring (``edge.ring``), the workers' processes
(``edge.worker``) and their lifecycle (``edge.supervisor``), results back in order (``InOrder``),
what the run did (``RunStats``); ``Pipeline`` wires them for one source and stops them in order.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generic, Iterator, TypeVar

import numpy as np

from edge.capture import FrameReader, Source, SourceOpener
from edge.channel import Channel
from edge.config import Config
from edge.latency import LatencyStats
from edge.messages import Attach, Classified, EndOfStream, FrameTask, StageError
from edge.model import ModelInfo, load_model_info
from edge.models import resolve_model
from edge.results import Faces, FrameResult
from edge.ring import FrameRing, start_resource_tracker, sweep_stale_rings
from edge.signals import StopReason
from edge.supervisor import PipelineError, StartupError, Supervisor
from edge.watchdog import Watchdog
from edge.worker import QUEUE_WAIT_S, ClassifierWorker, DetectorWorker, Links

log = logging.getLogger(__name__)

__all__ = ["InOrder", "Pipeline", "PipelineError", "RunStats", "StartupError"]

STOP_GRACE_S = 1.5  # after a stop request, the frames in flight get at most this long to come out ...
STOP_IDLE_S = 0.4  # ... and none of them this long to come: then the stages are ended (a stage is stalled)
READER_EXIT_S = 0.3  # ... and the capture thread; one stuck in a source's read is left behind (a daemon thread)
STILL_WATCHDOG_FACTOR = 4.0  # a still image is scanned completely at full resolution: it may take longer
LIVE_MAX_IN_FLIGHT = 2  # frames being processed at once from a live source
STILL_IMAGE_CAPACITY = 4096 * 4096 * 3  # bytes per slot for image folders (sparse until written)


class Stopped(Exception):
    """A stop was requested before the frames began to flow (inside Pipeline.run only)."""


Item = TypeVar("Item")


class InOrder(Generic[Item]):
    """Results come back from the stages as they finish; they go on by sequence number, each once, none skipped."""

    def __init__(self) -> None:
        self.waiting: dict[int, Item] = {}
        self.delivered = 0  # the sequence number of the next result to go on = results gone on so far

    def add(self, seq: int, item: Item) -> Iterator[Item]:
        """The results that can go on now that ``item`` (number ``seq``) has come: none, or it and those after it."""
        self.waiting[seq] = item
        while self.delivered in self.waiting:
            item = self.waiting.pop(self.delivered)
            self.delivered += 1
            yield item


@dataclass
class RunStats:
    """What a run did: frames in and out, drops, how it ended, per-frame latencies."""

    frames_read: int = 0
    frames_done: int = 0
    dropped: int = 0
    frames_with_faces: int = 0
    started: float = 0.0  # perf_counter at Pipeline.run
    first_frame_s: float | None = None  # from run start to the first rendered frame
    elapsed_s: float = 0.0
    stopped_by: StopReason = StopReason.END
    error: str | None = None
    latency: LatencyStats = field(default_factory=LatencyStats)  # per stage, in fixed memory

    @property
    def fps(self) -> float:
        return self.frames_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def add(self, result: FrameResult) -> None:
        """One frame rendered (its stamps complete)."""
        self.frames_done += 1
        self.frames_with_faces += len(result.faces) > 0
        if self.first_frame_s is None:
            self.first_frame_s = result.stamps.rendered - self.started
        self.latency.add(result.latencies_ms())


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
        self.stats = RunStats()
        self._stop = threading.Event()
        self._stop_reason: StopReason | None = None
        self._stopped_at: float | None = None  # perf_counter of the first stop request
        self._hurry = False  # a second stop request: the frames in flight are not waited for
        self._supervisor: Supervisor | None = None
        self._watchdog: Watchdog | None = None
        self._ring: FrameRing | None = None
        self._reader: FrameReader | None = None
        self._to_detector: Channel | None = None
        self._stream_ended = False  # the end-of-stream message came through every stage

    def request_stop(self, reason: StopReason) -> None:
        """Stop after the frames in flight, or at once when asked again (safe from signal handlers)."""
        if self._stopped_at is None:
            self._stopped_at = time.perf_counter()
        else:  # a second Ctrl-C
            self._hurry = True
        if not self._stop_reason:
            self._stop_reason = reason
        self._stop.set()

    def run(self, on_result: OnResult) -> RunStats:
        stats = self.stats
        stats.started = time.perf_counter()
        sweep_stale_rings()
        start_resource_tracker()  # before anything registers with it (the channels' lock)
        ctx = mp.get_context("spawn")
        to_detector, to_classifier, to_main = Channel(ctx), Channel(ctx), Channel(ctx, writers=2)
        self._to_detector = to_detector
        supervisor = self._supervisor = Supervisor(ctx, self._workers(ctx, to_detector, to_classifier, to_main),
                                                   to_main)
        try:
            if self._stop.is_set():  # stopped before it began: nothing to start
                raise Stopped
            supervisor.start()
            to_detector.writing()  # the workers hold the other ends now; a stage's death then reads as EOF or EPIPE
            to_classifier.close()
            to_main.reading()
            self._start_up()
            max_in_flight = LIVE_MAX_IN_FLIGHT if self.source.live else self._ring.slots
            self._reader = FrameReader(self.source, self._ring.buffers, self._send_to_detector, self.config.capture,
                                       self._stop, max_in_flight=max_in_flight, pace=self.pace)
            timeout = self.config.pipeline.watchdog_s * (STILL_WATCHDOG_FACTOR if self.source.still else 1.0)
            self._watchdog = Watchdog(timeout)
            self._reader.start()
            self._consume(on_result)
        except Stopped:
            pass  # stats.stopped_by says why
        finally:
            self._shutdown(to_detector, to_classifier, to_main)
            stats.elapsed_s = time.perf_counter() - stats.started
        return stats

    def _workers(self, ctx: mp.context.BaseContext, to_detector: Channel, to_classifier: Channel,
                 to_main: Channel) -> list[DetectorWorker | ClassifierWorker]:
        """The detector (to_detector -> to_classifier) and the classifier (to_classifier -> to_main)."""
        pid, level = os.getpid(), logging.getLogger().getEffectiveLevel()
        detector = DetectorWorker(Links(to_detector, to_classifier, to_main, pid, ctx.RawValue("q", 0), level),
                                  self.config.detector, self.model_info)
        classifier = ClassifierWorker(Links(to_classifier, to_main, to_main, pid, ctx.RawValue("q", 0), level),
                                      str(self.model_path), self.config.classifier)
        return [detector, classifier]

    def _start_up(self) -> None:
        """Open the source while the workers start, until both are ready; a stop abandons both at any point.

        The source opens on its own thread: an open that blocks (a FIFO with no writer) leaves this
        thread free to take a stop signal.
        """
        opener = None
        if isinstance(self.source_spec, str):
            opener = SourceOpener(self.source_spec, self.config.capture)
            opener.start()
        else:
            self._source_opened(self.source_spec)

        def between() -> None:  # a stop, or the source opened
            if self._stop.is_set():
                raise Stopped
            if self.source is None and (source := opener.result(timeout=0)) is not None:
                self._source_opened(source)

        try:
            self._supervisor.await_ready(self.config.pipeline.startup_timeout_s, between)
            while self.source is None:  # only the source is still opening
                between()
                self._stop.wait(QUEUE_WAIT_S)
        finally:
            if self.source is None and opener is not None:
                opener.abandon()

    def _source_opened(self, source: Source) -> None:
        self.source = source
        self._ring = self._make_ring(source)
        self._send_to_detector(Attach(self._ring.name, self._ring.slots, self._ring.capacity))

    def _make_ring(self, source: Source) -> FrameRing:
        capacity = int(np.prod(source.frame_shape))
        if source.still:
            capacity = max(capacity, STILL_IMAGE_CAPACITY)
        return FrameRing(self.config.capture.ring_slots, capacity)

    def _send_to_detector(self, message: Attach | FrameTask | EndOfStream) -> None:
        """The ring, then the capture thread's frames. A detector that died is reported from its exit code."""
        try:
            self._to_detector.put(message)
        except OSError:  # BrokenPipeError: the detector is gone; or the run has ended and closed the channel
            pass

    def _consume(self, on_result: OnResult) -> None:
        """Results in sequence order to on_result until end of stream, a stop, or a failure."""
        supervisor, reader = self._supervisor, self._reader
        in_order: InOrder[Classified] = InOrder()
        last_result = time.perf_counter()
        while True:
            if self._stop.is_set() and reader.dispatched == in_order.delivered:
                break  # stopping, and every frame handed on is out: nothing left to wait for
            if self._stopped_at is not None and self._stop_waited(last_result):
                log.info("stopping without the frames still in flight (%d)", reader.dispatched - in_order.delivered)
                break
            supervisor.watch(self._watchdog, reader.dispatched)
            try:
                message = supervisor.receive()
            except queue.Empty:
                if self._stop_reason and supervisor.any_ended():
                    break  # stopping anyway, and a worker was killed too (e.g. SIGKILL to the group)
                supervisor.check()
                continue
            match message:
                case Classified(task):
                    last_result = time.perf_counter()
                    for classified in in_order.add(task.seq, message):
                        if not self._deliver(classified, on_result) and not self._stop.is_set():
                            self.request_stop(StopReason.USER)
                case EndOfStream():
                    self._stream_ended = True
                    break
                case StageError(stage, detail):
                    raise PipelineError(f"{stage}: {detail}")
                case _:
                    raise PipelineError(f"unexpected message from the workers: {message!r}")
        if reader.error and not self._stop_reason:
            self.stats.error = reader.error

    def _stop_waited(self, last_result: float) -> bool:
        """Whether a stop has waited long enough for the frames in flight: its grace is over, or none comes."""
        now = time.perf_counter()
        return (self._hurry or now - self._stopped_at >= STOP_GRACE_S
                or now - max(last_result, self._stopped_at) >= STOP_IDLE_S)

    def _deliver(self, classified: Classified, on_result: OnResult) -> bool:
        task = classified.task
        stamps = task.stamps
        stamps.render_start = time.perf_counter()
        frame = self._ring.frame(task.slot, task.shape)
        result = FrameResult(seq=task.seq, index=task.index, timestamp=task.timestamp,
                             faces=Faces(classified.boxes, classified.probs, self.labels), stamps=stamps,
                             name=task.name, dropped=self.dropped)
        try:
            keep_going = on_result(frame, result, self)
        finally:
            del frame
            stamps.rendered = time.perf_counter()
            self._reader.release(task.slot)
        self.stats.add(result)
        return keep_going is not False

    @property
    def paced(self) -> bool:
        """Whether frames are read at the source's own rate."""
        return self._reader is not None and self._reader.pacer is not None

    @property
    def workers(self) -> dict[str, int]:
        """Process name -> pid of the running workers (for monitoring)."""
        return self._supervisor.pids if self._supervisor is not None else {}

    @property
    def dropped(self) -> int:
        return self._reader.dropped if self._reader is not None else 0

    def _shutdown(self, to_detector: Channel, to_classifier: Channel, to_main: Channel) -> None:
        """Stop every stage, end every process, free the shared memory: whatever happened, in bounded time."""
        self._stop.set()
        # Results are no longer read: a worker blocked writing one gets EPIPE and ends (and so does
        # a detector waiting for the classifier), so nothing below waits on the pipes.
        to_main.close()
        self._supervisor.end(self._stream_ended)
        reader_stuck = False
        if self._reader is not None:  # its sends fail at once now that the detector is gone
            self._reader.join(timeout=READER_EXIT_S)
            reader_stuck = self._reader.is_alive()
            self.stats.frames_read = self._reader.frames_read
            self.stats.dropped = self._reader.dropped
        if not reader_stuck:  # (never under a send of the capture thread)
            to_detector.close()
        to_classifier.close()
        if self.source is not None:
            if reader_stuck:  # closing a capture under a read could crash it; the process ends it
                log.info("the capture thread is still waiting for %s; leaving it to end with the process",
                         self.source.name)
            else:
                self.source.close()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._stop_reason and self.stats.stopped_by is StopReason.END:
            self.stats.stopped_by = self._stop_reason
