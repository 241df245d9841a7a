"""BlazeFace backend of the detector stage: MediaPipe's short-range face detector on LiteRT, boxes made Haar-like.

The model (``edge/models/face_detection_short_range.tflite``, Apache-2.0, extracted from the
``mediapipe`` wheel by ``python -m convert.blazeface``) takes a 128x128 RGB image in [-1, 1] and
scores 896 SSD anchors, each with a box and six keypoints (eyes, nose tip, mouth, ears). The
frame is letterboxed into that square; the anchors' outputs are decoded, merged by weighted
non-maximum suppression, and mapped back to the frame. Faces smaller than the model sees in the
whole frame are looked for in tiles, one tile a frame, and followed in a crop around each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.boxes import iou_matrix
from edge.config import BlazeFaceConfig
from edge.detect import DetectorError, Detections

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth", "right_ear", "left_ear")  # the model's output order
COORDS = 4 + 2 * len(KEYPOINTS)  # per anchor: box centre offset and size, then (x, y) per keypoint
SCORE_CLIP = 100.0  # logits are clipped to +-this before the sigmoid, as MediaPipe does
# A MediaPipe box spans brows to chin, tighter than the Haar box the classifier's crop and margin
# were made for. From BlazeFace and Haar boxes of the same faces (tests/data photos and clip):
HAAR_SIDE = 1.15  # the Haar box's side, x the BlazeFace box's (square) side: median over the sample and stress faces, 10-90% 0.93-1.26
HAAR_SHIFT_Y = -0.16  # its centre lies this x the BlazeFace box's side above the box's centre (10-90%: -0.18 to -0.13)
FOLLOW_CONTEXT = 2.4  # a followed face is looked for in a square this x its size around it ...
FOLLOW_MAX_FACE = 0.2  # ... while it is smaller than this share of the frame's longer side (larger ones the
# whole-frame pass finds); a followed face not found for FOLLOW_MISSES frames is dropped
FOLLOW_MISSES = 3
PROPOSAL_MIN_SCORE = 0.5  # a tile proposes a face at MediaPipe's own threshold; its crop then decides
KNOWN_FACE_IOU = 0.5  # a tile's proposal this close to a face already found is that face
SAME_FACE_IOU = 0.3  # a proposal or followed box this close to a face found is that face
TILE_OVERLAP = 0.25  # tiles overlap by this share of their side, so a small face lies whole in one


@dataclass(frozen=True)
class ModelSpec:
    """What the runtime must know of a BlazeFace model that its tensors do not say: its anchor grid."""

    file: str
    side: int  # input is side x side x 3
    strides: tuple[int, ...]  # one per SSD layer; layers of equal stride share a feature map
    interpolated_ratio: float  # > 0: each layer adds an anchor at the geometric mean of its and the next scale

    @property
    def anchors(self) -> int:
        return len(ssd_anchors(self))


# The models MediaPipe ships, and their anchor settings (face_detection_short_range.pbtxt, face_detection.pbtxt).
SHORT_RANGE = ModelSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), 1.0)
DEFAULT_MODEL = MODELS_DIR / SHORT_RANGE.file


def ssd_anchors(spec: ModelSpec) -> np.ndarray:
    """(n, 2) anchor centres, normalised to the input, in the order of the model's outputs.

    Layers of equal stride share one feature map; each cell gets one anchor per layer sharing
    it, plus one interpolated anchor per layer where ``interpolated_ratio`` > 0. The anchors
    have a fixed size of 1, so only their centres matter.
    """
    centres = []
    layer = 0
    while layer < len(spec.strides):
        same = layer
        per_cell = 0
        while same < len(spec.strides) and spec.strides[same] == spec.strides[layer]:
            per_cell += 2 if spec.interpolated_ratio > 0 else 1
            same += 1
        cells = int(np.ceil(spec.side / spec.strides[layer]))
        ys, xs = np.mgrid[0:cells, 0:cells]
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 1, 2)
        centres.append(np.repeat(grid, per_cell, axis=1).reshape(-1, 2))
        layer = same
    return np.concatenate(centres).astype(np.float32)


def decode(raw: np.ndarray, logits: np.ndarray, anchors: np.ndarray, side: int, min_score: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Anchors scoring at least ``min_score``: boxes (k, 4) xyxy, keypoints (k, 6, 2), scores (k,), all normalised."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = np.flatnonzero(scores >= min_score)
    raw, centres = raw[keep] / side, anchors[keep]
    middle, size = raw[:, 0:2] + centres, raw[:, 2:4]
    boxes = np.concatenate([middle - size / 2, middle + size / 2], axis=1)
    keypoints = raw[:, 4:COORDS].reshape(-1, len(KEYPOINTS), 2) + centres[:, None, :]
    return boxes, keypoints, scores[keep]


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: the best box and all boxes overlapping it by more than
    ``iou`` become one detection, their score-weighted mean (box and keypoints), with the best one's score."""
    order = np.argsort(-scores, kind="stable")
    boxes, keypoints, scores = boxes[order], keypoints[order], scores[order]
    remaining = np.ones(len(boxes), bool)
    out_boxes, out_points, out_scores = [], [], []
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        group = remaining & (iou_matrix(boxes, boxes[i:i + 1])[:, 0] > iou)
        group[i] = True
        weights = scores[group][:, None]
        out_boxes.append((boxes[group] * weights).sum(axis=0) / weights.sum())
        out_points.append((keypoints[group] * weights[:, :, None]).sum(axis=0) / weights.sum())
        out_scores.append(scores[i])
        remaining &= ~group
    if not out_boxes:
        return np.zeros((0, 4), np.float32), np.zeros((0, len(KEYPOINTS), 2), np.float32), np.zeros(0, np.float32)
    return np.array(out_boxes), np.array(out_points), np.array(out_scores)


def merged(found: list[tuple[np.ndarray, np.ndarray, np.ndarray]], iou: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several views' detections of one frame as one set: where views overlap, the best-scoring one is kept.

    Within a view MediaPipe's weighted NMS merges the anchors of one face; across views of
    different zoom a face's boxes differ in quality (a crop sees a small face better than the
    whole frame does), so they are not averaged.
    """
    boxes, points, scores = (np.concatenate([f[k] for f in found]) for k in range(3))
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    for i in order:
        if not keep or iou_matrix(boxes[i:i + 1], boxes[keep])[0].max() <= iou:
            keep.append(int(i))
    return boxes[keep], points[keep], scores[keep]


def haar_like(boxes: np.ndarray) -> np.ndarray:
    """BlazeFace boxes (n, 4) xyxy -> square boxes framed as the Haar cascade frames a face."""
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = HAAR_SIDE * np.maximum(width, height)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + HAAR_SHIFT_Y * height
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


@dataclass(frozen=True)
class View:
    """A square part of the frame (frame pixels), as the model sees it after letterboxing."""

    x: int
    y: int
    side: int

    @classmethod
    def around(cls, x: float, y: float, side: float) -> View:
        return cls(int(round(x)), int(round(y)), max(1, int(round(side))))

    def to_frame(self, points: np.ndarray) -> np.ndarray:
        """Normalised (x, y) pairs in the view, in any array of shape (..., 2), -> frame pixels."""
        return points * self.side + np.array([self.x, self.y])


def square_views(width: int, height: int, side: int) -> list[View]:
    """Square tiles of ``side`` pixels covering the frame, overlapping by at least TILE_OVERLAP."""
    def starts(length: int) -> list[float]:
        if length <= side:
            return [(length - side) / 2]
        count = int(np.ceil((length - side * TILE_OVERLAP) / (side * (1 - TILE_OVERLAP))))
        return list(np.linspace(0, length - side, max(count, 2)))
    return [View.around(x, y, side) for y in starts(height) for x in starts(width)]


class BlazeFaceDetector:
    """Finds faces with BlazeFace: the whole frame every frame, small faces in tiles and around where they were."""

    def __init__(self, config: BlazeFaceConfig) -> None:
        from edge.classify import make_interpreter
        from edge.model import ModelError

        self.config = config
        self.spec = SHORT_RANGE
        path = Path(config.model).expanduser() if config.model else DEFAULT_MODEL
        if not path.is_file():
            hint = " (python -m convert.blazeface writes it)" if not config.model else ""
            raise DetectorError(f"BlazeFace model not found: {path}{hint}")
        try:
            self.interpreter = make_interpreter(path, num_threads=config.threads)
        except ModelError as exc:
            raise DetectorError(str(exc)) from None
        self._check(path)
        self.anchors = ssd_anchors(self.spec)
        self.followed: list[tuple[np.ndarray, int]] = []  # small faces and candidates: box (frame pixels), misses
        self._frames = 0

    def _check(self, path: Path) -> None:
        """Refuse a model whose tensors are not BlazeFace short-range's: its outputs would decode to garbage."""
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        side, n = self.spec.side, self.spec.anchors
        shapes = sorted(tuple(int(d) for d in o["shape"]) for o in outputs)
        if (len(inputs) != 1 or tuple(int(d) for d in inputs[0]["shape"]) != (1, side, side, 3)
                or np.dtype(inputs[0]["dtype"]) != np.float32 or shapes != [(1, n, 1), (1, n, COORDS)]):
            got = [tuple(int(d) for d in i["shape"]) for i in inputs]
            raise DetectorError(f"model {path.name} is not a BlazeFace short-range model: expected input "
                                f"(1, {side}, {side}, 3) float32 and outputs (1, {n}, {COORDS}), (1, {n}, 1); "
                                f"got input {got} and outputs {shapes}")
        self._input = inputs[0]["index"]
        by_width = {int(o["shape"][-1]): o["index"] for o in outputs}
        self._boxes, self._scores = by_width[COORDS], by_width[1]

    def detect(self, frame: np.ndarray, still: bool = False) -> Detections:
        """The faces of a BGR frame.

        The whole frame, letterboxed, finds faces down to about a tenth of its longer side. Smaller
        ones are looked for in tiles (one a frame; all of them in a photo or a video's first frame):
        a tile's find is only a candidate, shown once a crop around it, where the face fills the
        model's view, finds it with ``crop_min_score`` (tiles zoomed into lettering or textures
        propose faces; the crop rarely agrees). A small face is then followed in such a crop.
        """
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        height, width = frame.shape[:2]
        if still:
            self.followed = []
        longer = max(width, height)  # the whole frame, letterboxed into the square
        found = [self.run(frame, View.around((width - longer) / 2, (height - longer) / 2, longer),
                          self.config.min_score)]
        found += [self.run(frame, self.follow_view(box), self.config.crop_min_score) for box, _ in self.followed]
        boxes, points, scores = merged(found, self.config.nms_iou)
        first = still or self._frames == 0
        candidates = self.candidates(frame, haar_like(boxes), scan_all=first)
        if first and len(candidates):  # every tile was scanned: the candidates' crops look now, not next frame
            found += [self.run(frame, self.follow_view(box), self.config.crop_min_score) for box in candidates]
            boxes, points, scores = merged(found, self.config.nms_iou)
            candidates = np.zeros((0, 4))
        faces = haar_like(boxes)
        if not still:
            self.remember(faces, candidates, width, height)
        self._frames += 1
        return Detections(np.round(faces), scores, points)

    def candidates(self, frame: np.ndarray, faces: np.ndarray, scan_all: bool) -> np.ndarray:
        """Faces this frame's tile(s) propose that are not known yet: Haar-like boxes, to be confirmed."""
        height, width = frame.shape[:2]
        tiles = self.tiles(width, height)
        if not tiles:
            return np.zeros((0, 4))
        chosen = tiles if scan_all else [tiles[self._frames % len(tiles)]]
        boxes, _, _ = merged([self.run(frame, tile, PROPOSAL_MIN_SCORE) for tile in chosen], self.config.nms_iou)
        proposed = haar_like(boxes)
        known = np.concatenate([faces.reshape(-1, 4), np.array([b for b, _ in self.followed]).reshape(-1, 4)])
        if len(proposed) and len(known):
            proposed = proposed[iou_matrix(proposed, known).max(axis=1) < KNOWN_FACE_IOU]
        return proposed

    def tiles(self, width: int, height: int) -> list[View]:
        """Square tiles of 1/``tiles`` of the frame's shorter side, for faces too small for the whole-frame pass."""
        if self.config.tiles == 0:
            return []
        return square_views(width, height, int(min(width, height) / self.config.tiles))

    def follow_view(self, box: np.ndarray) -> View:
        """The square around a small face that the model looks at next frame."""
        side = FOLLOW_CONTEXT * max(box[2] - box[0], box[3] - box[1])
        return View.around((box[0] + box[2] - side) / 2, (box[1] + box[3] - side) / 2, side)

    def remember(self, faces: np.ndarray, candidates: np.ndarray, width: int, height: int) -> None:
        """What the next frame follows in crops: the small faces shown now, those missed for less than
        FOLLOW_MISSES frames, and the new candidates (one chance each)."""
        small = [f for f in faces if max(f[2] - f[0], f[3] - f[1]) < FOLLOW_MAX_FACE * max(width, height)]
        kept = [(f, 0) for f in small]
        for box, missed in self.followed:
            seen = bool(len(faces)) and iou_matrix(box[None], faces)[0].max() >= SAME_FACE_IOU
            if not seen and missed + 1 < FOLLOW_MISSES:
                kept.append((box, missed + 1))
        kept += [(box, FOLLOW_MISSES - 1) for box in candidates]
        self.followed = kept

    def run(self, frame: np.ndarray, view: View, min_score: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The model on one square view of the frame: boxes and keypoints in frame pixels, and scores."""
        self.interpreter.set_tensor(self._input, self.input_tensor(frame, view))
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self._boxes)[0]
        logits = self.interpreter.get_tensor(self._scores)[0]
        boxes, points, scores = weighted_nms(*decode(raw, logits, self.anchors, self.spec.side, min_score),
                                             self.config.nms_iou)
        return view.to_frame(boxes.reshape(-1, 2, 2)).reshape(-1, 4), view.to_frame(points), scores

    def input_tensor(self, frame: np.ndarray, view: View) -> np.ndarray:
        """The view cut from the frame (black where it reaches outside), resized to the input, RGB in [-1, 1]."""
        height, width = frame.shape[:2]
        x1, y1, x2, y2 = view.x, view.y, view.x + view.side, view.y + view.side
        crop = frame[max(0, y1):min(height, y2), max(0, x1):min(width, x2)]
        if (x1, y1, x2, y2) != (max(0, x1), max(0, y1), min(width, x2), min(height, y2)):
            crop = cv2.copyMakeBorder(crop, max(0, -y1), max(0, y2 - height), max(0, -x1), max(0, x2 - width),
                                      cv2.BORDER_CONSTANT, value=0)
        side = self.spec.side
        square = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA if crop.shape[0] > side else cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(square, cv2.COLOR_BGR2RGB)
        return (rgb.astype(np.float32) * (2.0 / 255.0) - 1.0)[None]
