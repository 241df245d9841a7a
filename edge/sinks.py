"""Where a run's results go: the one list of sinks, and what derives from it (flags, outputs, files, the sinks built)."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import Callable

from edge.config import Config
from edge.outputs import Context, Option, Outputs, Sink, SinkKind
from edge.progress import Progress
from edge.render import AnnotatedFrames, EventSink, Window
from edge.serve import WebView
from edge.summary import SummarySink

__all__ = ["SINKS", "Context", "Option", "Outputs", "Sink", "add_options", "close_all", "make_sinks", "named_paths",
           "outputs_of", "written_files"]

# Every sink a run can have, in the order they are built, written and closed: checks first (the
# summary's folder), then what is most likely to fail (a port), then the files that are truncated.
# Each declares its command-line options and builds itself from the outputs asked for: a new sink
# is its module and its line here.
SINKS: list[SinkKind] = [Progress, SummarySink, WebView, AnnotatedFrames, EventSink, Window]


def options() -> list[Option]:
    return [option for kind in SINKS for option in kind.options]


def add_options(parser: argparse.ArgumentParser) -> None:
    """Every sink's options, as the group "outputs" of ``parser``."""
    group = parser.add_argument_group("outputs")
    for option in options():
        if option.type is None:
            group.add_argument(option.flag, dest=option.name, action="store_true", help=option.help)
        else:
            metavar = option.metavar or option.flag.lstrip("-").replace("-", "_").upper()
            group.add_argument(option.flag, dest=option.name, type=option.type, metavar=metavar, help=option.help)


def outputs_of(args: argparse.Namespace) -> Outputs:
    """What the command line asks the run to show and write."""
    return Outputs(**{option.name: getattr(args, option.name) for option in options()})


def written_files(outputs: Outputs, source: list[Path]) -> dict[str, list[Path]]:
    """The files each output flag writes, for a source of these files (``edge.overwrite.check_outputs`` checks them).

    Last-built sink first, so that a clash names the flags as it always has (``--events and --summary``).
    """
    written: dict[str, list[Path]] = {}
    for option in reversed(options()):
        value = getattr(outputs, option.name)
        if option.writes is not None and value is not None:
            written[option.flag] = option.writes(value, source)
    return written


def named_paths(outputs: Outputs) -> list[Path]:
    """The paths the output flags given name (files and folders), in the order of ``written_files``."""
    values = (getattr(outputs, option.name) for option in reversed(options()) if option.writes is not None)
    return [value for value in values if value is not None]


def make_sinks(outputs: Outputs, config: Config, labels: tuple[str, ...], source: str,
               report: Callable[[dict], None], say: Callable[[str], None], plot: bool = True) -> list[Sink]:
    """Every sink ``outputs`` asks for, in the order of ``SINKS``; if one cannot be built, those built already are closed.

    The CLI and edge.batch both build their outputs here. ``labels`` are the model's; ``source``
    names the source in the summary; ``report`` gets the summary once written, ``say`` a line for
    the user; ``plot`` False: the summary draws no timeline.
    """
    context = Context(config, labels, source, report, say, plot)
    unknown = set(outputs.values) - {option.name for option in options()}
    if unknown:
        raise ValueError(f"no sink has the option {sorted(unknown)[0]!r}")
    sinks: list[Sink] = []
    try:
        for kind in SINKS:
            sink = kind.build(outputs, context)
            if sink is not None:
                sinks.append(sink)
    except BaseException:
        for sink in sinks:
            with contextlib.suppress(Exception):
                sink.close()
        raise
    return sinks


def close_all(sinks: list[Sink]) -> None:
    """Close every sink in order, whatever fails; then raise the first failure."""
    failure: BaseException | None = None
    for sink in sinks:
        try:
            sink.close()
        except Exception as exc:  # noqa: BLE001 (re-raised below, once every sink is closed)
            failure = failure or exc
    if failure is not None:
        raise failure
