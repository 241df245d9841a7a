"""What a sink is and declares: the ``Sink`` interface, its command-line options, and the outputs a run asked for."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Protocol

import numpy as np

from edge.capture import Source
from edge.config import Config
from edge.results import FrameResult


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


Written = Callable[[Any, list[Path]], list[Path]]  # (the option's value, the source's files) -> the files it writes


@dataclass(frozen=True)
class Option:
    """One command-line option of a sink: ``--flag``, its value's name in ``Outputs``, and how argparse reads it.

    ``type`` None makes a switch (``store_true``). ``writes``, for an option naming files, gives the
    files it writes, so that no output can be an input file or another output (edge/overwrite.py).
    """

    flag: str
    name: str
    help: str
    type: Callable[[str], Any] | None = None
    metavar: str | None = None
    writes: Written | None = None


@dataclass(frozen=True)
class Context:
    """What building a sink may need besides the outputs asked for."""

    config: Config
    labels: tuple[str, ...]  # the model's labels
    source: str  # the source as named (--source), for what a sink writes about it
    report: Callable[[dict], None]  # receives the --summary summary once written
    say: Callable[[str], None]  # a line for the user (stderr)
    plot: bool = True  # the summary draws its timeline.png (where matplotlib is installed): the batch's --no-plot


class SinkKind(Protocol):
    """A row of ``edge.sinks.SINKS``: its options, and its sink built from the outputs (None: not asked for)."""

    options: ClassVar[tuple[Option, ...]]

    def build(self, outputs: Outputs, context: Context) -> Sink | None: ...


class Outputs:
    """What a run shows and writes, as the command line asks for it: a value per sink option, by its name.

    ``Outputs(video=Path("out.mp4"), headless=True)``; read as attributes (``outputs.video``); an
    option not given reads None. Which names exist is the sinks' to say: ``edge.sinks.make_sinks``
    refuses a name no sink declares.
    """

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "values", MappingProxyType(dict(values)))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "values":  # copy and pickle probe for these (before __init__)
            raise AttributeError(name)
        return self.values.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Outputs is read-only")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Outputs) and dict(self.values) == dict(other.values)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.values.items())))

    def __repr__(self) -> str:
        return f"Outputs({', '.join(f'{k}={v!r}' for k, v in self.values.items())})"
