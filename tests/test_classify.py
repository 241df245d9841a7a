"""Classifier: the shipped model describes itself, is refused when its metadata lies, labels real faces."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from edge.classify import DEFAULT_MODEL, Classifier, input_lookup_table, tensor_quant
from edge.config import DetectorConfig
from edge.crop import crop_faces
from edge.detect import make_detector
from edge.model import ModelError, TensorQuant, load_model_info, metadata_path
from tests.conftest import DATA


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(DEFAULT_MODEL)


def face_crops(classifier: Classifier, name: str) -> np.ndarray:
    image = cv2.imread(str(DATA / name))
    boxes = make_detector(DetectorConfig()).detect(image, still=True).xyxy
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return crop_faces(gray, boxes, classifier.info.input_size, classifier.info.face_margin)


def test_default_model_is_full_integer_and_self_describing(classifier):
    info = classifier.info
    assert info.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert (info.input_height, info.input_width) == (64, 64)
    assert info.input_quant is not None and info.input_quant.dtype == "int8"
    assert info.output_quant is not None and info.output_quant.dtype == "int8"
    assert DEFAULT_MODEL.stat().st_size <= 150_000


def test_every_face_of_the_group_photo_gets_probabilities_in_label_order(classifier):
    crops = face_crops(classifier, "multi_face.jpg")
    probs = classifier.classify(crops)
    assert probs.shape == (5, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.03)
    # Everyone in this photo smiles broadly; the model must see it in most faces.
    assert (probs.argmax(axis=1) == 3).sum() >= 3


def test_lookup_table_equals_normalise_then_quantize(classifier):
    info = classifier.info
    quant = info.input_quant
    lut = input_lookup_table(info, quant)
    pixels = np.arange(256, dtype=np.uint8)
    expected = np.clip(np.round(((pixels / 255.0 - info.mean) / info.std) / quant.scale) + quant.zero_point,
                       -128, 127)
    assert np.abs(lut.astype(int) - expected.astype(int)).max() <= 1
    assert input_lookup_table(info, TensorQuant("float32")).dtype == np.float32


def test_bad_crop_shape_is_refused(classifier):
    with pytest.raises(ValueError, match="expected crops of shape"):
        classifier.classify(np.zeros((1, 48, 48), np.uint8))


def copy_model(tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copy(DEFAULT_MODEL, model)
    shutil.copy(metadata_path(DEFAULT_MODEL), metadata_path(model))
    return model, json.loads(metadata_path(model).read_text())


@pytest.mark.parametrize("change, message", [
    ({"input_height": 48, "input_width": 48}, "metadata says input 48x48x1 but the input tensor is"),
    ({"labels": ["a", "b", "c"]}, "metadata lists 3 labels but the output tensor has 7 classes"),
    ({"input_quant": {"dtype": "int8", "scale": 0.5, "zero_point": 3}}, "metadata says input"),
    ({"color": "rgb"}, "colour must be one of"),
    ({"format": "other/9"}, "unknown metadata format"),
    ({"extra_key": 1}, "unknown metadata keys"),
])
def test_a_model_whose_metadata_disagrees_with_its_tensors_is_refused(tmp_path, change, message):
    model, meta = copy_model(tmp_path)
    meta.update(change)
    metadata_path(model).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=message):
        Classifier(model)


def test_missing_or_corrupt_model_files(tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        load_model_info(tmp_path / "none.tflite")
    model, _ = copy_model(tmp_path)
    metadata_path(model).unlink()
    with pytest.raises(ModelError, match="model metadata not found"):
        Classifier(model)
    model, _ = copy_model(tmp_path)
    model.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelError, match="not a loadable TFLite model"):
        Classifier(model)
    metadata_path(model).write_text("{broken")
    with pytest.raises(ModelError, match="not valid JSON"):
        Classifier(model)


def test_tensor_quant_reads_interpreter_details(classifier):
    detail = classifier.interpreter.get_input_details()[0]
    assert tensor_quant(detail) == classifier.info.input_quant
