"""The model contract: sidecars of both formats, every colour and layout, and models chosen by name."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edge.model import METADATA_FORMAT, ModelError, ModelInfo, load_model_info, metadata_path, read_metadata
from edge.models import DEFAULT_MODEL, SHIPPED, model_name, resolve_model


def v1_sidecar(info: ModelInfo) -> dict:
    """The shipped model's sidecar as fer-edge-model/1 wrote it: grayscale, scalar mean/std, no layout."""
    data = info.to_json()
    data.update(format="fer-edge-model/1", color="grayscale", mean=info.mean[0], std=info.std[0])
    del data["layout"]
    return data


def test_old_sidecars_still_load_as_the_new_format(tmp_path):
    shipped = load_model_info(DEFAULT_MODEL)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(v1_sidecar(shipped)))
    old = read_metadata(path)
    assert old == shipped
    assert (old.color, old.layout, old.mean, old.std, old.channels) == ("gray", "NHWC", (0.5,), (0.5,), 1)
    assert old.to_json()["format"] == METADATA_FORMAT == json.loads(metadata_path(DEFAULT_MODEL).read_text())["format"]


def test_sidecar_round_trips_per_channel_normalisation():
    info = ModelInfo(("a", "b"), 112, 96, color="rgb", layout="NCHW", mean=[0.48, 0.46, 0.41], std=(0.23, 0.22, 0.23))
    again = ModelInfo.from_json(json.loads(json.dumps(info.to_json())))
    assert again == info and again.mean == (0.48, 0.46, 0.41)
    assert (info.channels, info.crop_shape, info.input_size) == (3, (112, 96, 3), (96, 112))
    assert info.tensor_shape(5) == (5, 3, 112, 96)


@pytest.mark.parametrize("color, layout, crop, tensor", [
    ("gray", "NHWC", (4, 6), (2, 4, 6, 1)),
    ("gray", "NCHW", (4, 6), (2, 1, 4, 6)),
    ("rgb", "NHWC", (4, 6, 3), (2, 4, 6, 3)),
    ("bgr", "NCHW", (4, 6, 3), (2, 3, 4, 6)),
])
def test_network_input_normalises_each_channel_in_the_tensor_layout(color, layout, crop, tensor):
    channels = 1 if color == "gray" else 3
    mean, std = [0.1, 0.2, 0.3][:channels], [0.5, 0.25, 1.0][:channels]
    info = ModelInfo(("a", "b"), 8, 8, color=color, layout=layout, mean=mean, std=std)
    crops = np.random.default_rng(0).integers(0, 256, (2, *crop), dtype=np.uint8)
    x = info.network_input(crops)
    assert x.shape == tensor and x.dtype == np.float32
    channels_last = x if layout == "NHWC" else x.transpose(0, 2, 3, 1)
    for c in range(channels):
        expected = (crops.reshape(2, *crop[:2], channels)[..., c] / 255.0 - mean[c]) / std[c]
        np.testing.assert_allclose(channels_last[..., c], expected, rtol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"color": "rgb", "mean": (0.1, 0.2)}, r"mean needs 1 or 3 values for a rgb model"),
    ({"color": "grey"}, "colour must be one of"),
    ({"layout": "HWC"}, "layout must be one of"),
    ({"std": (1.0, -1.0, 1.0), "color": "bgr"}, "std must be > 0"),
    ({"face_margin": 1.5}, r"face_margin must be in \[0, 1\]"),
])
def test_bad_contract_values_are_one_line_errors(kwargs, message):
    with pytest.raises(ModelError, match=message):
        ModelInfo(("a", "b"), 16, 16, **kwargs)


def test_models_are_chosen_by_name_or_path(tmp_path):
    assert resolve_model(None) == resolve_model("") == DEFAULT_MODEL
    assert resolve_model("fer2013-mini-xception") == DEFAULT_MODEL
    assert model_name(DEFAULT_MODEL) == "fer2013-mini-xception"
    copy = tmp_path / "mine.tflite"
    shutil.copy(DEFAULT_MODEL, copy)
    assert resolve_model(str(copy)) == copy and model_name(copy) == "mine"
    assert resolve_model("no/such/model.tflite").name == "model.tflite"  # a path: loading it says what is wrong
    with pytest.raises(ModelError, match=r"'nonesuch' is neither a file nor a shipped model \(fer2013-mini-xception"):
        resolve_model("nonesuch")
    for name, file in SHIPPED.items():
        assert (DEFAULT_MODEL.parent / file).is_file(), f"{name} is listed but not shipped"


@pytest.mark.parametrize("model", ["fer2013-mini-xception", "face-api-expression"])
def test_the_sample_clip_end_to_end_with_a_gray_and_a_colour_model(tmp_path, model):
    """edge.run by model name: every frame's event, probabilities in the model's labels, the expressions read right.

    The clip (labelled by eye, benchmarks/labelled_samples.py) is neutral in frames 0-15 and grins in 24-66.
    """
    import subprocess
    import sys

    from tests.conftest import DATA, ROOT

    events = tmp_path / "faces.jsonl"
    result = subprocess.run([sys.executable, "-m", "edge.run", "--source", str(DATA / "single_face.mp4"), "--headless",
                             "--events", str(events), "--model", model], cwd=ROOT, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr
    info = load_model_info(resolve_model(model))
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert len(records) == 72
    faces = [(r["frame"], f) for r in records for f in r["faces"]]
    assert len(faces) >= 70 and all(tuple(f["probs"]) == info.labels for _, f in faces)
    raw = {frame: face["raw_label"] for frame, face in faces}
    neutral = [raw[i] == "neutral" for i in range(16) if i in raw]
    happy = [raw[i] == "happy" for i in range(24, 67) if i in raw]
    assert np.mean(neutral) >= 0.8 and np.mean(happy) >= 0.9, (model, raw)
