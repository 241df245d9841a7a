"""convert/: every quantization mode loads in the runtime, metadata round-trips, the shipped model agrees with its float original, bad inputs fail in one line."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert import ConvertError
from convert.faces import collect_faces, held_out_by_position, held_out_interleaved, video_frames
from edge.classify import DEFAULT_MODEL, Classifier, make_interpreter, tensor_quant
from edge.crop import model_crops
from edge.model import FER2013_LABELS, ModelInfo, load_model_info, metadata_path
from edge.models import resolve_model
from tests.conftest import DATA, ROOT

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras 3 internals on NumPy 2

TINY_SIZE = 32  # pixels, input side of the test model
MIN_AGREEMENT = 0.98  # int8 vs float top-1, the shipped model's target
MAX_MODEL_BYTES = 150 * 1024


def run_convert(*args: str, module: str = "convert", timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m convert ...` in a child process, as a user would run it."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0], errors[0]


# ---------------------------------------------------------------- the shipped models

# name -> (golden file of reference probabilities, mean |prob diff| bound of the int8 model, licence file)
SHIPPED_MODELS = {
    "fer2013-mini-xception": ("fer2013_mini_xception.golden.json", 0.006, "LICENSE-fer.txt"),
    "face-api-expression": ("face_api_expression.golden.json", 0.006, "LICENSE-face-api.txt"),
}


def golden_crops(golden: dict, info: ModelInfo) -> np.ndarray:
    """Cut every golden face from its frame with the runtime's model_crops and the stored box."""
    frames: dict[tuple[str, int], np.ndarray] = {}
    wanted = {(f["source"], f["index"]) for f in golden["faces"]}
    for source in sorted({s for s, _ in wanted}):
        path = ROOT / source
        if path.suffix == ".mp4":
            for index, frame in enumerate(video_frames(path)):
                if (source, index) in wanted:
                    frames[source, index] = frame
        else:
            frames[source, 0] = cv2.imread(str(path))
    assert (tuple(golden["input_size"]), golden["face_margin"]) == (info.input_size, info.face_margin)
    return np.concatenate([model_crops(frames[f["source"], f["index"]], np.array([f["box"]]), info)
                           for f in golden["faces"]])


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_models_agree_with_their_float_originals_on_real_faces(name):
    """The int8 model against its golden reference (fer: Keras float; face-api: face-api's own JavaScript)."""
    golden_file, max_mean_diff, _ = SHIPPED_MODELS[name]
    golden = json.loads((DEFAULT_MODEL.parent / golden_file).read_text())
    classifier = Classifier(resolve_model(name), num_threads=1)
    assert classifier.info.face_margin == golden["face_margin"] and classifier.info.color == golden.get("color", "gray")
    assert list(classifier.labels) == golden["labels"]
    probs = classifier.classify(golden_crops(golden, classifier.info))
    reference = np.array([f["probs"] for f in golden["faces"]])
    held_out = np.array([f["held_out"] for f in golden["faces"]])
    agree = probs.argmax(1) == reference.argmax(1)
    assert held_out.sum() >= 30 and (~held_out).sum() >= 30
    assert agree[held_out].mean() >= MIN_AGREEMENT
    assert agree.mean() >= MIN_AGREEMENT
    assert np.abs(probs - reference).mean() < max_mean_diff
    assert np.allclose(probs.sum(1), 1.0, atol=0.02)


@pytest.mark.parametrize("name", SHIPPED_MODELS)
def test_shipped_models_describe_themselves(name):
    path = resolve_model(name)
    info = load_model_info(path)
    interpreter = make_interpreter(path)
    assert info.input_quant == tensor_quant(interpreter.get_input_details()[0])
    assert info.output_quant == tensor_quant(interpreter.get_output_details()[0])
    assert info.input_quant.dtype == "int8" and info.output_quant.dtype == "int8"
    report = json.loads(path.with_name(path.stem + ".report.json").read_text())
    assert report["validation"]["held_out"] and report["validation"]["converted"]["top1_agreement"] >= MIN_AGREEMENT
    assert (path.parent / SHIPPED_MODELS[name][2]).read_text().startswith("MIT License")
    assert (path.parent / f"{path.stem}.md").read_text().startswith(f"# `{name}`")
    if name == "face-api-expression":
        assert (info.color, info.input_size, info.std) == ("rgb", (112, 112), (1.0,))
        assert info.provenance["js_reference"]["max_abs_prob_diff"] < 1e-4
        assert info.provenance["upstream"]["package"] == "@vladmandic/face-api@1.7.15"


def test_default_model_describes_itself():
    info = load_model_info(DEFAULT_MODEL)
    assert info.labels == FER2013_LABELS
    assert (info.input_height, info.input_width, info.color, info.mean, info.std) == (64, 64, "gray", (0.5,), (0.5,))
    assert DEFAULT_MODEL.stat().st_size <= MAX_MODEL_BYTES


# ---------------------------------------------------------------- a tiny Keras model, every mode

@pytest.fixture(scope="module")
def tf():
    from convert.tflite import import_tensorflow

    try:
        return import_tensorflow()
    except ConvertError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def tiny_info() -> ModelInfo:
    return ModelInfo(FER2013_LABELS, TINY_SIZE, TINY_SIZE, mean=0.5, std=0.5, face_margin=0.1)


@pytest.fixture(scope="module")
def tiny_keras(tf, tmp_path_factory) -> Path:
    """A small CNN trained for a few seconds on synthetic images (class = brightness band)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, 700)
    images = rng.normal(labels[:, None, None, None] / 7.0 - 0.5, 0.2, (700, TINY_SIZE, TINY_SIZE, 1)).astype(np.float32)
    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((TINY_SIZE, TINY_SIZE, 1)),
        tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        tf.keras.layers.BatchNormalization(),
        tf.keras.layers.SeparableConv2D(16, 3, strides=2, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(7, activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=3, batch_size=64, verbose=0)
    folder = tmp_path_factory.mktemp("tiny")
    model.save(folder / "tiny.keras")
    model.save(folder / "tiny.h5")
    return folder / "tiny.keras"


@pytest.fixture(scope="module")
def faces(tiny_info):
    """Real face crops: photos calibrate, the video's second half is held out."""
    return collect_faces(tiny_info, [DATA / "single_face.jpg", DATA / "multi_face.jpg", DATA / "single_face.mp4"],
                         holdout=0.5, augment=True)


@pytest.mark.parametrize("quant, dtype", [("int8", "int8"), ("float16", "float32"),
                                          ("dynamic", "float32"), ("none", "float32")])
def test_every_mode_loads_in_the_runtime(tf, tiny_keras, tiny_info, faces, tmp_path, quant, dtype):
    from convert.build import write_model
    from convert.tflite import convert_model, keras_probabilities, load_keras_model

    model = load_keras_model(tiny_keras)
    out = tmp_path / f"tiny_{quant}.tflite"
    write_model(convert_model(model, quant, faces.calibration.crops, tiny_info), out, tiny_info)
    classifier = Classifier(out, num_threads=1)
    assert classifier.info.input_quant.dtype == dtype
    probs = classifier.classify(faces.validation.crops)
    assert probs.shape == (len(faces.validation), 7)
    assert np.allclose(probs.sum(axis=1), 1.0, atol=0.03)
    reference = keras_probabilities(model, faces.validation.crops, tiny_info)
    assert np.abs(probs - reference).mean() < (0.05 if quant == "int8" else 0.01)


def test_h5_and_keras_files_convert_alike(tf, tiny_keras, tiny_info, faces):
    from convert.tflite import keras_probabilities, load_keras_model

    a = keras_probabilities(load_keras_model(tiny_keras), faces.validation.crops, tiny_info)
    b = keras_probabilities(load_keras_model(tiny_keras.with_suffix(".h5")), faces.validation.crops, tiny_info)
    assert np.allclose(a, b, atol=1e-5)


@pytest.fixture(scope="module")
def cli_run(tiny_keras, tmp_path_factory):
    """One full `python -m convert` run; the training sidecar beside the Keras model gives the labels."""
    labels = ("a", "b", "c", "d", "e", "f", "g")
    trained = ModelInfo(labels, TINY_SIZE, TINY_SIZE, mean=0.5, std=0.5, face_margin=0.1,
                        provenance={"dataset": "synthetic"})
    metadata_path(tiny_keras).write_text(json.dumps(trained.to_json()))
    out = tmp_path_factory.mktemp("cli") / "tiny_int8.tflite"
    result = run_convert("--keras", str(tiny_keras), "--out", str(out), "--face-margin", "0.08",
                         "--calib", "tests/data/single_face.jpg", "tests/data/multi_face.jpg",
                         "tests/data/single_face.mp4", "--augment", "--latency-runs", "20",
                         "--min-agreement", "0.5")
    return result, out, trained


def test_cli_writes_model_metadata_and_report(cli_run):
    result, out, trained = cli_run
    assert result.returncode == 0, result.stderr
    assert "top-1 agreement" in result.stdout and "held-out" in result.stdout
    info = load_model_info(out)
    assert info.labels == trained.labels and (info.mean, info.std) == ((0.5,), (0.5,))
    assert info.face_margin == 0.08  # the command line wins over the training sidecar
    assert info.provenance["training"] == {"dataset": "synthetic"}
    assert info.provenance["quantization"] == "int8" and info.provenance["per_channel"] is True
    interpreter = make_interpreter(out)
    assert info.input_quant == tensor_quant(interpreter.get_input_details()[0])
    assert info.output_quant == tensor_quant(interpreter.get_output_details()[0])
    assert info.input_quant.dtype == "int8"
    report = json.loads(out.with_name("tiny_int8.report.json").read_text())
    validation = report["validation"]
    assert validation["held_out"] and validation["faces"] >= 30
    assert [s["source"] for s in validation["sources"]] == ["tests/data/single_face.mp4"]
    assert validation["sources"][0]["first"] >= 36  # only the second half of the clip
    assert all(s["source"] != "tests/data/single_face.mp4" or s["last"] <= 35
               for s in report["calibration"]["sources"])
    assert report["size_bytes"]["converted"] == out.stat().st_size
    assert report["latency_ms"]["converted"]["median"] > 0


def test_metadata_round_trips(cli_run):
    _, out, _ = cli_run
    info = load_model_info(out)
    assert ModelInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
    changed = dataclasses.replace(info, input_quant=dataclasses.replace(info.input_quant, scale=1.0))
    assert changed != info


# ---------------------------------------------------------------- faces and splits

def test_held_out_rules():
    assert held_out_by_position(1, 0.5).tolist() == [False]
    assert held_out_by_position(6, 0.5).tolist() == [False] * 3 + [True] * 3
    assert held_out_interleaved(6, 0.5).tolist() == [False, True] * 3
    assert held_out_interleaved(5, 0.0).tolist() == [False] * 5


def test_fer2013_csv_and_crop_folder(tiny_info, faces, tmp_path):
    crops = faces.calibration.crops[:10]
    rows = ["emotion,pixels,Usage"] + [
        f"3,{' '.join(map(str, cv2.resize(c, (48, 48)).ravel()))},{'Training' if i < 6 else 'PublicTest'}"
        for i, c in enumerate(crops)]
    (tmp_path / "fer2013.csv").write_text("\n".join(rows) + "\n")
    split = collect_faces(tiny_info, [tmp_path / "fer2013.csv"])
    assert (len(split.calibration), len(split.validation)) == (6, 4)
    assert split.calibration.crops.shape[1:] == (TINY_SIZE, TINY_SIZE)
    folder = tmp_path / "crops"
    folder.mkdir()
    for i, crop in enumerate(crops):
        cv2.imwrite(str(folder / f"{i:02d}.png"), crop)
    split = collect_faces(tiny_info, [folder], crops=True)
    assert (len(split.calibration), len(split.validation)) == (5, 5)
    assert np.array_equal(split.calibration.crops[0], crops[0])


def test_bad_csv_is_a_clear_error(tiny_info, tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ConvertError, match=r"line 1: header lacks column\(s\) \['emotion', 'pixels', 'Usage'\]"):
        collect_faces(tiny_info, [tmp_path / "x.csv"])
    (tmp_path / "y.csv").write_text("emotion,pixels,Usage\n3,1 2 3 4,Training\n")
    with pytest.raises(ConvertError, match="line 2: expected 2304 pixel values"):
        collect_faces(tiny_info, [tmp_path / "y.csv"])


# ---------------------------------------------------------------- user mistakes: one line, no traceback

@pytest.fixture(scope="module")
def flat_input_model(tf, tmp_path_factory) -> Path:
    model = tf.keras.Sequential([tf.keras.Input((64,)), tf.keras.layers.Dense(7, activation="softmax")])
    path = tmp_path_factory.mktemp("flat") / "flat.keras"
    model.save(path)
    return path


def test_missing_model_file(tmp_path):
    result = run_convert("--keras", str(tmp_path / "nope.keras"), "--out", str(tmp_path / "x.tflite"),
                         "--calib", "tests/data/single_face.jpg")
    assert_one_line_error(result, "Keras model not found")


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_not_a_keras_model(tmp_path, name):
    (tmp_path / name).write_text("this is not a model\n")
    result = run_convert("--keras", str(tmp_path / name), "--out", str(tmp_path / "x.tflite"),
                         "--calib", "tests/data/single_face.jpg")
    assert_one_line_error(result, "not a Keras model")


def test_wrong_input_rank(flat_input_model, tmp_path):
    result = run_convert("--keras", str(flat_input_model), "--out", str(tmp_path / "x.tflite"),
                         "--calib", "tests/data/single_face.jpg")
    assert_one_line_error(result, "model input must be (batch, height, width, 1 or 3) images")


def test_no_faces_to_calibrate_on(tiny_keras, tmp_path):
    result = run_convert("--keras", str(tiny_keras), "--out", str(tmp_path / "x.tflite"),
                         "--calib", "tests/data/no_face.mp4")
    assert_one_line_error(result, "only 0 calibration faces")
    assert not (tmp_path / "x.tflite").exists()


def test_int8_without_calibration(tiny_keras, tmp_path):
    result = run_convert("--keras", str(tiny_keras), "--out", str(tmp_path / "x.tflite"))
    assert_one_line_error(result, "int8 quantization needs real face images")


def test_output_would_overwrite_the_training_metadata(tiny_keras):
    result = run_convert("--keras", str(tiny_keras), "--out", str(tiny_keras.with_suffix(".tflite")),
                         "--calib", "tests/data/single_face.jpg")
    assert_one_line_error(result, "would overwrite the Keras model's metadata")


def test_missing_tensorflow_names_the_install_command(tiny_keras, tmp_path):
    code = ("import sys; sys.modules['tensorflow'] = None; from convert.__main__ import main; "
            f"sys.exit(main(['--keras', {str(tiny_keras)!r}, '--out', {str(tmp_path / 'x.tflite')!r}, "
            "'--calib', 'tests/data/single_face.jpg']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert_one_line_error(result, "pip install '.[convert]'")


def test_below_min_agreement_exits_1(monkeypatch, capsys):
    import convert.__main__ as cli
    from convert.build import Result

    report = json.loads(DEFAULT_MODEL.with_name(DEFAULT_MODEL.stem + ".report.json").read_text())
    report["validation"]["converted"]["top1_agreement"] = 0.5
    monkeypatch.setattr(cli, "build", lambda request: Result(report, None, None, None, None))
    args = ["--keras", str(DEFAULT_MODEL), "--out", "x.tflite", "--min-agreement", "0.9"]
    assert cli.main(args) == cli.EXIT_BELOW_AGREEMENT
    report["validation"]["converted"]["top1_agreement"] = 0.95
    assert cli.main(args) == 0
    assert "top-1 agreement" in capsys.readouterr().out


# ---------------------------------------------------------------- colour orders and layouts, end to end

PROBE_SIDE = 16  # pixels


def channel_probe_keras(tf, folder: Path, layout: str) -> Path:
    """A Keras model whose class is the brightest input channel (its 3 outputs follow the input's channels)."""
    shape = (PROBE_SIDE, PROBE_SIDE, 3) if layout == "NHWC" else (3, PROBE_SIDE, PROBE_SIDE)
    x = inputs = tf.keras.Input(shape)
    if layout == "NCHW":
        x = tf.keras.layers.Permute((2, 3, 1))(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    dense = tf.keras.layers.Dense(3, activation="softmax")
    x = dense(x)
    dense.set_weights([np.eye(3, dtype=np.float32) * 6.0, np.zeros(3, np.float32)])
    path = folder / f"probe_{layout.lower()}.keras"
    tf.keras.Model(inputs, x).save(path)
    return path


@pytest.mark.parametrize("color, layout, labels", [
    ("rgb", "NHWC", ("red", "green", "blue")),
    ("bgr", "NHWC", ("blue", "green", "red")),
    ("rgb", "NCHW", ("red", "green", "blue")),
])
def test_colour_orders_and_layouts_convert_and_classify_as_the_sidecar_says(tf, tmp_path, color, layout, labels):
    from convert.build import Request, build

    keras = channel_probe_keras(tf, tmp_path, layout)
    out = tmp_path / f"probe_{color}_{layout}.tflite"
    result = build(Request(keras=keras, out=out, labels=labels, color=color, mean=(0.5,), std=(0.5,),
                           calib=(DATA / "single_face.mp4",), latency_runs=5))
    info = load_model_info(out)
    assert (info.color, info.layout, info.channels) == (color, layout, 3)
    assert result.report["validation"]["converted"]["top1_agreement"] >= MIN_AGREEMENT
    classifier = Classifier(out)
    frame = np.zeros((60, 180, 3), np.uint8)
    for i, bgr in enumerate([(0, 0, 255), (0, 255, 0), (255, 0, 0)]):  # red, green, blue squares
        frame[:, 60 * i:60 * (i + 1)] = bgr
    boxes = np.array([[10, 10, 50, 50], [70, 10, 110, 50], [130, 10, 170, 50]])
    probs = classifier.classify(model_crops(frame, boxes, info))
    assert [classifier.labels[k] for k in probs.argmax(axis=1)] == ["red", "green", "blue"]
    assert probs.max(axis=1).min() > 0.8  # calibrated on real faces: pure colours saturate the int8 ranges


def test_a_colour_model_with_a_gray_sidecar_is_refused(tf, tmp_path):
    result = run_convert("--keras", str(channel_probe_keras(tf, tmp_path, "NHWC")), "--out", str(tmp_path / "p.tflite"),
                         "--color", "gray", "--labels", "r,g,b", "--calib", "tests/data/single_face.jpg")
    assert_one_line_error(result, "model input has 3 channel(s) but the colour is 'gray'")


# ---------------------------------------------------------------- the model zoo: registry, TF.js weights

def test_pretrained_list_names_every_model_and_what_it_is():
    result = run_convert("--list", module="convert.pretrained", timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line and not line.startswith("expr")}
    assert {"fer2013-mini-xception", "face-api-expression"} <= set(rows)
    assert "expression" in rows["face-api-expression"] and "@vladmandic/face-api@1.7.15" in rows["face-api-expression"]
    for name, line in rows.items():
        assert ("detector" in line.split()[1]) == ("DETECTOR" in line), line  # a detector says it is not an expression model


@pytest.mark.parametrize("args, fragment", [
    (["--name", "nonesuch"], "no pretrained model named 'nonesuch'"),
    (["--name", "face-api-expression", "--package", "/no/such.tgz", "--out-dir", "/tmp"], "package not found"),
    (["--name", "fer2013-mini-xception", "--package", "/no/such.whl", "--out-dir", "/tmp"], "wheel not found"),
    (["--name", "face-api-expression", "--out-dir", "/no/such/dir"], "output folder not found"),
])
def test_pretrained_bad_input_is_one_line(args, fragment):
    assert_one_line_error(run_convert(*args, module="convert.pretrained", timeout=120), fragment)


def test_a_tarball_that_is_not_face_api_is_refused(tmp_path):
    import tarfile

    from convert.faceapi import unpack

    (tmp_path / "package").mkdir()
    (tmp_path / "package" / "package.json").write_text('{"name": "other", "version": "1.0.0"}')
    with tarfile.open(tmp_path / "other.tgz", "w:gz") as archive:
        archive.add(tmp_path / "package", arcname="package")
    with pytest.raises(ConvertError, match="lacks model/face_expression_model-weights_manifest.json"):
        unpack(tmp_path / "other.tgz", tmp_path / "out")
    (tmp_path / "junk.tgz").write_bytes(b"not gzip")
    with pytest.raises(ConvertError, match="not an npm package tarball"):
        unpack(tmp_path / "junk.tgz", tmp_path / "out2")


def test_tfjs_weights_are_read_and_dequantized(tmp_path):
    from convert.tfjs import read_weights

    rng = np.random.default_rng(0)
    plain = rng.normal(size=(2, 3)).astype(np.float32)
    codes = rng.integers(0, 256, (4, 1, 2), dtype=np.uint8)
    scale, low = 0.01, -1.2
    (tmp_path / "w.bin").write_bytes(plain.tobytes() + codes.tobytes())
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": "a/bias", "shape": [2, 3], "dtype": "float32"},
        {"name": "b/filters", "shape": [4, 1, 2], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": scale, "min": low}}]}]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    weights = read_weights(tmp_path / "m.json")
    np.testing.assert_array_equal(weights["a/bias"], plain)
    np.testing.assert_allclose(weights["b/filters"], codes * scale + low, rtol=1e-6)
    (tmp_path / "w.bin").write_bytes(plain.tobytes())
    with pytest.raises(ConvertError, match="the .bin data ends at byte 24"):
        read_weights(tmp_path / "m.json")
    (tmp_path / "w.bin").write_bytes(plain.tobytes() + codes.tobytes() + b"xx")
    with pytest.raises(ConvertError, match="2 bytes of w.bin are not described"):
        read_weights(tmp_path / "m.json")
