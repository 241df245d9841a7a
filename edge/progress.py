"""Progress of a file or folder run on the terminal: frames done of the total, frames/s and ETA, on one line."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from edge.capture import Source
from edge.outputs import Context, Option, Outputs
from edge.results import FrameResult

REDRAW_S = 0.2  # the plain line is redrawn at most this often (tqdm has its own interval, 0.1 s)


def expected_frames(source: Source) -> int | None:
    """How many frames a source gives: a file's frame count from its container, a folder's images; None if unknown."""
    return source.frame_count or None


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, OSError, ValueError):  # no stream, or a closed one
        return False


def sized(stream: TextIO) -> bool:
    """Whether the terminal says how large it is (a pseudo-terminal nobody sized says 0 x 0)."""
    try:
        return min(os.get_terminal_size(stream.fileno())) > 0
    except (AttributeError, OSError, ValueError):
        return False


def duration(seconds: float) -> str:
    """``1:05`` or ``1:02:03``."""
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class PlainBar:
    """The fallback without tqdm: ``clip.mp4: 30/72 frames (42%), 25.3 frames/s, ETA 0:02`` redrawn in place."""

    def __init__(self, stream: TextIO, name: str, total: int | None) -> None:
        self.stream = stream
        self.name = name
        self.total = total
        self.n = 0
        self.first: float | None = None  # perf_counter of the first frame: the rate is over the frames since
        self.drawn = 0.0  # perf_counter of the last redraw; 0 = draw at the next update
        self.width = 0  # characters on the line now

    def text(self, now: float) -> str:
        elapsed = now - self.first if self.first is not None else 0.0
        rate = (self.n - 1) / elapsed if elapsed > 0 else 0.0
        speed = f", {rate:.1f} frames/s" if rate > 0 else ""
        if self.total is None:
            return f"{self.name}: {self.n} frames{speed}"
        total = max(self.total, self.n)  # a container's count can be short
        eta = f", ETA {duration((total - self.n) / rate)}" if rate > 0 else ""
        return f"{self.name}: {self.n}/{total} frames ({self.n / total:.0%}){speed}{eta}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        if now - self.drawn >= REDRAW_S or (self.total is not None and self.n >= self.total):
            self.draw(self.text(now))
            self.drawn = now

    def draw(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = len(text)

    def clear(self) -> None:
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0
            self.drawn = 0.0  # drawn again at the next frame

    def close(self) -> None:
        self.clear()


class Progress:
    """The run's progress bar: ``open`` once the source is open, ``write`` per frame done, ``close`` at the end.

    Only for files and folders (a camera or stream has no end), only on a terminal (stderr, or the
    stream given), never with ``quiet``. tqdm draws it where installed, else a plain line. Log
    lines clear it first, so they never share its line; ``close`` clears it, leaving the terminal
    as it was for the run's report line.
    """

    options = (Option("--quiet", "quiet", "no progress bar for files and folders"),)

    def __init__(self, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = not quiet and is_terminal(self.stream)
        self.bar: Any = None
        self.opened = False
        self._handlers: list[logging.Handler] = []

    @classmethod
    def build(cls, outputs: Outputs, context: Context) -> Progress:
        return cls(quiet=bool(outputs.quiet))

    def open(self, source: Source, paced: bool = False) -> None:
        """Start the bar for this source (the first call only; nothing for live sources)."""
        if self.opened:
            return
        self.opened = True
        if not self.enabled or source.live:
            return
        name, total = Path(source.name).name or source.name, expected_frames(source)
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = PlainBar(self.stream, name, total)
        else:
            size = {"dynamic_ncols": True} if sized(self.stream) else {"ncols": 80, "nrows": 24}  # tqdm draws
            self.bar = tqdm(total=total, desc=name, unit=" frames", file=self.stream, leave=False,  # nothing on 0 x 0
                            mininterval=0.1, **size)
        for handler in logging.getLogger().handlers:  # what logging writes to our terminal clears the bar first
            if isinstance(handler, logging.StreamHandler) and handler.stream is self.stream:
                handler.addFilter(self._before_log)
                self._handlers.append(handler)

    def write(self, frame: np.ndarray | None, result: FrameResult | None) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def _before_log(self, record: logging.LogRecord) -> bool:
        if self.bar is not None:
            self.bar.clear()
        return True

    def close(self) -> None:
        """Clear the bar (safe to call more than once)."""
        for handler in self._handlers:
            handler.removeFilter(self._before_log)
        self._handlers = []
        if self.bar is not None:
            bar, self.bar = self.bar, None
            bar.close()
