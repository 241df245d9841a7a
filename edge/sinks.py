"""Where a run's results go: every output behind one ``Sink`` interface, and the one place the CLI builds them."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np

from edge.capture import Source
from edge.config import Config
from edge.progress import Progress
from edge.render import EventSink, Window, display_available, frame_sink
from edge.results import FrameResult
from edge.serve import WebView
from edge.summary import SummarySink

log = logging.getLogger(__name__)


class Sink(Protocol):
    """One output of a run: opened once the source is open, handed every frame in order, closed at the end.

    Each frame reaches the sinks drawn (boxes, labels, status panel), with its result; a frame's
    event is ``result.record()`` (built once, shared: read it, never change it). ``write`` and
    ``close`` raise OSError naming the file when an output cannot be written.
    """

    def open(self, source: Source, paced: bool) -> None:
        """The source is open: its name, frame rate, whether it is live or images; ``paced``: read at its own rate."""

    def write(self, frame: np.ndarray, result: FrameResult) -> bool | None:
        """One frame and its result; False asks the run to stop (the window was closed, or q pressed)."""

    def close(self) -> None:
        """Finish the output (also when the run failed, or never opened it)."""


@dataclass(frozen=True)
class Outputs:
    """What a run shows and writes, as the command line asks for it."""

    video: Path | None = None  # --output: annotated video, or image / folder of images for images
    events: Path | None = None  # --events: JSON Lines, or CSV
    summary_dir: Path | None = None  # --summary: per-track emotion summary
    serve: str | None = None  # --serve HOST:PORT
    linger: bool = False  # --serve-linger: serve the last frame after the end until a stop signal
    headless: bool = False  # no window even where a display exists
    quiet: bool = False  # no progress bar


def make_sinks(outputs: Outputs, config: Config, labels: tuple[str, ...], source: str,
               report: Callable[[dict], None], say: Callable[[str], None]) -> list[Sink]:
    """Every sink ``outputs`` asks for, in the order they are written and closed: one row a sink.

    Built in that order: checks first, then what is most likely to fail (a port), then the file that
    is truncated; if one cannot be built, those built already are closed. ``source`` names the
    source in the summary; ``report`` gets the summary once written, ``say`` a line for the user.
    """
    rows: list[tuple[object, Callable[[], Sink]]] = [  # (wanted, how to build it)
        (True, lambda: Progress(quiet=outputs.quiet)),
        (outputs.summary_dir, lambda: SummarySink(outputs.summary_dir, source, report)),
        (outputs.serve, lambda: web_view(outputs.serve, config, labels, say)),
        (outputs.video, lambda: frame_sink(outputs.video, config.render)),
        (outputs.events, lambda: EventSink(outputs.events, labels)),
        (not outputs.headless and window_available(), Window),
    ]
    sinks: list[Sink] = []
    try:
        for wanted, make in rows:
            if wanted:
                sinks.append(make())
    except BaseException:
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.close()
        raise
    return sinks


def web_view(address: str, config: Config, labels: tuple[str, ...], say: Callable[[str], None]) -> WebView:
    view = WebView(address, config.serve, labels, config.render.fps_window_s)
    say(f"web view on {view.url}")
    return view


def window_available() -> bool:
    if display_available():
        return True
    log.info("no display found; running headless")
    return False
