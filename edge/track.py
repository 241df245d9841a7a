"""Face tracks: ids that persist across frames, by IoU + centre-distance matching with constant-velocity prediction."""

from __future__ import annotations

import dataclasses
import itertools
import logging
from dataclasses import dataclass

import numpy as np

from edge.boxes import iou_matrix
from edge.config import SmoothingConfig, TrackerConfig
from edge.results import Faces
from edge.smooth import Smoother

log = logging.getLogger(__name__)

FORBIDDEN = 1e6  # assignment cost of a pair the gates rule out


@dataclass
class Track:
    """One face followed over time: its last box, its motion per processed frame, frames since last seen."""

    id: int
    box: np.ndarray  # (4,) float64 xyxy where the face was last seen, pixels
    velocity: np.ndarray  # (4,) float64 box motion per processed frame, pixels
    missed: int = 0  # processed frames since the face was last matched
    hits: int = 1  # frames the face was matched in

    def predicted(self) -> np.ndarray:
        """Where the box should be in the next processed frame if it keeps its velocity."""
        return self.box + self.velocity * (self.missed + 1)


def centres(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, :2] + boxes[:, 2:]) / 2.0


def sizes(boxes: np.ndarray) -> np.ndarray:
    """Mean of width and height of each box, at least one pixel."""
    return np.maximum(((boxes[:, 2] - boxes[:, 0]) + (boxes[:, 3] - boxes[:, 1])) / 2.0, 1.0)


def assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost assignment of rows to columns (Hungarian algorithm, potentials form), any shape."""
    if cost.size == 0:
        return []
    if cost.shape[0] > cost.shape[1]:
        return [(r, c) for c, r in assign(cost.T)]
    rows, cols = cost.shape
    u, v = np.zeros(rows + 1), np.zeros(cols + 1)
    owner = np.zeros(cols + 1, np.int64)  # owner[j]: row (1-based) assigned to column j, 0 = none
    for row in range(1, rows + 1):
        owner[0], j0 = row, 0
        slack, way, used = np.full(cols + 1, np.inf), np.zeros(cols + 1, np.int64), np.zeros(cols + 1, bool)
        while owner[j0] != 0:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            reduced = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < slack[1:])
            slack[1:][better] = reduced[better]
            way[1:][better] = j0
            candidates = np.where(free, slack[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            slack[1:][free] -= delta
            j0 = j1
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    return sorted((int(owner[j]) - 1, j - 1) for j in range(1, cols + 1) if owner[j])


def overlap_pairs(a: np.ndarray, b: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """The most one-to-one pairs ``(i, j)`` of boxes ``a[i]``, ``b[j]`` (x1, y1, x2, y2 rows) overlapping by at
    least ``min_iou``, the closest overlaps among equally many: how detections are scored against a reference."""
    if not len(a) or not len(b):
        return []
    overlaps = iou_matrix(a, b)
    cost = np.where(overlaps >= min_iou, 1.0 - overlaps, FORBIDDEN)
    return sorted((i, j) for i, j in assign(cost) if cost[i, j] < FORBIDDEN)


class Tracker:
    """Gives each face of a frame the id of the track it continues, or a new id; fed frames in order."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self.tracks: list[Track] = []
        self._ids = itertools.count()

    @property
    def ids(self) -> set[int]:
        """Ids of the tracks still alive (seen within the last ``max_missed`` frames)."""
        return {track.id for track in self.tracks}

    def update(self, faces: Faces) -> Faces:
        """The faces with their ``track_id`` set; tracks not seen for too long end."""
        return dataclasses.replace(faces, track_id=self.match(faces.xyxy))

    def match(self, boxes: np.ndarray) -> np.ndarray:
        """Track id for each box (n, 4) of the next processed frame."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = np.full(len(boxes), -1, np.int64)
        cost = self.costs(boxes)
        matched_tracks = set()
        for t, d in assign(cost):
            if cost[t, d] >= FORBIDDEN:
                continue
            self.follow(self.tracks[t], boxes[d])
            ids[d] = self.tracks[t].id
            matched_tracks.add(t)
        for t, track in enumerate(self.tracks):
            if t not in matched_tracks:
                track.missed += 1
        ended = [track.id for track in self.tracks if track.missed > self.config.max_missed]
        if ended:
            log.debug("tracks ended: %s", ended)
        self.tracks = [track for track in self.tracks if track.missed <= self.config.max_missed]
        for d in np.flatnonzero(ids < 0):
            track = Track(next(self._ids), boxes[d].copy(), np.zeros(4))
            self.tracks.append(track)
            ids[d] = track.id
        return ids

    def costs(self, boxes: np.ndarray) -> np.ndarray:
        """(tracks, boxes) cost: 1 - IoU plus centre distance in face sizes; FORBIDDEN outside both gates."""
        if not self.tracks or not len(boxes):
            return np.zeros((len(self.tracks), len(boxes)))
        predicted = np.stack([track.predicted() for track in self.tracks])
        iou = iou_matrix(predicted, boxes)
        distance = np.linalg.norm(centres(predicted)[:, None, :] - centres(boxes)[None, :, :], axis=2)
        distance /= sizes(predicted)[:, None]
        allowed = (iou >= max(self.config.min_iou, 1e-9)) | (distance <= self.config.max_distance)
        return np.where(allowed, (1.0 - iou) + distance, FORBIDDEN)

    def follow(self, track: Track, box: np.ndarray) -> None:
        """Move a track to its new box, blending the observed motion into its velocity."""
        weight = self.config.velocity_weight
        motion = (box - track.box) / (track.missed + 1)
        track.velocity = weight * motion + (1.0 - weight) * track.velocity
        track.box = box.copy()
        track.missed = 0
        track.hits += 1


class TrackedLabels:
    """Tracking and smoothing as one library step, shared by the CLI, the Python API and batch runs.

    Fed a video's faces frame by frame, in order: each face gets the id of the track it
    continues, its probabilities smoothed over that track, and the steady label to show.
    """

    def __init__(self, tracker: TrackerConfig, smoothing: SmoothingConfig, labels: tuple[str, ...]) -> None:
        self.tracker = Tracker(tracker) if tracker.enabled else None
        self.smoother = Smoother(smoothing, labels) if smoothing.enabled and self.tracker is not None else None
        if smoothing.enabled and self.tracker is None:
            log.warning("smoothing needs the tracker (tracker.enabled = false): labels are not smoothed")

    def update(self, faces: Faces, t: float) -> Faces:
        """The faces of the next frame (``t`` seconds into the source) with track ids and steady labels."""
        if self.tracker is None:
            return faces
        faces = self.tracker.update(faces)
        if self.smoother is not None:
            faces = self.smoother.update(faces, t, alive=self.tracker.ids)
        return faces
