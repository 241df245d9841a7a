"""Classifier: the shipped model describes itself, is refused when its metadata lies, labels real faces."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from edge.classify import DEFAULT_MODEL, Classifier, input_lookup_table, lookup, tensor_quant
from edge.config import DetectorConfig
from edge.crop import detect_and_crop
from edge.detect import make_detector
from edge.model import ModelError, ModelInfo, TensorQuant, load_model_info, metadata_path
from edge.models import SHIPPED, resolve_model
from tests.conftest import DATA


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(DEFAULT_MODEL)


def face_crops(classifier: Classifier, name: str) -> np.ndarray:
    """The faces of a sample photo, cut for the classifier's model as the detector process cuts them."""
    frame = cv2.imread(str(DATA / name))
    return detect_and_crop(make_detector(DetectorConfig()), frame, classifier.info, still=True)[1]


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


@pytest.mark.parametrize("name", SHIPPED)
def test_each_channel_of_the_input_is_normalised_then_quantized(name):
    """What classify() feeds the interpreter, per channel and in the tensor's layout, for the gray and the colour model
    (the model outputs on the sample faces hardly move when a channel's mean is wrong: checked here, not there)."""
    classifier = Classifier(resolve_model(name))
    info, quant = classifier.info, classifier.info.input_quant
    crops = np.random.default_rng(0).integers(0, 256, (3, *info.crop_shape), dtype=np.uint8)
    fed = info.to_tensor(lookup(classifier._lut, crops))
    expected = np.clip(np.round(info.network_input(crops) / quant.scale) + quant.zero_point, -128, 127)
    assert fed.shape == expected.shape and np.abs(fed.astype(int) - expected.astype(int)).max() <= 1


def test_per_channel_mean_and_std_each_get_their_own_table():
    info = ModelInfo(("a", "b"), 8, 8, color="bgr", layout="NCHW", mean=(0.1, 0.5, 0.9), std=(0.2, 0.25, 0.5))
    quant = TensorQuant("int8", 0.05, 3)
    crops = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    fed = lookup(input_lookup_table(info, quant), crops)
    expected = np.clip(np.round(info.normalize(crops) / quant.scale) + quant.zero_point, -128, 127)
    assert np.abs(fed.astype(int) - expected.astype(int)).max() <= 1
    assert len({tuple(fed[..., c].ravel()[:8]) for c in range(3)}) == 3


def test_bad_crop_shape_is_refused(classifier):
    with pytest.raises(ValueError, match=r"expected crops of shape \(n, 64, 64\)"):
        classifier.classify(np.zeros((1, 48, 48), np.uint8))
    with pytest.raises(ValueError, match="expected crops of shape"):
        classifier.classify(np.zeros((1, 64, 64, 3), np.uint8))


def test_flip_averages_the_face_and_its_mirror(classifier):
    crops = face_crops(classifier, "multi_face.jpg")
    flipped = Classifier(DEFAULT_MODEL, flip=True).classify(crops)
    expected = (classifier.classify(crops) + classifier.classify(crops[:, :, ::-1])) / 2
    np.testing.assert_allclose(flipped, expected, atol=1e-6)
    assert not np.allclose(classifier.classify(crops), classifier.classify(crops[:, :, ::-1]), atol=1e-3)


def test_one_batched_invoke_gives_the_per_face_answers(classifier):
    crops = face_crops(classifier, "multi_face.jpg")
    batched = Classifier(DEFAULT_MODEL, batch=True)
    assert batched.batch  # the model's batch dimension is dynamic
    for faces in (crops, crops[:2], crops[:1], crops):  # the input tensor is resized as the count changes
        np.testing.assert_allclose(batched.classify(faces), classifier.classify(faces), atol=1e-6)


def copy_model(tmp_path):
    model = tmp_path / "m.tflite"
    shutil.copy(DEFAULT_MODEL, model)
    shutil.copy(metadata_path(DEFAULT_MODEL), metadata_path(model))
    return model, json.loads(metadata_path(model).read_text())


@pytest.mark.parametrize("change, message", [
    ({"input_height": 48, "input_width": 48}, r"metadata says gray input 48x48x1 NHWC .* but the input tensor is"),
    ({"labels": ["a", "b", "c"]}, "metadata lists 3 labels but the output tensor has 7 classes"),
    ({"input_quant": {"dtype": "int8", "scale": 0.5, "zero_point": 3}}, "metadata says input"),
    ({"color": "rgb", "mean": [0.5, 0.5, 0.5]}, r"metadata says rgb input 64x64x3 .* input tensor is \[1, 64, 64, 1\]"),
    ({"layout": "NCHW"}, r"metadata says gray input 64x64x1 NCHW \(tensor \[N, 1, 64, 64\]\)"),
    ({"color": "purple"}, "colour must be one of"),
    ({"layout": "CHWN"}, "layout must be one of"),
    ({"mean": [0.5, 0.5]}, r"mean needs 1 value for a gray model, got \[0.5, 0.5\]"),
    ({"std": [0.0]}, "std must be > 0"),
    ({"mean": "half"}, "mean must be a number or a list of numbers"),
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
