"""Haar backend of the detector stage: OpenCV cascades, faces followed between frames, new ones found by sliced scans."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from edge.boxes import iou_matrix, overlap_matrix
from edge.config import HaarConfig
from edge.detect import DetectorError, Detections

log = logging.getLogger(__name__)

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"
ROI_MIN_SIZE_RATIO = 0.8  # a followed face may shrink to this fraction of its size between frames
ROI_MAX_SIZE_RATIO = 1.25  # ... or grow to this multiple
ROI_WINDOW_SLACK = 1.0  # downscale a search region until its smallest face is this x the window
EDGE_PAD = 0.25  # a search region the frame's edge cuts is extended by up to this x the face size
RECHECK_MARGIN = 0.3  # a lost face is looked for in a larger region (x its size on every side) ...
RECHECK_SIZES = (0.7, 1.45)  # ... over more sizes (x its last size) ...
RECHECK_SLACK = 2.0  # ... at twice the resolution (OpenCV then steps windows by 1 pixel, not 2: more hits)
RECHECK_TILT_DEG = 15.0  # ... and turned both ways by this much, for a tilted head
RECHECKS_PER_FRAME = 2  # views of a lost face tried in one frame (each costs about as much as 2-4 follows)
MIN_LOST_FRAMES = 3  # a lost face is searched for this long at least; longer the longer it was seen, up to max_lost
FAST_FACE = 0.2  # faces this share of the frame height and larger are scanned for every FAST_SLICES frames ...
FAST_SLICES = 3  # ... (they are cheap: few windows), so a face coming into view is found within 0.1 s
PROPOSAL_EDGE_PAD = 0.3  # whole-frame proposal scans repeat the edge pixels outwards by this x the window
PROPOSAL_NEIGHBORS = 1  # a one-scale scan proposes a face on 2 overlapping hits; the local search decides
MAX_PROPOSALS = 8  # proposals checked per frame after the first (each costs a local search, ~0.5 ms)
LOW_CONTRAST_STD = 35.0  # grey levels: dim or hazy frames (the stress set's: 13-33) spread less; daylight ones 45-76
CONTRAST_THUMBNAIL = (64, 36)  # the frame is judged on a copy this small (pixels): cheap, and the face's detail is not needed
CLAHE = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4))  # for dull frames: local, and it spreads no flat noise
HIDE_GROW = 0.2  # followed faces are painted out with this x their size around them too (hair, chin: costly windows)
HIDDEN_FACE_GRAY = 128  # flat fill: the cascade rejects it at its first stage
VELOCITY_WEIGHT = 0.5  # weight of the newest move in a followed face's velocity
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
    slices: tuple[tuple[ScanUnit, ...], ...]  # one scanned per frame, in turn
    fast: tuple[tuple[ScanUnit, ...], ...] = ()  # the large sizes: one of these too per frame, a shorter cycle

    @property
    def units(self) -> tuple[ScanUnit, ...]:
        return tuple(unit for units in self.slices + self.fast for unit in units)

    def frame_units(self, frame_number: int) -> tuple[ScanUnit, ...]:
        """What frame ``frame_number`` scans: its slice of the small sizes and its share of the large ones."""
        fast = self.fast[frame_number % len(self.fast)] if self.fast else ()
        return self.slices[frame_number % len(self.slices)] + fast


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
    large = [s for s in sizes if s >= FAST_FACE * height] if config.scan_slices > FAST_SLICES else []
    small = [s for s in sizes if s not in large]
    costs = [window_count(width * window / s, height * window / s, window) for s in small]
    target = sum(costs) / config.scan_slices if small else math.inf
    units = [unit for size in small for unit in column_strips(size, width, height, window, target)]
    fast = [unit for size in large for unit in column_strips(size, width, height, window, target)]
    return ScanPlan(frame_shape, tuple(sizes), pack_slices(units, config.scan_slices), pack_slices(fast, FAST_SLICES))


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


@dataclass(frozen=True)
class Search:
    """How a known face is looked for: the region around it, the sizes tried, the resolution, and the view."""

    margin: float  # the region reaches this far beyond the box on every side, x its size
    smallest: float  # sizes tried from this x the box's ...
    largest: float  # ... to this x
    slack: float  # the region is shrunk until its smallest size is this x the cascade's window
    edge_pad: float = EDGE_PAD  # where the frame's edge cuts the region, extend it by up to this x the size
    angle: float = 0.0  # degrees the region is turned first: a tilted head is searched for upright
    equalize: bool = False  # the region's histogram is spread first: dim light, low contrast

    def seen_as(self, view: Search) -> Search:
        """This search with the view (turn, equalization) of another."""
        return replace(self, angle=view.angle, equalize=view.equalize)


VERIFY = Search(0.2, ROI_MIN_SIZE_RATIO, ROI_MAX_SIZE_RATIO, ROI_WINDOW_SLACK)  # the second cascade's look at a new face
EQUALIZED = Search(0.0, 1.0, 1.0, 1.0, equalize=True)  # the view of a face found in a dim or hazy frame
RECHECKS = tuple(Search(RECHECK_MARGIN, *RECHECK_SIZES, RECHECK_SLACK, angle=angle, equalize=equalize)
                 for angle, equalize in ((0.0, False), (0.0, True), (RECHECK_TILT_DEG, False),
                                         (-RECHECK_TILT_DEG, False)))


@dataclass
class FollowedFace:
    """A face the detector follows: its last box, how often it was found or missed, and whether it is shown.

    A new face is shown at once when a second, independently trained cascade confirms it;
    otherwise only once it has been found in ``confirm_frames`` consecutive frames. One
    cascade's false positives (lettering, textures) rarely pass either test. A shown face
    that is lost is searched for harder (RECHECKS), and for longer the longer it was seen.
    """

    box: np.ndarray  # xyxy, frame pixels
    confirmed: bool = False
    hits: int = 1
    missed: int = 0
    view: Search | None = None  # the recheck that found it last: it is followed as that view sees it
    next_recheck: int = 0  # index into RECHECKS of the next view to try while it is lost
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # pixels a frame, smoothed

    def predicted(self) -> np.ndarray:
        """Where the face should be now: its last box moved on at its velocity for the frames since."""
        shift = self.velocity * (self.missed + 1)
        return np.round(self.box + np.concatenate([shift, shift])).astype(np.int32)

    def moved_to(self, box: np.ndarray) -> None:
        """Found again at ``box``: the velocity learns the move, averaged over the frames it took."""
        step = (centre(box) - centre(self.box)) / (self.missed + 1)
        self.velocity = VELOCITY_WEIGHT * step + (1 - VELOCITY_WEIGHT) * self.velocity
        self.box, self.missed, self.hits = box, 0, self.hits + 1


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
        self.nearby = Search(config.follow_margin, ROI_MIN_SIZE_RATIO, ROI_MAX_SIZE_RATIO, ROI_WINDOW_SLACK)
        self.faces: list[FollowedFace] = []
        self._plan: ScanPlan | None = None
        self._frames_seen = 0

    def reset(self) -> None:
        """Forget followed faces (a new scene, e.g. the next image of a folder)."""
        self.faces = []
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
        if not self.config.follow:
            return self.discover(gray, plan.units, np.empty((0, 4), np.int32))
        followed = self.search_followed(gray)
        followed_boxes = boxes_of(followed)
        dull = low_contrast(gray)  # dim or hazy: the scans look at the frame with its histogram spread
        scanned = CLAHE.apply(gray) if dull else gray
        if self._frames_seen == 0:  # the first frame is scanned whole
            found = self.discover(scanned, plan.units, followed_boxes, limit=None)
        else:
            found = self.discover(scanned, plan.frame_units(self._frames_seen), followed_boxes)
        self._frames_seen += 1
        lost = [t for t in self.faces if not any(t is f for f in followed)]
        for box in found:
            known = next((t for t in lost if overlap_matrix(box[None], t.box[None])[0, 0] >= SAME_FACE_OVERLAP), None)
            if known is not None:  # a lost face, found again by the scan: it is the same face, shown at once
                known.moved_to(box)
                known.view = None
                lost.remove(known)
                followed.append(known)
                continue
            face = FollowedFace(box, confirmed=self.config.confirm_frames <= 1 or self.verified(scanned, box),
                                view=EQUALIZED if dull else None)
            self.faces.append(face)
            followed.append(face)
        height, width = gray.shape[:2]
        shown = boxes_of([t for t in followed if t.confirmed])
        return np.clip(shown, 0, [width, height, width, height]).astype(np.int32)  # edge-padded searches reach out

    def verified(self, gray: np.ndarray, box: np.ndarray) -> bool:
        """Whether the second cascade also sees a face here."""
        return self.verifier is not None and self.search_near(gray, box, self.verifier, VERIFY) is not None

    def discover(self, gray: np.ndarray, units: tuple[ScanUnit, ...], followed_boxes: np.ndarray,
                 limit: int | None = MAX_PROPOSALS) -> np.ndarray:
        """New faces in the given units of the full-frame plan: proposals confirmed by a local search.

        The local search is the tracker's own (every nearby size and position, min_neighbors
        hits), so a face is found by the same test that then follows it.
        """
        proposals = self.propose(gray, units, hide=followed_boxes)
        found: list[np.ndarray] = []
        for proposal in proposals[:limit]:
            face = self.search_near(gray, proposal, self.cascade)
            known = np.concatenate([followed_boxes, np.array(found, np.int32).reshape(-1, 4)])
            if face is not None and (not len(known) or overlap_matrix(face[None], known).max() < SAME_FACE_OVERLAP):
                found.append(face)
        return np.array(found, np.int32).reshape(-1, 4)

    def propose(self, gray: np.ndarray, units: tuple[ScanUnit, ...], hide: np.ndarray) -> np.ndarray:
        """Candidate new faces, the most hits first: each unit is one face size in one strip.

        Faces in ``hide`` (already followed) are painted flat first: windows over a real face
        run deep into the cascade and dominate a scan's cost, and they need not be found again.
        """
        if len(hide):
            gray = gray.copy()
            for x1, y1, x2, y2 in hide:
                grow = int(HIDE_GROW * max(x2 - x1, y2 - y1))
                cv2.rectangle(gray, (int(x1) - grow, int(y1) - grow), (int(x2) + grow, int(y2) + grow), HIDDEN_FACE_GRAY, -1)
        window = (self.window, self.window)
        boxes, hits = [np.empty((0, 4), np.int32)], [np.empty(0)]
        whole: tuple[float, np.ndarray] = (1.0, gray)  # the smallest copy of the whole frame made so far
        for unit in sorted(units, key=lambda u: u.size):  # each whole-frame copy is shrunk from the one before
            scale = self.window / unit.size
            pad = 0
            if unit.x1 == 0 and unit.x2 == gray.shape[1]:
                step = scale / whole[0]
                strip = whole[1] if step == 1.0 else cv2.resize(whole[1], None, fx=step, fy=step,
                                                               interpolation=cv2.INTER_LINEAR)
                whole = (scale, strip)
                pad = int(PROPOSAL_EDGE_PAD * self.window)  # a face coming in at an edge is proposed early
                strip = cv2.copyMakeBorder(strip, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            else:
                strip = gray[:, unit.x1:unit.x2]
                if scale != 1.0:
                    strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            rects, counts = self.cascade.detectMultiScale2(
                strip, scaleFactor=2.0, minNeighbors=PROPOSAL_NEIGHBORS, minSize=window, maxSize=window)
            boxes.append(xywh_to_xyxy(rects, scale, (unit.x1 - pad / scale, -pad / scale)))
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

    def search_followed(self, gray: np.ndarray) -> list[FollowedFace]:
        """Look for each followed face near where it was: those found again this frame.

        An unconfirmed face is dropped at its first miss. A confirmed one that the cheap
        search misses is searched for harder (RECHECKS, a few views a frame), and kept while
        lost for ``lost_budget`` frames.
        """
        found: list[FollowedFace] = []
        kept: list[FollowedFace] = []
        for face in self.faces:
            view = self.nearby.seen_as(face.view) if face.view is not None else self.nearby
            box = self.search_near(gray, face.predicted(), self.cascade, view)
            if box is None and face.confirmed:
                box = self.recheck(gray, face)
            if box is None:
                face.missed += 1
                if not face.confirmed or face.missed > self.lost_budget(face):
                    continue
            elif found and overlap_matrix(box[None], boxes_of(found)).max() >= SAME_FACE_OVERLAP:
                continue  # two followed faces ran onto the same face: keep the first
            else:
                face.moved_to(box)
                face.confirmed = face.confirmed or face.hits >= self.config.confirm_frames
                found.append(face)
            kept.append(face)
        self.faces = kept
        return found

    def recheck(self, gray: np.ndarray, face: FollowedFace) -> np.ndarray | None:
        """A lost face searched for harder: RECHECKS_PER_FRAME views in turn, the one that found it last first."""
        for attempt in range(RECHECKS_PER_FRAME):
            index = (face.next_recheck + attempt) % len(RECHECKS)
            box = self.search_near(gray, face.predicted(), self.cascade, RECHECKS[index])
            if box is not None:
                face.view, face.next_recheck = RECHECKS[index], index
                return box
        face.next_recheck = (face.next_recheck + RECHECKS_PER_FRAME) % len(RECHECKS)
        return None

    def lost_budget(self, face: FollowedFace) -> int:
        """Frames a lost face is still searched for: a face seen long is likely back soon (a hand, a turn),
        a face seen briefly was likely never one."""
        return min(self.config.max_lost, max(MIN_LOST_FRAMES, face.hits))

    def search_near(self, gray: np.ndarray, box: np.ndarray, cascade: cv2.CascadeClassifier,
                    search: Search | None = None) -> np.ndarray | None:
        """The face closest to a previous box, searched in a region around it at nearby sizes."""
        search = search or self.nearby
        x1, y1, x2, y2 = (int(v) for v in box)
        size = max(x2 - x1, y2 - y1)
        region, (ox, oy) = self.region(gray, box, search)
        if region is None:
            return None
        smallest = size * search.smallest
        scale = min(1.0, self.window * search.slack / smallest)
        if scale < 1.0:
            region = cv2.resize(region, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        min_side = max(self.window, int(smallest * scale))
        max_side = int(np.ceil(size * search.largest * scale))
        if min(region.shape[:2]) < min_side:
            return None
        if search.equalize:
            region = cv2.equalizeHist(region)
        turn = None
        if search.angle:
            centre = ((region.shape[1] - 1) / 2, (region.shape[0] - 1) / 2)
            turn = cv2.getRotationMatrix2D(centre, search.angle, 1.0)
            region = cv2.warpAffine(region, turn, (region.shape[1], region.shape[0]), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
        rects = cascade.detectMultiScale(
            region, scaleFactor=self.config.scale_factor, minNeighbors=self.config.min_neighbors,
            minSize=(min_side, min_side), maxSize=(max_side, max_side))
        if len(rects) == 0:
            return None
        if turn is not None:
            rects = turned_back(np.asarray(rects, np.float64).reshape(-1, 4), turn)
        candidates = xywh_to_xyxy(rects, scale, (ox, oy))
        return candidates[int(np.argmax(iou_matrix(candidates, box[None])[:, 0]))]

    def region(self, gray: np.ndarray, box: np.ndarray, search: Search) -> tuple[np.ndarray | None, tuple[int, int]]:
        """The part of the frame a search looks at, and its top-left corner in the frame.

        Where the frame's edge cuts it, its edge pixels are repeated outwards (up to
        ``edge_pad`` x the face size): a face at the edge keeps the windows around it that
        give the cascade its overlapping hits.
        """
        x1, y1, x2, y2 = (int(v) for v in box)
        size = max(x2 - x1, y2 - y1)
        pad = int(size * search.margin)
        height, width = gray.shape[:2]
        rx1, ry1, rx2, ry2 = x1 - pad, y1 - pad, x2 + pad, y2 + pad
        cx1, cy1, cx2, cy2 = max(0, rx1), max(0, ry1), min(width, rx2), min(height, ry2)
        if cx1 >= cx2 or cy1 >= cy2:
            return None, (0, 0)
        region = gray[cy1:cy2, cx1:cx2]
        if search.edge_pad > 0 and (cx1, cy1, cx2, cy2) != (rx1, ry1, rx2, ry2):
            limit = int(size * search.edge_pad)
            top, left = min(limit, cy1 - ry1), min(limit, cx1 - rx1)
            region = cv2.copyMakeBorder(region, top, min(limit, ry2 - cy2), left, min(limit, rx2 - cx2),
                                        cv2.BORDER_REPLICATE)
            cx1, cy1 = cx1 - left, cy1 - top
        return region, (cx1, cy1)


def turned_back(rects: np.ndarray, turn: np.ndarray) -> np.ndarray:
    """(x, y, w, h) rectangles found in a turned image, centred where their centres were before the turn."""
    centres = rects[:, :2] + rects[:, 2:] / 2
    inverse = cv2.invertAffineTransform(turn)
    back = centres @ inverse[:, :2].T + inverse[:, 2]
    return np.concatenate([back - rects[:, 2:] / 2, rects[:, 2:]], axis=1)


def low_contrast(gray: np.ndarray) -> bool:
    """Whether a frame is dim or hazy overall: its thumbnail's grey levels spread less than LOW_CONTRAST_STD."""
    thumbnail = cv2.resize(gray, CONTRAST_THUMBNAIL, interpolation=cv2.INTER_AREA)
    return float(thumbnail.std()) < LOW_CONTRAST_STD


def centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], np.float64)


def boxes_of(faces: list[FollowedFace]) -> np.ndarray:
    return np.array([t.box for t in faces], np.int32).reshape(-1, 4)


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
