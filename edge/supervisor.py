"""The workers' lifecycle, from the main process: start them, wait until each is ready, watch them, end them."""

from __future__ import annotations

import logging
import queue
import time
from typing import Any, Callable

from edge.channel import Channel
from edge.messages import LogLine, Ready, StageError
from edge.signals import held_back
from edge.watchdog import Watchdog
from edge.worker import QUEUE_WAIT_S, Worker, log_in_main

log = logging.getLogger(__name__)

WORKER_EXIT_S = 0.5  # after the end of the stream came through, workers get this long to end; then they are killed


class PipelineError(RuntimeError):
    """A stage failed while running."""


class StartupError(PipelineError):
    """A stage could not start (e.g. the model cannot be loaded): the input is at fault."""


class Supervisor:
    """The worker processes of one run, and the channel they all report on (``to_main``, read only here).

    Workers are started in order (the detector first), each in its own spawned process named
    ``edge.<stage>``; their log lines are logged here as they come.
    """

    def __init__(self, ctx: Any, workers: list[Worker], to_main: Channel,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.workers = workers
        self.to_main = to_main
        self.clock = clock
        self.processes = [ctx.Process(target=worker.run, name=worker.process_name) for worker in workers]

    def start(self) -> None:
        # With the stop signals blocked (see held_back), so that a Ctrl-C to the process group while
        # they import cannot print their tracebacks.
        with held_back():
            for process in self.processes:
                process.start()

    def await_ready(self, timeout_s: float, between: Callable[[], None] = lambda: None) -> None:
        """Until every worker says it is ready. ``between`` runs between waits (and may raise to abandon the start).

        StartupError when a worker cannot start (the input is at fault); PipelineError when one
        dies or they are not all ready within ``timeout_s``.
        """
        waiting = [worker.name for worker in self.workers]
        deadline = self.clock() + timeout_s
        while waiting:
            between()
            try:
                message = self.receive()
            except queue.Empty:
                self.check()
                if self.clock() > deadline:
                    raise PipelineError(f"{', '.join(sorted(waiting))} did not start in {timeout_s:.0f} s") from None
                continue
            match message:
                case Ready(stage) if stage in waiting:
                    waiting.remove(stage)
                case StageError(stage, detail):
                    raise StartupError(f"{stage}: {detail}")
                case _:
                    raise PipelineError(f"unexpected message while the workers start: {message!r}")

    def receive(self) -> Any:
        """The workers' next message, their log lines logged on the way; queue.Empty after QUEUE_WAIT_S without one."""
        deadline = self.clock() + QUEUE_WAIT_S
        while True:
            try:
                message = self.to_main.get(timeout=max(0.0, deadline - self.clock()))
            except EOFError:  # every worker has ended: the callers' checks say why (without a busy loop)
                time.sleep(QUEUE_WAIT_S)
                raise queue.Empty from None
            if not isinstance(message, LogLine):
                return message
            log_in_main(message)

    def check(self) -> None:
        """PipelineError if a worker has died (a worker that ended cleanly passed the end of the stream on)."""
        for process in self.processes:
            if process.exitcode is not None and process.exitcode != 0:
                raise PipelineError(f"{process.name.removeprefix('edge.')} process died (exit code {process.exitcode})")

    def any_ended(self) -> bool:
        """Whether a worker has exited (the end-of-stream message can no longer arrive)."""
        return any(process.exitcode is not None for process in self.processes)

    def watch(self, watchdog: Watchdog, dispatched: int) -> None:
        """Feed the watchdog each stage's counts (frames handed to it, frames it sent on); a stage holding frames
        that has finished none for the watchdog's timeout is killed, and the run fails (PipelineError)."""
        handed = dispatched
        for worker in self.workers:
            done = worker.links.done.value
            watchdog.update(worker.name, handed, done)
            handed = done
        stalled = watchdog.stalled()
        if stalled is None:
            return
        stage, seconds = stalled
        for worker, process in zip(self.workers, self.processes):
            if worker.name == stage:
                process.kill()
        raise PipelineError(f"{stage} stalled for {seconds:.0f} s")

    @property
    def pids(self) -> dict[str, int]:
        """Process name -> pid of the started workers (for monitoring)."""
        return {p.name: p.pid for p in self.processes if p.pid is not None}

    def end(self, stream_ended: bool) -> None:
        """Workers that passed the end of the stream on end by themselves; the others are killed at once.

        Those hold nothing to save (the outputs are the main process's): a worker may be waiting for
        frames that will not come, stopped (SIGSTOP) or hung, and it ignores SIGTERM (see
        ignore_stop_signals), so SIGKILL.
        """
        deadline = self.clock() + (WORKER_EXIT_S if stream_ended else 0.0)
        for process in self.processes:
            if process.pid is not None:
                process.join(timeout=max(0.0, deadline - self.clock()))
        for process in self.processes:
            if process.is_alive():
                log.info("%s did not stop; killing it", process.name)
                process.kill()
                process.join()
