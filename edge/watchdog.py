"""Watchdog: a stage that holds frames and finishes none of them for too long is stalled."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class StageProgress:
    """What one stage has been handed and has finished, and since when it has been busy without finishing one."""

    handed: int = 0
    done: int = 0
    since: float = 0.0  # clock time of its last finished frame, or of becoming busy


class Watchdog:
    """Reports a stage with frames in flight that has finished none for ``timeout_s``.

    The owner feeds it counts (``update``) as often as it likes; the watchdog only compares them,
    so it is as cheap as a few integer checks and needs nothing from the stages themselves.
    An idle stage (nothing in flight: a paused camera, the end of a file) is never stalled.
    """

    def __init__(self, timeout_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_s = timeout_s
        self.clock = clock
        self.stages: dict[str, StageProgress] = {}
        self._last_look: float | None = None

    def update(self, stage: str, handed: int, done: int) -> None:
        """A stage's counts now: frames handed to it so far, frames it has finished so far."""
        now = self.clock()
        progress = self.stages.get(stage)
        if progress is None:
            self.stages[stage] = StageProgress(handed, done, now)
            return
        if done != progress.done or progress.handed <= progress.done:  # it finished one, or was idle until now
            progress.since = now
        progress.handed, progress.done = handed, done

    def stalled(self) -> tuple[str, float] | None:
        """The stage stalled longest and the seconds since it last finished a frame; None when all move.

        After a long gap since the owner last looked (its own thread was busy, and stages waiting to
        hand it results could not finish any), the clocks restart: the stages are not to blame.
        """
        now = self.clock()
        if self._last_look is not None and now - self._last_look > self.timeout_s / 2:
            for progress in self.stages.values():
                progress.since = now
        self._last_look = now
        waits = [(now - progress.since, stage) for stage, progress in self.stages.items()
                 if progress.handed > progress.done]
        waited, stage = max(waits, default=(0.0, ""))
        return (stage, waited) if stage and waited >= self.timeout_s else None
