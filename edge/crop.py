"""Face crops: the square region around each face box, resized to the classifier's input."""

from __future__ import annotations

import cv2
import numpy as np


def crop_faces(gray: np.ndarray, boxes: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """(n, h, w) uint8 square face crops, each box grown by ``margin`` of its size on every side.

    Parts of a crop outside the frame are black, as when the training faces were padded.
    """
    width, height = size
    crops = np.zeros((len(boxes), height, width), np.uint8)
    frame_h, frame_w = gray.shape[:2]
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.int64)):
        side = max(x2 - x1, y2 - y1)
        side_out = max(1, int(round(side * (1 + 2 * margin))))
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        sx1, sy1 = cx - side_out // 2, cy - side_out // 2
        sx2, sy2 = sx1 + side_out, sy1 + side_out
        inside = gray[max(0, sy1):min(frame_h, sy2), max(0, sx1):min(frame_w, sx2)]
        if inside.size == 0:
            continue
        if inside.shape != (side_out, side_out):
            square = np.zeros((side_out, side_out), np.uint8)
            oy, ox = max(0, -sy1), max(0, -sx1)
            square[oy:oy + inside.shape[0], ox:ox + inside.shape[1]] = inside
            inside = square
        crops[i] = cv2.resize(inside, (width, height), interpolation=cv2.INTER_AREA)
    return crops
