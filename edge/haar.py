"""Haar backend of the detector stage: OpenCV cascades, faces followed between frames, new ones found by sliced scans."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.boxes import iou_matrix, overlap_matrix
from edge.config import HaarConfig
from edge.detect import DetectorError, Detections

log = logging.getLogger(__name__)

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
ROI_MIN_SIZE_RATIO = 0.8  # a tracked face may shrink to this fraction of its size between frames
ROI_MAX_SIZE_RATIO = 1.25  # ... or grow to this multiple
ROI_WINDOW_SLACK = 1.0  # downscale a search region until its smallest face is this x the window
PROPOSAL_NEIGHBORS = 1  # a one-scale scan proposes a face on 2 overlapping hits; the local search decides
MAX_PROPOSALS = 8  # proposals checked per frame after the first (each costs a local search, ~0.5 ms)
HIDDEN_FACE_GRAY = 128  # flat fill: the cascade rejects it at its first stage
SAME_FACE_OVERLAP = 0.5  # boxes sharing this fraction of the smaller one are one face (faces never nest)


def load_cascade(path: str | Path | None = None) -> cv2.CascadeClassifier:
    """Load a Haar cascade: an XML path, the name of one of OpenCV's own, or the frontal-face default."""
    if not hasattr(cv2, "CascadeClassifier"):
        raise DetectorError(
            f"OpenCV {cv2.__version__} has no CascadeClassifier (removed in OpenCV 5): "
            "pip install 'opencv-python<5'"
        )
    xml = Path(path or DEFAULT_CASCADE)
    if not xml.is_file() and xml.parent == Path("."):
        data_dir = getattr(getattr(cv2, "data", None), "haarcascades", "")
        xml = Path(data_dir) / xml
    if not xml.is_file():
        raise DetectorError(f"Haar cascade not found: {xml}")
    cascade = cv2.CascadeClassifier(str(xml))
    if cascade.empty():
        raise DetectorError(f"Haar cascade could not be loaded: {xml}")
    return cascade


def xywh_to_xyxy(rects: np.ndarray | tuple, scale: float = 1.0, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """OpenCV's (x, y, w, h) rectangles in a scaled/offset image -> (n, 4) int32 xyxy in the frame."""
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    xyxy = np.empty_like(rects)
    xyxy[:, :2] = rects[:, :2] / scale + offset
    xyxy[:, 2:] = (rects[:, :2] + rects[:, 2:]) / scale + offset
    return np.round(xyxy).astype(np.int32)


@dataclass(frozen=True)
class ScanUnit:
    """One piece of a full-frame scan: one face size over a strip of columns (frame pixels)."""

    size: float  # face size searched, frame pixels
    x1: int
    x2: int
    cost: float  # windows the cascade evaluates


@dataclass(frozen=True)
class ScanPlan:
    """How to scan a whole frame of one size for new faces: the units each slice scans."""

    frame_shape: tuple[int, int]
    sizes: tuple[float, ...]  # every face size searched, frame pixels
    slices: tuple[tuple[ScanUnit, ...], ...]

    @property
    def units(self) -> tuple[ScanUnit, ...]:
        return tuple(unit for units in self.slices for unit in units)


def window_count(width: float, height: float, window: int) -> float:
    """Windows the cascade evaluates at its own window size: OpenCV steps them by 2 pixels there."""
    return (max(width - window, 0.0) // 2 + 1) * (max(height - window, 0.0) // 2 + 1)


def scan_sizes(height: int, config: HaarConfig, window: int) -> list[float]:
    """Face sizes (frame pixels) from the smallest to the largest the config asks for, scan_scale_factor apart."""
    smallest = max(config.min_face * height, window / config.downscale if config.downscale else window)
    largest = max(config.max_face * height, smallest)
    sizes = [smallest]
    while sizes[-1] * config.scan_scale_factor <= largest:
        sizes.append(sizes[-1] * config.scan_scale_factor)
    return sizes


def plan_full_scan(frame_shape: tuple[int, int], config: HaarConfig, window: int) -> ScanPlan:
    """Cut the search for new faces into ``scan_slices`` slices of about equal cost.

    Every face size is searched on its own copy of the frame, shrunk until that size fills
    the cascade's window: one scale per call, windows 2 pixels (~8% of the face) apart at
    every size. (Left to itself, OpenCV steps by 1 pixel on faces over twice the window:
    about 3x the windows for those sizes, for no gain in recall.) A size too costly for one slice is split
    into column strips that overlap by the face size, so every face lies whole in a strip.
    """
    height, width = frame_shape
    sizes = scan_sizes(height, config, window)
    costs = [window_count(width * window / s, height * window / s, window) for s in sizes]
    target = sum(costs) / config.scan_slices
    units = [unit for size in sizes for unit in column_strips(size, width, height, window, target)]
    return ScanPlan(frame_shape, tuple(sizes), pack_slices(units, config.scan_slices))


def column_strips(size: float, width: int, height: int, window: int, target: float) -> list[ScanUnit]:
    """The fewest strips of one face size, overlapping by that size, each costing at most about ``target``."""
    scale = window / size
    overlap = int(np.ceil(size))
    strips = 1
    while True:
        step = width / strips
        bounds = [(max(0, int(i * step) - overlap // 2), min(width, int((i + 1) * step) + overlap - overlap // 2))
                  for i in range(strips)]
        costs = [window_count((x2 - x1) * scale, height * scale, window) for x1, x2 in bounds]
        if max(costs) <= target or step < 2 * overlap:
            return [ScanUnit(size, x1, x2, cost) for (x1, x2), cost in zip(bounds, costs)]
        strips += 1


def pack_slices(units: list[ScanUnit], slices: int) -> tuple[tuple[ScanUnit, ...], ...]:
    """Greedy bin packing: the costliest unit first, into the slice with the least work so far."""
    bins: list[list[ScanUnit]] = [[] for _ in range(min(slices, len(units)))]
    loads = [0.0] * len(bins)
    for unit in sorted(units, key=lambda u: -u.cost):
        i = int(np.argmin(loads))
        bins[i].append(unit)
        loads[i] += unit.cost
    return tuple(tuple(b) for b in bins if b)


@dataclass
class Track:
    """A face the detector follows: its last box, how often it was found or missed, and whether it is shown.

    A new face is shown at once when a second, independently trained cascade confirms it;
    otherwise only once it has been found in ``confirm_frames`` consecutive frames. One
    cascade's false positives (lettering, textures) rarely pass either test.
    """

    box: np.ndarray  # xyxy, frame pixels
    confirmed: bool = False
    hits: int = 1
    missed: int = 0


class HaarDetector:
    """Finds faces frame after frame with Haar cascades (the default backend).

    Every frame, each face of the previous frame is searched for in a small region around
    it (cheap: a few scales on a few pixels). New faces come from full-frame scans spread
    over ``scan_slices`` frames, a few face sizes per frame, so no single frame pays for a
    whole scan: a one-scale pass proposes candidates, and the same local search that
    follows faces confirms them. The first frame is scanned whole; a still image gets a
    complete multi-scale scan at full resolution.
    """

    def __init__(self, config: HaarConfig) -> None:
        self.config = config
        self.cascade = load_cascade(config.cascade or None)
        self.verifier = load_cascade(config.verify_cascade) if config.verify_cascade else None
        window = self.cascade.getOriginalWindowSize()
        self.window = int(max(window)) if window and max(window) > 0 else 24
        self.tracks: list[Track] = []
        self._plan: ScanPlan | None = None
        self._frames_seen = 0

    def reset(self) -> None:
        """Forget tracked faces (a new scene, e.g. the next image of a folder)."""
        self.tracks = []
        self._frames_seen = 0

    def plan(self, frame_shape: tuple[int, int]) -> ScanPlan:
        if self._plan is None or self._plan.frame_shape != frame_shape:
            self._plan = plan_full_scan(frame_shape, self.config, self.window)
            log.debug("full-scan plan for %s: %s", frame_shape, self._plan)
        return self._plan

    def detect(self, frame: np.ndarray, still: bool = False) -> Detections:
        """The faces of a BGR (or already grayscale) frame."""
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
        return Detections(self.boxes(gray, still))

    def boxes(self, gray: np.ndarray, still: bool = False) -> np.ndarray:
        """(n, 4) int32 xyxy boxes of the faces in a grayscale frame."""
        if still:  # no time budget for a still image: scan it whole, at full resolution
            self.reset()
            return self.scan_full_resolution(gray)
        plan = self.plan(gray.shape[:2])
        if not self.config.track:
            return self.discover(gray, plan.units, np.empty((0, 4), np.int32))
        followed = self.search_tracks(gray)
        tracked = boxes_of(followed)
        if self._frames_seen == 0:  # the first frame is scanned whole
            found = self.discover(gray, plan.units, tracked, limit=None)
        else:
            found = self.discover(gray, plan.slices[self._frames_seen % len(plan.slices)], tracked)
        self._frames_seen += 1
        for box in found:
            track = Track(box, confirmed=self.config.confirm_frames <= 1 or self.verified(gray, box))
            self.tracks.append(track)
            followed.append(track)
        return boxes_of([t for t in followed if t.confirmed])

    def verified(self, gray: np.ndarray, box: np.ndarray) -> bool:
        """Whether the second cascade also sees a face here."""
        return self.verifier is not None and self.search_near(gray, box, self.verifier) is not None

    def discover(self, gray: np.ndarray, units: tuple[ScanUnit, ...], tracked: np.ndarray,
                 limit: int | None = MAX_PROPOSALS) -> np.ndarray:
        """New faces in the given units of the full-frame plan: proposals confirmed by a local search.

        The local search is the tracker's own (every nearby size and position, min_neighbors
        hits), so a face is found by the same test that then follows it.
        """
        proposals = self.propose(gray, units, hide=tracked)
        found: list[np.ndarray] = []
        for proposal in proposals[:limit]:
            face = self.search_near(gray, proposal, self.cascade)
            known = np.concatenate([tracked, np.array(found, np.int32).reshape(-1, 4)])
            if face is not None and (not len(known) or overlap_matrix(face[None], known).max() < SAME_FACE_OVERLAP):
                found.append(face)
        return np.array(found, np.int32).reshape(-1, 4)

    def propose(self, gray: np.ndarray, units: tuple[ScanUnit, ...], hide: np.ndarray) -> np.ndarray:
        """Candidate new faces, the most hits first: each unit is one face size in one strip.

        Faces in ``hide`` (already tracked) are painted flat first: windows over a real face
        run deep into the cascade and dominate a scan's cost, and they need not be found again.
        """
        if len(hide):
            gray = gray.copy()
            for x1, y1, x2, y2 in hide:
                cv2.rectangle(gray, (int(x1), int(y1)), (int(x2), int(y2)), HIDDEN_FACE_GRAY, -1)
        window = (self.window, self.window)
        boxes, hits = [np.empty((0, 4), np.int32)], [np.empty(0)]
        for unit in units:
            scale = self.window / unit.size
            strip = gray[:, unit.x1:unit.x2]
            if scale != 1.0:
                strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            rects, counts = self.cascade.detectMultiScale2(
                strip, scaleFactor=2.0, minNeighbors=PROPOSAL_NEIGHBORS, minSize=window, maxSize=window)
            boxes.append(xywh_to_xyxy(rects, scale, (unit.x1, 0)))
            hits.append(np.asarray(counts, np.float64).reshape(-1))
        return suppress_duplicates(np.concatenate(boxes), scores=np.concatenate(hits))

    def scan_full_resolution(self, gray: np.ndarray) -> np.ndarray:
        """Every face size from min_face to max_face on the frame as it is."""
        height = gray.shape[0]
        min_side = max(self.window, int(self.config.min_face * height))
        max_side = max(min_side, int(self.config.max_face * height))
        rects = self.cascade.detectMultiScale(
            gray, scaleFactor=self.config.scale_factor, minNeighbors=self.config.min_neighbors,
            minSize=(min_side, min_side), maxSize=(max_side, max_side))
        return suppress_duplicates(xywh_to_xyxy(rects))

    def search_tracks(self, gray: np.ndarray) -> list[Track]:
        """Look for each tracked face near where it was: the tracks found again this frame.

        A confirmed track survives ``max_missed`` misses; an unconfirmed one none.
        """
        found: list[Track] = []
        kept: list[Track] = []
        for track in self.tracks:
            box = self.search_near(gray, track.box, self.cascade)
            if box is None:
                track.missed += 1
                if not track.confirmed or track.missed > self.config.max_missed:
                    continue
            elif found and overlap_matrix(box[None], boxes_of(found)).max() >= SAME_FACE_OVERLAP:
                continue  # two tracks ran onto the same face: keep the first
            else:
                track.box, track.missed, track.hits = box, 0, track.hits + 1
                track.confirmed = track.confirmed or track.hits >= self.config.confirm_frames
                found.append(track)
            kept.append(track)
        self.tracks = kept
        return found

    def search_near(self, gray: np.ndarray, box: np.ndarray, cascade: cv2.CascadeClassifier) -> np.ndarray | None:
        """The face closest to a previous box, searched in a region around it at nearby sizes."""
        x1, y1, x2, y2 = (int(v) for v in box)
        size = max(x2 - x1, y2 - y1)
        pad = int(size * self.config.track_margin)
        height, width = gray.shape[:2]
        rx1, ry1 = max(0, x1 - pad), max(0, y1 - pad)
        rx2, ry2 = min(width, x2 + pad), min(height, y2 + pad)
        smallest = size * ROI_MIN_SIZE_RATIO
        scale = min(1.0, self.window * ROI_WINDOW_SLACK / smallest)
        region = gray[ry1:ry2, rx1:rx2]
        if scale < 1.0:
            region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        min_side = max(self.window, int(smallest * scale))
        max_side = int(np.ceil(size * ROI_MAX_SIZE_RATIO * scale))
        if min(region.shape[:2]) < min_side:
            return None
        rects = cascade.detectMultiScale(
            region, scaleFactor=self.config.scale_factor, minNeighbors=self.config.min_neighbors,
            minSize=(min_side, min_side), maxSize=(max_side, max_side))
        if len(rects) == 0:
            return None
        candidates = xywh_to_xyxy(rects, scale, (rx1, ry1))
        return candidates[int(np.argmax(iou_matrix(candidates, box[None])[:, 0]))]


def boxes_of(tracks: list[Track]) -> np.ndarray:
    return np.array([t.box for t in tracks], np.int32).reshape(-1, 4)


def suppress_duplicates(boxes: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """Keep one box of every group that overlaps or nests, highest score first (default: the largest)."""
    if len(boxes) < 2:
        return boxes
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0] if scores is None else scores), kind="stable")
    boxes = boxes[order]
    overlaps = overlap_matrix(boxes, boxes)
    keep: list[int] = []
    for i in range(len(boxes)):
        if all(overlaps[i, j] < SAME_FACE_OVERLAP for j in keep):
            keep.append(i)
    return boxes[keep]
