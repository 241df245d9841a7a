"""A video file delivered like a camera: each frame at its due time, frames the reader was too late for skipped."""

from __future__ import annotations

import time

import numpy as np

from edge.capture import VideoSource
from edge.config import CaptureConfig


class PacedVideoSource(VideoSource):
    """A live source replaying a file at ``fps`` (default: the file's own rate).

    ``read`` sleeps until the next frame is due, as a camera read blocks until the sensor
    delivers. If the reader comes back more than one frame period late, a camera would
    have overwritten the frames it missed: those are skipped (counted in ``skipped``),
    so the pipeline always gets the newest frame.
    """

    def __init__(self, target: str, config: CaptureConfig, fps: float | None = None) -> None:
        super().__init__(target, config, live=True)
        self.fps = fps or self.fps
        self.period_s = 1.0 / self.fps
        self.skipped = 0
        self._t0: float | None = None
        self._next = 0  # index of the next frame to deliver

    def due(self, index: int) -> float:
        return (self._t0 or 0.0) + index * self.period_s

    def read(self, out: np.ndarray | None = None) -> np.ndarray | None:
        now = time.perf_counter()
        if self._t0 is None:
            self._t0 = now
        while now >= self.due(self._next + 1):  # the sensor has already replaced this frame
            if not self.skip():
                return None
            self._next += 1
            self.skipped += 1
        wait = self.due(self._next) - now
        if wait > 0:
            time.sleep(wait)
        self._next += 1
        return super().read(out)

    def reopen(self) -> bool:
        return False  # a replay that reached the end of its file is over
