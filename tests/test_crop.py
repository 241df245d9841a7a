"""Face crops: square, padded with black outside the frame, at the classifier's input size."""

from __future__ import annotations

import numpy as np

from edge.crop import crop_faces


def test_crops_are_square_padded_and_sized():
    image = np.full((100, 200), 255, np.uint8)
    crops = crop_faces(image, np.array([[0, 0, 40, 40], [80, 20, 120, 60]]), (16, 16), margin=0.25)
    assert crops.shape == (2, 16, 16) and crops.dtype == np.uint8
    assert crops[0, 0, 0] == 0  # outside the frame: black padding
    assert (crops[1] == 255).all()  # fully inside
