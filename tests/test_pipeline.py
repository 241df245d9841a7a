"""The pipeline's parts, apart: results back in order, run statistics, and the workers' start-up handshake and
message flow with fake workers in real spawned processes (no OpenCV or LiteRT in them)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import time

import numpy as np
import pytest

from edge.channel import Channel
from edge.messages import END, Classified, EndOfStream, FrameTask, Ready, StageError
from edge.pipeline import InOrder, RunStats
from edge.results import Faces, FrameResult, Stamps
from edge.supervisor import PipelineError, StartupError, Supervisor
from edge.watchdog import Watchdog
from edge.worker import QUEUE_WAIT_S, Links, Worker

CTX = mp.get_context("spawn")


# --- results back in order --------------------------------------------------------------------------------

@pytest.mark.parametrize("arrivals, going_on", [
    ([0, 1, 2, 3, 4], [1, 1, 1, 1, 1]),
    ([4, 3, 2, 1, 0], [0, 0, 0, 0, 5]),
    ([1, 0, 3, 2, 4], [0, 2, 0, 2, 1]),
    ([2, 4, 0, 3, 1], [0, 0, 1, 0, 4]),
])
def test_results_go_on_in_sequence_order_each_once_as_soon_as_every_earlier_one_came(arrivals, going_on):
    in_order: InOrder[str] = InOrder()
    out, counts = [], []
    for seq in arrivals:
        ready = list(in_order.add(seq, f"frame {seq}"))
        out += ready
        counts.append(len(ready))
    assert out == [f"frame {seq}" for seq in range(5)]
    assert counts == going_on
    assert in_order.delivered == 5 and in_order.waiting == {}


def test_a_missing_result_holds_back_the_later_ones():
    in_order: InOrder[int] = InOrder()
    assert list(in_order.add(1, 1)) == [] and list(in_order.add(2, 2)) == []
    assert in_order.delivered == 0 and sorted(in_order.waiting) == [1, 2]
    assert list(in_order.add(0, 0)) == [0, 1, 2]


def test_the_run_stats_count_frames_faces_and_the_first_frame_and_keeps_latencies():
    stats = RunStats(started=100.0)
    labels = ("a", "b")
    for i, boxes in enumerate([[[0, 0, 10, 10]], [], [[1, 1, 9, 9], [20, 20, 30, 30]]]):
        faces = Faces(np.array(boxes).reshape(-1, 4), np.full((len(boxes), 2), 0.5), labels)
        stamps = Stamps(captured=100.5 + i, detect_start=100.6 + i, detect_end=100.7 + i, rendered=101.0 + i)
        stats.add(FrameResult(seq=i, index=i, timestamp=i / 30, faces=faces, stamps=stamps))
    assert (stats.frames_done, stats.frames_with_faces) == (3, 2)
    assert stats.first_frame_s == pytest.approx(1.0)
    detect = stats.latency.summary()["detect"]
    assert detect["count"] == 3 and detect["mean"] == pytest.approx(100.0, rel=1e-3)
    assert stats.latency.summary()["total"]["mean"] == pytest.approx(500.0, rel=1e-3)


# --- fake workers (module level: spawned processes import this module) -----------------------------------

class Echo(Worker):
    """Passes every frame on, stamped."""

    name = "echo"

    def handle(self, message: FrameTask) -> FrameTask:
        message.stamps.detect_start = 1.0
        return message


class Second(Echo):
    name = "second"

    def handle(self, message: FrameTask) -> Classified:
        return Classified(message, np.zeros((0, 4), np.int32), np.zeros((0, 2), np.float32))


class Refuses(Worker):
    name = "refuses"

    def start(self) -> None:
        raise ValueError("model file not found: /nowhere.tflite")


class Dies(Worker):
    name = "dies"

    def start(self) -> None:
        os._exit(7)


class Slow(Worker):
    name = "slow"

    def start(self) -> None:
        time.sleep(30)  # killed by the test before


class Talks(Echo):
    name = "talks"

    def start(self) -> None:
        logging.getLogger("edge.fake").debug("loading the %s model", "fake")
        logging.getLogger("edge.fake").warning("a warning from the worker")

    def handle(self, message: FrameTask) -> FrameTask:
        raise RuntimeError("the stage broke")


class Stalls(Echo):
    name = "stalls"

    def handle(self, message: FrameTask) -> FrameTask:
        time.sleep(30)
        return message


def links(inbox: Channel, outbox: Channel, to_main: Channel, level: int = logging.WARNING) -> Links:
    return Links(inbox, outbox, to_main, os.getpid(), CTX.RawValue("q", 0), level)


def supervised(*kinds: type[Worker], level: int = logging.WARNING) -> tuple[Supervisor, Channel, Channel]:
    """Workers of these kinds chained (first -> ... -> main), started; the supervisor, the first inbox and to_main."""
    channels = [Channel(CTX) for _ in kinds]
    to_main = Channel(CTX, writers=len(kinds))
    outboxes = channels[1:] + [to_main]
    workers = [kind(links(inbox, outbox, to_main, level)) for kind, inbox, outbox in zip(kinds, channels, outboxes)]
    supervisor = Supervisor(CTX, workers, to_main)
    supervisor.start()
    channels[0].writing()
    for channel in channels[1:]:
        channel.close()
    to_main.reading()
    return supervisor, channels[0], to_main


def next_message(supervisor: Supervisor, within_s: float = 30.0) -> object:
    """The workers' next message (their log lines are logged on the way), waiting up to ``within_s``."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return supervisor.receive()
        except queue.Empty:
            if time.monotonic() > deadline:
                raise


def task(seq: int) -> FrameTask:
    return FrameTask(slot=seq % 4, seq=seq, index=seq, timestamp=seq / 30, shape=(2, 2, 3))


@pytest.fixture
def ended():
    """Supervisors to end after the test, whatever it did: no worker outlives it."""
    started: list[Supervisor] = []
    yield started
    for supervisor in started:
        supervisor.end(stream_ended=False)
        assert not any(p.is_alive() for p in supervisor.processes)


def test_ready_workers_pass_frames_and_the_end_of_stream_through_in_order(ended):
    supervisor, first, to_main = supervised(Echo, Second)
    ended.append(supervisor)
    supervisor.await_ready(timeout_s=60)
    for seq in range(20):
        first.put(task(seq))
    first.put(END)
    received = []
    while not isinstance(message := next_message(supervisor), EndOfStream):
        received.append(message)
    assert [m.task.seq for m in received] == list(range(20))
    assert all(isinstance(m, Classified) and m.task.stamps.detect_start == 1.0 for m in received)
    assert [w.links.done.value for w in supervisor.workers] == [20, 20]
    for process in supervisor.processes:  # each ends by itself after the end of the stream (slowly, on a busy machine)
        process.join(30)
    assert [p.exitcode for p in supervisor.processes] == [0, 0]


def test_a_worker_that_cannot_start_is_a_startup_error_naming_the_stage(ended):
    supervisor, _, _ = supervised(Echo, Refuses)
    ended.append(supervisor)
    with pytest.raises(StartupError, match=r"^refuses: model file not found: /nowhere.tflite$"):
        supervisor.await_ready(timeout_s=60)


def test_a_worker_that_dies_while_starting_is_named_with_its_exit_code(ended):
    supervisor, _, _ = supervised(Dies)
    ended.append(supervisor)
    with pytest.raises(PipelineError, match=r"^dies process died \(exit code 7\)$"):
        supervisor.await_ready(timeout_s=60)


def test_workers_that_do_not_start_in_time_are_named(ended):
    supervisor, _, _ = supervised(Slow)
    ended.append(supervisor)
    with pytest.raises(PipelineError, match=r"^slow did not start in 1 s$"):
        supervisor.await_ready(timeout_s=1)
    supervisor.end(stream_ended=False)
    assert supervisor.processes[0].exitcode == -9  # killed: it would have gone on starting


def test_between_runs_while_waiting_and_can_abandon_the_start(ended):
    supervisor, _, _ = supervised(Slow)
    ended.append(supervisor)
    calls = []

    def between() -> None:
        calls.append(time.perf_counter())
        if len(calls) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        supervisor.await_ready(timeout_s=60, between=between)
    assert calls[2] - calls[0] >= 2 * QUEUE_WAIT_S * 0.9  # between the waits for a message, not in a busy loop


def test_a_workers_log_lines_reach_the_main_process_at_its_level(ended, caplog):
    caplog.set_level(logging.DEBUG, logger="edge.fake")
    supervisor, first, _ = supervised(Talks, level=logging.DEBUG)
    ended.append(supervisor)
    supervisor.await_ready(timeout_s=60)  # the start-up's lines come before Ready
    assert [(r.name, r.levelno, r.getMessage(), r.processName) for r in caplog.records if r.name == "edge.fake"] == [
        ("edge.fake", logging.DEBUG, "loading the fake model", "edge.talks"),
        ("edge.fake", logging.WARNING, "a warning from the worker", "edge.talks")]
    first.put(task(0))
    error = next_message(supervisor)  # the failure's traceback is logged first, then reported
    assert error == StageError("talks", "the stage broke")
    failure = [r for r in caplog.records if r.name == "edge.worker"]
    assert len(failure) == 1 and "talks failed" in failure[0].getMessage()
    assert "RuntimeError: the stage broke" in failure[0].getMessage()


def test_a_worker_at_warning_level_sends_no_debug_lines(ended, caplog):
    caplog.set_level(logging.DEBUG)
    supervisor, _, _ = supervised(Talks, level=logging.WARNING)
    ended.append(supervisor)
    supervisor.await_ready(timeout_s=60)
    assert [r.getMessage() for r in caplog.records if r.name == "edge.fake"] == ["a warning from the worker"]


def test_a_stage_holding_frames_too_long_is_killed_by_the_watchdog(ended):
    supervisor, first, _ = supervised(Echo, Stalls)
    ended.append(supervisor)
    supervisor.await_ready(timeout_s=60)
    clock = [0.0]
    watchdog = Watchdog(5.0, clock=lambda: clock[0])
    first.put(task(0))
    deadline = time.monotonic() + 30
    while supervisor.workers[0].links.done.value < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    for now in (0.0, 2.0, 4.0):  # the echo finished its frame; the second stage holds it
        clock[0] = now
        supervisor.watch(watchdog, dispatched=1)
    clock[0] = 6.0
    with pytest.raises(PipelineError, match=r"^stalls stalled for 6 s$"):
        supervisor.watch(watchdog, dispatched=1)
    supervisor.processes[1].join(10)
    assert supervisor.processes[1].exitcode == -9 and supervisor.processes[0].is_alive()


def test_workers_end_by_themselves_when_the_main_process_is_gone():
    """The parent-gone check: a worker whose parent pid is not its parent's ends within its queue wait."""
    inbox, to_main = Channel(CTX), Channel(CTX)
    worker = Echo(Links(inbox, to_main, to_main, parent_pid=1, done=CTX.RawValue("q", 0)))  # pid 1 is not its parent
    process = CTX.Process(target=worker.run)
    process.start()
    inbox.writing()
    to_main.reading()
    assert to_main.get(timeout=60) == Ready("echo")
    process.join(10)
    assert process.exitcode == 0
