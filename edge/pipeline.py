"""The pipeline: capture thread -> detector process -> classifier process -> renderer, over a shared-memory frame ring."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from edge.capture import FrameReader, FrameTask, Source, SourceOpener, frame_view
from edge.channel import Channel
from edge.config import ClassifierConfig, Config
from edge.latency import LatencyStats
from edge.model import ModelInfo, load_model_info
from edge.models import resolve_model
from edge.results import Faces, FrameResult
from edge.signals import held_back, ignore_stop_signals
from edge.watchdog import Watchdog

log = logging.getLogger(__name__)

QUEUE_WAIT_S = 0.2  # every blocking get wakes this often to check the stop flag, the workers and the watchdog
STOP_GRACE_S = 1.5  # after a stop request, the frames in flight get at most this long to come out ...
STOP_IDLE_S = 0.4  # ... and none of them this long to come: then the stages are ended (a stage is stalled)
WORKER_EXIT_S = 0.5  # after the end of the stream came through, workers get this long to end; then they are killed
READER_EXIT_S = 0.3  # ... and the capture thread; one stuck in a source's read is left behind (a daemon thread)
STILL_WATCHDOG_FACTOR = 4.0  # a still image is scanned completely at full resolution: it may take longer
LIVE_MAX_IN_FLIGHT = 2  # frames being processed at once from a live source
STILL_IMAGE_CAPACITY = 4096 * 4096 * 3  # bytes per slot for image folders (sparse until written)
SHM_PREFIX = "fer_edge_"
SHM_FOLDER = Path("/dev/shm")  # where Linux keeps POSIX shared memory (macOS has no such folder)
RING_NAME = re.compile(re.escape(SHM_PREFIX) + r"(\d+)_[0-9a-f]+")
DETECTOR, CLASSIFIER = 0, 1  # slots of the workers' progress counters
TRACKER_WARNINGS = "ignore::UserWarning:multiprocessing.resource_tracker"  # its "leaked objects" lines


class PipelineError(RuntimeError):
    """A stage failed while running."""


class StartupError(PipelineError):
    """A stage could not start (e.g. the model cannot be loaded): the input is at fault."""


class Stopped(Exception):
    """A stop was requested before the frames began to flow (inside Pipeline.run only)."""


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


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale_rings(folder: Path = SHM_FOLDER) -> list[str]:
    """Free the frame rings of runs whose main process is gone; their names.

    A run frees its ring on every path it can see; a SIGKILL of every process at once (the
    multiprocessing resource tracker included) leaves it in shared memory, and only the pid in
    its name says whose it was.
    """
    freed = []
    for path in folder.glob(f"{SHM_PREFIX}*") if folder.is_dir() else ():
        match = RING_NAME.fullmatch(path.name)
        if match is None or pid_alive(int(match[1])):
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            path.unlink()
            freed.append(path.name)
    if freed:
        log.info("freed %d frame ring(s) left by runs that were killed: %s", len(freed), ", ".join(freed))
    return freed


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (it frees the ring if this process is killed) with SIGHUP blocked.

    It ignores SIGINT and SIGTERM itself, but a closed terminal's SIGHUP would kill it, and the
    run would then print its "process died unexpectedly" warnings. When it frees what a killed
    run left, it does so without its "leaked objects" warnings: freeing them is its job. (Starting
    it unblocks SIGINT and SIGTERM in this thread, so it is started before the workers, not while.)
    """
    previous = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (previous, TRACKER_WARNINGS)))
    try:
        with held_back():
            resource_tracker.ensure_running()
    finally:
        if previous is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = previous


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
                  tasks: Channel, out: Channel, status: Channel, parent_pid: int, progress: Any) -> None:
    """Detector process: frame slot -> face boxes and face crops (status messages go to the main process)."""
    ignore_stop_signals()
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
            progress[DETECTOR] += 1  # for the main process's watchdog (this process alone writes it)
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
                    parent_pid: int, progress: Any) -> None:
    """Classifier process: face crops -> probabilities, in label order."""
    ignore_stop_signals()
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
            progress[CLASSIFIER] += 1
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
    stopped_by: str = "end"  # "end", "user", or a stop signal's reason: "interrupt", "terminate", "hangup"
    error: str | None = None
    latency: LatencyStats = field(default_factory=LatencyStats)  # per stage, in fixed memory

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
        self._stopped_at: float | None = None  # perf_counter of the first stop request
        self._hurry = False  # a second stop request: the frames in flight are not waited for
        self._processes: list[mp.process.BaseProcess] = []
        self._progress: Any = None  # frames finished by the detector and the classifier (shared counters)
        self._watchdog: Watchdog | None = None
        self._ring: FrameRing | None = None
        self._reader: FrameReader | None = None
        self._stream_ended = False  # the end-of-stream message came through every stage

    def request_stop(self, reason: str) -> None:
        """Stop after the frames in flight, or at once when asked again (safe from signal handlers)."""
        if self._stopped_at is None:
            self._stopped_at = time.perf_counter()
        else:  # a second Ctrl-C
            self._hurry = True
        if not self._stop_reason:
            self._stop_reason = reason
        self._stop.set()

    def run(self, on_result: OnResult) -> RunSummary:
        summary = self.summary
        summary.started = time.perf_counter()
        sweep_stale_rings()
        start_resource_tracker()  # before anything registers with it (the channels' lock)
        ctx = mp.get_context("spawn")
        # det: capture thread -> detector; cls: detector -> classifier; res: both workers -> main.
        det, cls, res = Channel(ctx), Channel(ctx), Channel(ctx, writers=2)
        self._channels = (det, cls, res)
        try:
            if self._stop.is_set():  # stopped before it began: nothing to start
                raise Stopped
            self._start_workers(ctx, det, cls, res)
            det.writing()  # the workers hold the other ends now; a stage's death then reads as EOF or EPIPE
            cls.close()
            res.reading()
            self._start_up(res)
            max_in_flight = LIVE_MAX_IN_FLIGHT if self.source.live else self._ring.slots
            self._reader = FrameReader(self.source, self._ring.buffers, self._to_detector, self.config.capture,
                                       self._stop, max_in_flight=max_in_flight, pace=self.pace)
            timeout = self.config.pipeline.watchdog_s * (STILL_WATCHDOG_FACTOR if self.source.still else 1.0)
            self._watchdog = Watchdog(timeout)
            self._reader.start()
            self._consume(res, on_result)
        except Stopped:
            pass  # summary.stopped_by says why
        finally:
            self._shutdown()
            summary.elapsed_s = time.perf_counter() - summary.started
        return summary

    def _start_workers(self, ctx: Any, det: Channel, cls: Channel, res: Channel) -> None:
        pid = os.getpid()
        info = self.model_info
        self._progress = ctx.RawArray("q", 2)
        self._processes = [
            ctx.Process(target=detector_main, name="edge.detector",
                        args=(self.config, info, det, cls, res, pid, self._progress)),
            ctx.Process(target=classifier_main, name="edge.classifier",
                        args=(str(self.model_path), self.config.classifier, cls, res, pid, self._progress)),
        ]
        # Workers start with the stop signals blocked (see held_back), so a Ctrl-C to the process group
        # while they import cannot print their tracebacks.
        with held_back():
            for process in self._processes:
                process.start()

    def _start_up(self, res: Channel) -> None:
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
        waiting = {"detector", "classifier"}
        deadline = time.perf_counter() + self.config.pipeline.startup_timeout_s
        try:
            while waiting or self.source is None:
                if self._stop.is_set():
                    raise Stopped
                if self.source is None and (source := opener.result(timeout=0)) is not None:
                    self._source_opened(source)
                if not waiting:
                    self._stop.wait(QUEUE_WAIT_S)  # only the source is still opening
                    continue
                try:
                    message = self._next_result(res)
                except queue.Empty:
                    self._check_workers()
                    if time.perf_counter() > deadline:
                        timeout = self.config.pipeline.startup_timeout_s
                        raise PipelineError(f"{', '.join(sorted(waiting))} did not start in {timeout:.0f} s") from None
                    continue
                kind, stage, detail = message
                if kind == "error":
                    raise StartupError(f"{stage}: {detail}")
                waiting.discard(stage)
        finally:
            if self.source is None and opener is not None:
                opener.abandon()

    def _source_opened(self, source: Source) -> None:
        self.source = source
        self._ring = self._make_ring(source)
        self._to_detector(("ring", self._ring.name, self._ring.slots, self._ring.capacity))

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

    def _check_workers(self) -> None:
        for process in self._processes:
            if process.exitcode is not None and process.exitcode != 0:
                raise PipelineError(f"{process.name.removeprefix('edge.')} process died (exit code {process.exitcode})")

    def _workers_ended(self) -> bool:
        """Whether a worker has exited (the end-of-stream message can no longer arrive)."""
        return any(process.exitcode is not None for process in self._processes)

    def _watch(self) -> None:
        """The watchdog: a stage holding frames that finishes none for watchdog_s is killed, and the run fails."""
        progress = self._progress
        self._watchdog.update("detector", self._reader.dispatched, progress[DETECTOR])
        self._watchdog.update("classifier", progress[DETECTOR], progress[CLASSIFIER])
        stalled = self._watchdog.stalled()
        if stalled is None:
            return
        stage, seconds = stalled
        for process in self._processes:
            if process.name == f"edge.{stage}":
                process.kill()
        raise PipelineError(f"{stage} stalled for {seconds:.0f} s")

    def _consume(self, res: Channel, on_result: OnResult) -> None:
        """Results in sequence order to on_result until end of stream, a stop, or a failure."""
        summary = self.summary
        waiting: dict[int, tuple[FrameTask, np.ndarray, np.ndarray]] = {}
        next_seq = 0
        last_result = time.perf_counter()
        while True:
            if self._stop.is_set() and self._reader.dispatched == next_seq:
                break  # stopping, and every frame handed on is out: nothing left to wait for
            if self._stopped_at is not None and self._stop_waited(last_result):
                log.info("stopping without the frames still in flight (%d)", self._reader.dispatched - next_seq)
                break
            self._watch()
            try:
                message = self._next_result(res)
            except queue.Empty:
                if self._stop_reason and self._workers_ended():
                    break  # stopping anyway, and a worker was killed too (e.g. SIGKILL to the group)
                self._check_workers()
                continue
            if message is None:
                self._stream_ended = True
                break
            if isinstance(message[0], str):
                raise PipelineError(f"{message[1]}: {message[2]}")
            task = message[0]
            last_result = time.perf_counter()
            waiting[task.seq] = message
            while next_seq in waiting:
                task, boxes, probs = waiting.pop(next_seq)
                next_seq += 1
                if not self._deliver(task, boxes, probs, on_result) and not self._stop.is_set():
                    self.request_stop("user")
        if self._reader is not None and self._reader.error and not self._stop_reason:
            summary.error = self._reader.error

    def _stop_waited(self, last_result: float) -> bool:
        """Whether a stop has waited long enough for the frames in flight: its grace is over, or none comes."""
        now = time.perf_counter()
        return (self._hurry or now - self._stopped_at >= STOP_GRACE_S
                or now - max(last_result, self._stopped_at) >= STOP_IDLE_S)

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
        summary.latency.add(result.latencies_ms())
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
        """Stop every stage, end every process, free the shared memory: whatever happened, in bounded time."""
        self._stop.set()
        det, cls, res = self._channels
        # Results are no longer read: a worker blocked writing one gets EPIPE and ends (and so does
        # a detector waiting for the classifier), so nothing below waits on the pipes.
        res.close()
        self._end_workers()
        reader_stuck = False
        if self._reader is not None:  # its sends fail at once now that the detector is gone
            self._reader.join(timeout=READER_EXIT_S)
            reader_stuck = self._reader.is_alive()
            self.summary.frames_read = self._reader.frames_read
            self.summary.dropped = self._reader.dropped
        if not reader_stuck:  # (never under a send of the capture thread)
            det.close()
        cls.close()
        if self.source is not None:
            if reader_stuck:  # closing a capture under a read could crash it; the process ends it
                log.info("the capture thread is still waiting for %s; leaving it to end with the process",
                         self.source.name)
            else:
                self.source.close()
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._stop_reason and self.summary.stopped_by == "end":
            self.summary.stopped_by = self._stop_reason

    def _end_workers(self) -> None:
        """Workers that passed the end of the stream on end by themselves; the others are killed at once.

        Those hold nothing to save (the outputs are the main process's): a worker may be waiting for
        frames that will not come, stopped (SIGSTOP) or hung, and it ignores SIGTERM (see
        ignore_stop_signals), so SIGKILL.
        """
        deadline = time.perf_counter() + (WORKER_EXIT_S if self._stream_ended else 0.0)
        for process in self._processes:
            process.join(timeout=max(0.0, deadline - time.perf_counter()))
        for process in self._processes:
            if process.is_alive():
                log.info("%s did not stop; killing it", process.name)
                process.kill()
                process.join()
