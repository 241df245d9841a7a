"""Face crops: the square region around each face box, resized and converted to the classifier's input."""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge.model import ModelInfo

if TYPE_CHECKING:  # edge.detect builds detectors; a crop only needs one to call
    from edge.detect import FaceDetector

# frame channels -> model colour -> OpenCV conversion (None: the pixels are already in that order)
CONVERSIONS = {
    (1, "gray"): None, (1, "rgb"): cv2.COLOR_GRAY2RGB, (1, "bgr"): cv2.COLOR_GRAY2BGR,
    (3, "gray"): cv2.COLOR_BGR2GRAY, (3, "rgb"): cv2.COLOR_BGR2RGB, (3, "bgr"): None,
}


def crop_faces(image: np.ndarray, boxes: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """(n, h, w) or (n, h, w, c) uint8 square face crops, each box grown by ``margin`` of its size on every side.

    ``image`` is (H, W) or (H, W, c); the crops keep its channels. Parts of a crop outside the
    frame are black, as when the training faces were padded.
    """
    width, height = size
    crops = np.zeros((len(boxes), height, width, *image.shape[2:]), np.uint8)
    frame_h, frame_w = image.shape[:2]
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.int64)):
        side = max(x2 - x1, y2 - y1)
        side_out = max(1, int(round(side * (1 + 2 * margin))))
        cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
        sx1, sy1 = cx - side_out // 2, cy - side_out // 2
        sx2, sy2 = sx1 + side_out, sy1 + side_out
        inside = image[max(0, sy1):min(frame_h, sy2), max(0, sx1):min(frame_w, sx2)]
        if inside.size == 0:
            continue
        if inside.shape[:2] != (side_out, side_out):
            square = np.zeros((side_out, side_out, *image.shape[2:]), np.uint8)
            oy, ox = max(0, -sy1), max(0, -sx1)
            square[oy:oy + inside.shape[0], ox:ox + inside.shape[1]] = inside
            inside = square
        crops[i] = cv2.resize(inside, (width, height), interpolation=cv2.INTER_AREA)
    return crops


def to_model_color(images: np.ndarray, color: str, channels: int) -> np.ndarray:
    """(n, h, w) gray or (n, h, w, 3) BGR images -> the model's colour: (n, h, w) gray or (n, h, w, 3) RGB/BGR."""
    code = CONVERSIONS[channels, color]
    if code is None or not len(images):
        return images
    n, h, w = images.shape[:3]
    tiled = cv2.cvtColor(images.reshape(n * h, w, *images.shape[3:]), code)  # one call for every crop
    return tiled.reshape(n, h, w, *tiled.shape[2:])


def model_crops(frame: np.ndarray, boxes: np.ndarray, info: ModelInfo) -> np.ndarray:
    """The model's input faces cut from a BGR (H, W, 3) or gray (H, W) frame: size, margin, colour from its sidecar.

    A gray model's crops are cut from the gray frame, as its faces were converted in training
    (as fast as converting the crops for one face, faster for more); a colour model's crops are
    cut in BGR and converted, the crops being smaller than the frame.
    """
    if info.channels == 1 and frame.ndim == 3:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    crops = crop_faces(frame, boxes, info.input_size, info.face_margin)
    return to_model_color(crops, info.color, 1 if frame.ndim == 2 else 3)


def detect_and_crop(detector: FaceDetector, frame: np.ndarray, info: ModelInfo,
                    still: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Face boxes (n, 4) and the model's crops of one BGR frame, as the detector process makes them."""
    boxes = detector.detect(frame, still=still).xyxy
    return boxes, model_crops(frame, boxes, info)


def face_image(image: np.ndarray, info: ModelInfo) -> np.ndarray:
    """A ready-made face image (a FER2013 row, a cropped face file) as one model input crop (*crop_shape)."""
    grow = image.shape[0] < info.input_height or image.shape[1] < info.input_width
    resized = cv2.resize(image, info.input_size, interpolation=cv2.INTER_LINEAR if grow else cv2.INTER_AREA)
    return to_model_color(resized[np.newaxis], info.color, 1 if image.ndim == 2 else 3)[0]
