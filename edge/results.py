"""The one result type: the faces of one frame, as column arrays, and the frame's timings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

STAGES = ("capture", "queue", "detect", "classify", "render", "total")  # latency keys (ms) of Stamps.latencies_ms
UNCERTAIN = "uncertain"  # the shown label when no smoothed probability is high enough


@dataclass(frozen=True)
class Face:
    """One face of a frame as a record: row ``i`` of ``Faces``, field for field its event in ``--events``.

    ``label`` is the label shown and ``score`` its probability (smoothed in a tracked video);
    ``probs`` the classifier's own output for this frame. A tracked video face also has
    ``raw_label`` (the top label of ``probs``) and ``smoothed`` (its track's probabilities);
    images are not tracked: ``track_id`` -1, ``raw_label`` and ``smoothed`` None.
    """

    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels
    track_id: int
    label: str
    score: float
    probs: dict[str, float]
    raw_label: str | None = None
    smoothed: dict[str, float] | None = None

    def record(self) -> dict:
        """The face's JSON-ready dict, as in the events (probabilities rounded to 4 places)."""
        record = {"box": list(self.box), "track_id": self.track_id, "label": self.label,
                  "score": round(self.score, 4)}
        if self.raw_label is not None:
            record["raw_label"] = self.raw_label
        record["probs"] = {name: round(p, 4) for name, p in self.probs.items()}
        if self.smoothed is not None:
            record["smoothed"] = {name: round(p, 4) for name, p in self.smoothed.items()}
        return record


@dataclass
class Faces:
    """Faces of one frame: ``xyxy`` (n, 4) int32 boxes, ``probs`` (n, k) float32 in label order.

    ``probs`` are the classifier's raw per-frame output; a tracked video adds per-track ``smoothed``
    probabilities and the ``display_label`` chosen from them (a label, or ``UNCERTAIN``).
    """

    xyxy: np.ndarray
    probs: np.ndarray
    labels: tuple[str, ...]
    track_id: np.ndarray | None = None  # (n,) int64, -1 where a face has no track
    smoothed: np.ndarray | None = None  # (n, k) float32 smoothed over the face's track; None = not smoothed
    display_label: list[str] | None = None  # (n,) the label to show; None = the raw label

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.int32)
        if self.xyxy.size == 0:
            self.xyxy = self.xyxy.reshape(0, 4)
        self.probs = np.asarray(self.probs, dtype=np.float32)
        n = len(self.xyxy)
        if self.xyxy.ndim != 2 or self.xyxy.shape[1] != 4:
            raise ValueError(f"xyxy: expected shape (_, 4), got {self.xyxy.shape}")
        if n == 0 and self.probs.size == 0:
            self.probs = np.zeros((0, len(self.labels)), np.float32)
        if self.probs.shape != (n, len(self.labels)):
            raise ValueError(f"probs: expected shape ({n}, {len(self.labels)}), got {self.probs.shape}")
        if self.track_id is None:
            self.track_id = np.full(n, -1, np.int64)
        self.track_id = np.asarray(self.track_id, dtype=np.int64)
        if self.track_id.shape != (n,):
            raise ValueError(f"track_id: expected shape ({n},), got {self.track_id.shape}")
        if self.smoothed is not None:
            self.smoothed = np.asarray(self.smoothed, dtype=np.float32)
            if self.smoothed.shape != self.probs.shape:
                raise ValueError(f"smoothed: expected shape {self.probs.shape}, got {self.smoothed.shape}")
        if self.display_label is not None:
            self.display_label = list(self.display_label)
            if len(self.display_label) != n:
                raise ValueError(f"display_label: expected {n} labels, got {len(self.display_label)}")

    @classmethod
    def empty(cls, labels: tuple[str, ...]) -> Faces:
        return cls(np.zeros((0, 4), np.int32), np.zeros((0, len(labels)), np.float32), labels)

    def __len__(self) -> int:
        return len(self.xyxy)

    @property
    def class_id(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self) else np.zeros(0, np.int64)

    @property
    def raw_label(self) -> list[str]:
        """The top label of each face's own (unsmoothed) probabilities."""
        return [self.labels[i] for i in self.class_id]

    @property
    def shown_label(self) -> list[str]:
        """The label to show of each face: ``display_label`` where set, else the raw label (``labels``: the model's)."""
        return self.raw_label if self.display_label is None else list(self.display_label)

    @property
    def score(self) -> np.ndarray:
        """The (smoothed, if smoothed) probability of each shown label; the top one for ``UNCERTAIN``."""
        source = self.probs if self.smoothed is None else self.smoothed
        if self.display_label is None or not len(self):
            return source.max(axis=1) if len(self) else np.zeros(0, np.float32)
        index = {name: j for j, name in enumerate(self.labels)}
        return np.array([source[i, index[name]] if name in index else source[i].max()
                         for i, name in enumerate(self.display_label)], np.float32)

    def __iter__(self) -> Iterator[Face]:
        """Each face as a ``Face`` record, in box order."""
        return iter(self._faces())

    def __getitem__(self, i: int) -> Face:
        """Face ``i`` (negative counts from the end) as a ``Face`` record."""
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"faces are indexed by int, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"face {i} of {n}")
        return self._faces()[i]

    def _faces(self) -> list[Face]:
        """Every row as a ``Face`` (the arrays converted once: this runs for every frame's event)."""
        labels, n = self.labels, len(self)
        shown, scores, probs = self.shown_label, self.score.tolist(), self.probs.tolist()
        raw = self.raw_label if self.display_label is not None else [None] * n
        smoothed = self.smoothed.tolist() if self.smoothed is not None else None
        return [Face(box=tuple(box), track_id=track_id, label=shown[i], score=scores[i],
                     probs=dict(zip(labels, probs[i])), raw_label=raw[i],
                     smoothed=dict(zip(labels, smoothed[i])) if smoothed is not None else None)
                for i, (box, track_id) in enumerate(zip(self.xyxy.tolist(), self.track_id.tolist()))]

    def records(self) -> list[dict]:
        """One JSON-ready dict per face: box, track, shown label and score, raw (and smoothed) probabilities."""
        return [face.record() for face in self]


@dataclass(slots=True)
class Stamps:
    """When a frame crossed each stage boundary: ``time.perf_counter()`` seconds, None until it has.

    Each stage sets its own pair (the capture thread read_start/captured, the detector
    detect_*, the classifier classify_*, the renderer render_start/rendered), in whatever
    process it runs; ``latencies_ms`` turns them into per-stage latencies.
    """

    read_start: float | None = None
    captured: float | None = None
    detect_start: float | None = None
    detect_end: float | None = None
    classify_start: float | None = None
    classify_end: float | None = None
    render_start: float | None = None
    rendered: float | None = None

    def __reduce__(self) -> tuple[type, tuple[float | None, ...]]:  # pickled as its values: it travels with every frame
        return Stamps, (self.read_start, self.captured, self.detect_start, self.detect_end, self.classify_start,
                        self.classify_end, self.render_start, self.rendered)

    def latencies_ms(self) -> dict[str, float]:
        """Per-stage latency in milliseconds (the keys of STAGES), for the stages both of whose stamps are set."""
        spans = {"capture": (self.read_start, self.captured), "queue": (self.captured, self.detect_start),
                 "detect": (self.detect_start, self.detect_end), "classify": (self.classify_start, self.classify_end),
                 "render": (self.render_start, self.rendered), "total": (self.captured, self.rendered)}
        return {stage: (end - start) * 1000.0 for stage, (start, end) in spans.items()
                if start is not None and end is not None}


@dataclass
class FrameResult:
    """Everything known about one processed frame when it reaches the renderer."""

    seq: int  # position in the processed stream, 0, 1, 2, ...
    index: int  # frame number in the source (gaps = frames dropped upstream)
    timestamp: float  # seconds into the source (file) or since start (live)
    faces: Faces
    stamps: Stamps = field(default_factory=Stamps)
    name: str = ""  # image file name for image sources
    dropped: int = 0  # frames of a live source dropped so far, before this one (the pipeline was behind)
    # The Python API's results carry their source frame (BGR, the caller's) and the CLI's way of drawing it.
    frame: np.ndarray | None = field(default=None, repr=False, compare=False)
    draw: Callable[[np.ndarray, FrameResult], None] | None = field(default=None, repr=False, compare=False)
    _event: tuple[Faces, dict] | None = field(default=None, init=False, repr=False, compare=False)

    def latencies_ms(self) -> dict[str, float]:
        """Per-stage latency in milliseconds from the stamps each stage left."""
        return self.stamps.latencies_ms()

    def annotated(self) -> np.ndarray:
        """A copy of ``frame`` drawn as the CLI draws it: boxes, label tags, and the status panel of videos."""
        if self.frame is None or self.draw is None:
            raise ValueError("this result carries no frame to draw (the Python API's results do)")
        frame = self.frame.copy()
        self.draw(frame, self)
        return frame

    def record(self) -> dict:
        """The frame's JSON Lines event: built once for its faces, and shared by every sink that writes it.

        Read it, never change it; a result given other faces (tracked, smoothed) gets a new one.
        """
        if self._event is not None and self._event[0] is self.faces:
            return self._event[1]
        event = {"frame": self.index, "seq": self.seq, "t": round(self.timestamp, 4)}
        if self.name:
            event["image"] = self.name
        event["faces"] = self.faces.records()
        self._event = (self.faces, event)
        return event
