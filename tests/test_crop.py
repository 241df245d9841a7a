"""Face crops: square, padded with black outside the frame, at the classifier's input size and colour."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.config import DetectorConfig
from edge.crop import crop_faces, detect_and_crop, face_image, model_crops
from edge.detect import make_detector
from edge.model import ModelInfo
from tests.conftest import DATA


def test_crops_are_square_padded_and_sized():
    image = np.full((100, 200), 255, np.uint8)
    crops = crop_faces(image, np.array([[0, 0, 40, 40], [80, 20, 120, 60]]), (16, 16), margin=0.25)
    assert crops.shape == (2, 16, 16) and crops.dtype == np.uint8
    assert crops[0, 0, 0] == 0  # outside the frame: black padding
    assert (crops[1] == 255).all()  # fully inside


def colour_frame() -> np.ndarray:
    """A BGR frame: blue left half, red right half (B, G, R channels 0, 1, 2)."""
    frame = np.zeros((60, 120, 3), np.uint8)
    frame[:, :60] = (255, 0, 0)
    frame[:, 60:] = (0, 0, 255)
    return frame


@pytest.mark.parametrize("color, left, right", [
    ("rgb", (0, 0, 255), (255, 0, 0)),
    ("bgr", (255, 0, 0), (0, 0, 255)),
    ("gray", 29, 76),  # OpenCV's BT.601 luma of pure blue and pure red
])
def test_model_crops_follow_the_sidecar_colour(color, left, right):
    info = ModelInfo(("a", "b"), 10, 12, color=color)
    boxes = np.array([[10, 10, 40, 40], [70, 10, 100, 40]])
    crops = model_crops(colour_frame(), boxes, info)
    assert crops.shape == (2, *info.crop_shape) == (2, 10, 12, *(() if color == "gray" else (3,)))
    assert (crops[0] == left).all() and (crops[1] == right).all()


def test_gray_model_crops_are_cut_from_the_gray_frame():
    frame = cv2.imread(str(DATA / "single_face.jpg"))
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    info = ModelInfo(("a", "b"), 64, 64, face_margin=0.05)
    boxes = np.array([[157, 148, 393, 384]])
    expected = crop_faces(gray, boxes, (64, 64), 0.05)
    assert np.array_equal(model_crops(frame, boxes, info), expected)
    assert np.array_equal(model_crops(gray, boxes, info), expected)


def test_colour_model_crops_of_a_real_face_and_a_gray_face_image():
    frame = cv2.imread(str(DATA / "single_face.jpg"))
    rgb = ModelInfo(("a", "b"), 112, 112, color="rgb")
    boxes, crops = detect_and_crop(make_detector(DetectorConfig()), frame, rgb, still=True)
    assert len(boxes) == 1 and crops.shape == (1, 112, 112, 3)
    bgr_crop = crop_faces(frame, boxes, (112, 112), 0.0)[0]
    assert np.array_equal(crops[0], bgr_crop[..., ::-1])
    gray_face = np.arange(48 * 48, dtype=np.uint8).reshape(48, 48)  # a FER2013 row: gray, already a face
    assert face_image(gray_face, rgb).shape == (112, 112, 3)
    assert np.array_equal(face_image(gray_face, rgb)[..., 0], face_image(gray_face, rgb)[..., 2])
    assert face_image(gray_face, ModelInfo(("a", "b"), 64, 64)).shape == (64, 64)
