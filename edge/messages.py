"""Messages between the pipeline's processes: one small dataclass per kind, told apart with ``match``.

Where each goes (the channels are named for their destination):

- ``to_detector`` (capture thread -> detector): ``Attach`` once, then ``FrameTask`` per frame, then ``EndOfStream``.
- ``to_classifier`` (detector -> classifier): ``Detected`` per frame, then ``EndOfStream``.
- ``to_main`` (both workers -> main process): ``Ready`` or ``StageError`` from each at start-up,
  ``Classified`` per frame and ``EndOfStream`` from the classifier, ``StageError`` when a stage fails,
  and ``LogLine`` whenever a worker logs.

Pixels never travel: a frame is a slot number in the shared-memory ring (``edge.ring``).
"""

from __future__ import annotations

import dataclasses
import operator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from edge.results import Stamps

MessageClass = TypeVar("MessageClass", bound=type)


def pickled_as_values(cls: MessageClass) -> MessageClass:
    """Pickle instances as their class and field values, as cheaply as a tuple (a dataclass's default is its
    state dictionary, rebuilt attribute by attribute): every frame sends three of these between processes."""
    names = [f.name for f in dataclasses.fields(cls)]
    values = operator.attrgetter(*names) if len(names) > 1 else lambda message: tuple(getattr(message, n) for n in names)
    cls.__reduce__ = lambda message: (cls, values(message))
    return cls


@pickled_as_values
@dataclass(frozen=True, slots=True)
class Attach:
    """Main -> detector, before the first frame: the shared-memory frame ring the frames will be in."""

    ring: str  # its shared-memory name
    slots: int
    capacity: int  # bytes per slot


@pickled_as_values
@dataclass
class FrameTask:
    """A captured frame as it travels between stages: where its pixels are, never the pixels.

    The one mutable message: each stage adds its own ``stamps`` as the frame passes.
    """

    slot: int
    seq: int  # set when dispatched: consecutive over the frames that are processed
    index: int  # frame number in the source
    timestamp: float
    shape: tuple[int, ...]
    still: bool = False
    name: str = ""
    stamps: Stamps = field(default_factory=Stamps)


@pickled_as_values
@dataclass(frozen=True, slots=True)
class Detected:
    """Detector -> classifier: a frame's face boxes (n, 4) and the model's crops of them."""

    task: FrameTask
    boxes: np.ndarray
    crops: np.ndarray


@pickled_as_values
@dataclass(frozen=True, slots=True)
class Classified:
    """Classifier -> main: a frame's face boxes (n, 4) and their probabilities (n, classes) in label order."""

    task: FrameTask
    boxes: np.ndarray
    probs: np.ndarray


@pickled_as_values
@dataclass(frozen=True, slots=True)
class EndOfStream:
    """After the last frame; each stage passes it on downstream and ends."""


@pickled_as_values
@dataclass(frozen=True, slots=True)
class Ready:
    """Worker -> main: the stage has started (its model is loaded) and takes frames."""

    stage: str


@pickled_as_values
@dataclass(frozen=True, slots=True)
class StageError:
    """Worker -> main: the stage could not start, or failed while running; ``detail`` is one line."""

    stage: str
    detail: str


@pickled_as_values
@dataclass(frozen=True, slots=True)
class LogLine:
    """Worker -> main: a log record of a worker, re-emitted by the main process's own logging."""

    logger: str  # the logger's name (e.g. edge.haar)
    level: int
    message: str  # formatted, with its traceback if it had one
    process: str  # e.g. edge.detector


END = EndOfStream()
