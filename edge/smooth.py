"""Per-track smoothing: expression probabilities averaged over time, the shown label chosen with hysteresis."""

from __future__ import annotations

import collections
import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np

from edge.config import SmoothingConfig
from edge.results import UNCERTAIN, Faces

log = logging.getLogger(__name__)

EPS = 1e-6  # probability comparisons at exactly the margin count as reaching it


def ema_weight(dt_s: float, half_life_s: float) -> float:
    """Weight of a new sample after ``dt_s`` seconds: a sample's weight halves every ``half_life_s``."""
    return 1.0 - 0.5 ** (max(dt_s, 0.0) / half_life_s)


def choose_label(smoothed: np.ndarray, labels: tuple[str, ...], shown: str | None, hysteresis: float,
                 min_confidence: float) -> str:
    """The label to show from smoothed probabilities, given the label shown until now (None for a new track).

    ``UNCERTAIN`` whenever the top probability is below ``min_confidence``; leaving it takes
    ``min_confidence + hysteresis``. A shown label gives way only to one that leads it by ``hysteresis``.
    """
    top = int(np.argmax(smoothed))
    p_top = float(smoothed[top])
    if p_top + EPS < min_confidence:
        return UNCERTAIN
    if shown is None or shown == labels[top]:
        return labels[top]
    if shown == UNCERTAIN or shown not in labels:
        return labels[top] if p_top + EPS >= min_confidence + hysteresis else UNCERTAIN
    return labels[top] if p_top + EPS >= float(smoothed[labels.index(shown)]) + hysteresis else shown


@dataclass
class TrackState:
    """What smoothing remembers about one track."""

    mean: np.ndarray  # (k,) smoothed probabilities
    t: float  # timestamp of the last sample, seconds
    shown: str | None = None
    window: collections.deque = field(default_factory=collections.deque)  # (t, probs) for method "window"


class Smoother:
    """Smooths each tracked face's probabilities over its own track; untracked faces (id -1) keep their raw ones."""

    def __init__(self, config: SmoothingConfig, labels: tuple[str, ...]) -> None:
        self.config = config
        self.labels = tuple(labels)
        self.states: dict[int, TrackState] = {}

    def update(self, faces: Faces, t: float, alive: set[int] | None = None) -> Faces:
        """The faces with ``smoothed`` and ``display_label`` set; ``alive`` (track ids) lets ended tracks go."""
        smoothed = faces.probs.copy()
        shown = []
        for i, track_id in enumerate(faces.track_id.tolist()):
            if track_id >= 0:
                smoothed[i] = self.smooth(track_id, faces.probs[i], t)
            shown.append(self.show(track_id, smoothed[i]))
        if alive is not None:
            for track_id in set(self.states) - alive:
                del self.states[track_id]
        return dataclasses.replace(faces, smoothed=smoothed, display_label=shown)

    def smooth(self, track_id: int, probs: np.ndarray, t: float) -> np.ndarray:
        """Add one frame's probabilities to a track; its smoothed probabilities."""
        probs = probs.astype(np.float64)
        state = self.states.get(track_id)
        if state is None:
            state = self.states[track_id] = TrackState(mean=probs.copy(), t=t)
        elif self.config.method == "ema":
            state.mean += ema_weight(t - state.t, self.config.half_life_s) * (probs - state.mean)
        state.t = t
        if self.config.method == "window":
            state.window.append((t, probs))
            while state.window[0][0] <= t - self.config.window_s:
                state.window.popleft()
            state.mean = np.mean([p for _, p in state.window], axis=0)
        return state.mean

    def show(self, track_id: int, smoothed: np.ndarray) -> str:
        """The label to show for a face, remembered per track for the hysteresis."""
        state = self.states.get(track_id)
        label = choose_label(smoothed, self.labels, state.shown if state else None, self.config.hysteresis,
                             self.config.min_confidence)
        if state is not None:
            state.shown = label
        return label
