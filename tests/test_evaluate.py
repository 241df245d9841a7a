"""python -m edge.evaluate: labelled faces through the runtime's detector, crop and classifier; files, metrics, bad input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.labelled_samples import write_labelled
from edge.models import DEFAULT_MODEL
from tests.conftest import DATA, ROOT

DEFAULT = "fer2013-mini-xception"


def run_evaluate(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.evaluate", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess, fragment: str, code: int = 2) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and fragment in errors[0], result.stderr


def clip_frame(index: int, path: Path = DATA / "single_face.mp4") -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    for _ in range(index + 1):
        ok, frame = capture.read()
    capture.release()
    assert ok
    return frame


def predictions(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """ROOT/<label>/ from the sample media: happy faces, a neutral frame, a frame with no face, an unreadable file,
    an empty class folder, label names in other spellings."""
    root = tmp_path_factory.mktemp("folders")
    happy, neutral, surprise = root / "Happiness", root / "neutral", root / "surprised"
    for folder in (happy, neutral, surprise):
        folder.mkdir()
    shutil.copy(DATA / "single_face.jpg", happy / "portrait.jpg")
    group = cv2.imread(str(DATA / "multi_face.jpg"))
    cv2.imwrite(str(happy / "group_left.png"), group[0:667, 0:480])  # the two smiling faces on the left
    cv2.imwrite(str(happy / "clip_40.png"), clip_frame(40))
    cv2.imwrite(str(neutral / "clip_05.png"), clip_frame(5))
    cv2.imwrite(str(neutral / "empty_room.png"), clip_frame(10, DATA / "no_face.mp4"))
    (neutral / "broken.jpg").write_bytes(b"not a jpeg at all")
    (neutral / "notes.txt").write_text("not an image: ignored\n")
    return root


@pytest.fixture(scope="module")
def folder_run(folders, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "eval"
    copy = tmp_path_factory.mktemp("mine") / "mine.tflite"
    shutil.copy(DEFAULT_MODEL, copy)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), copy.with_suffix(".json"))
    result = run_evaluate(str(folders), "--out", str(out), "--model", DEFAULT, "--model", str(copy), "--flip")
    return result, out


def test_class_folders_give_a_side_by_side_report_and_files(folder_run):
    result, out = folder_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "empty class folder" in result.stderr and "surprised" in result.stderr
    assert "broken.jpg: not a readable image" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("6 images (happy 3, neutral 3)")
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    rows = {line.split()[0]: line.split() for line in lines[header + 1:header + 3]}
    assert set(rows) == {DEFAULT, "mine"}
    # scored, no face, unreadable: 4 faces, the empty room, the broken file
    assert rows[DEFAULT][1:4] == rows["mine"][1:4] == ["4", "1", "1"]
    report = json.loads((out / "report.json").read_text())
    assert [m["model"] for m in report["models"]] == [DEFAULT, "mine"]
    assert all(m["flip"] for m in report["models"])
    for name in (DEFAULT, "mine"):
        assert (out / f"{name}.confusion.json").is_file() and (out / f"{name}.predictions.csv").is_file()
        image = cv2.imread(str(out / f"{name}.confusion.png"))
        assert image is not None and image.std() > 1


def test_metrics_agree_with_the_per_image_predictions(folder_run):
    _, out = folder_run
    report = json.loads((out / "report.json").read_text())["models"][0]
    rows = predictions(out / f"{DEFAULT}.predictions.csv")
    assert [r["status"] for r in rows].count("ok") == report["scored"] == 4
    assert {r["image"].split("/")[-1]: r["status"] for r in rows if r["status"] != "ok"} == {
        "empty_room.png": "no face", "broken.jpg": "unreadable"}
    scored = [r for r in rows if r["status"] == "ok"]
    correct = sum(r["prediction"] == r["label"] for r in scored)
    assert report["accuracy"] == pytest.approx(correct / 4)
    assert report["accuracy_no_face_wrong"] == pytest.approx(correct / 5)
    cm = np.array(report["confusion_matrix"])
    labels = report["labels"]
    assert cm.sum() == 4 and cm[labels.index("happy")].sum() == 3 and cm[labels.index("neutral")].sum() == 1
    assert report["per_class"]["neutral"]["no_face"] == 1
    for r in scored:  # probabilities in label order, the prediction their top one
        probs = [float(r[f"p_{label}"]) for label in labels]
        assert labels[int(np.argmax(probs))] == r["prediction"] and float(r["probability"]) == max(probs)
        assert r["x1"] and int(r["x2"]) > int(r["x1"])
    # the smiling faces are read as happy by the shipped model
    assert all(r["prediction"] == "happy" for r in scored if r["label"] == "happy")


def test_labelled_sample_list_with_boxes_and_min_accuracy(tmp_path):
    """The gray default and the colour face-api model side by side on the labelled sample faces."""
    labels = write_labelled(tmp_path / "samples")
    result = run_evaluate(str(labels), "--out", str(tmp_path / "eval"), "--min-accuracy", "0.9",
                          "--model", DEFAULT, "--model", "face-api-expression")
    assert result.returncode == 0, result.stderr
    reports = json.loads((tmp_path / "eval" / "report.json").read_text())["models"]
    assert [r["model"] for r in reports] == [DEFAULT, "face-api-expression"]
    for report in reports:
        assert (report["images"], report["scored"], report["no_face"]) == (64, 64, 0)
        assert report["accuracy"] >= 0.9, report["model"]
    assert reports[1]["labels"][0] == "neutral"  # its own label order, mapped to the runtime's names
    rows = predictions(tmp_path / "eval" / f"{DEFAULT}.predictions.csv")
    assert [int(v) for v in (rows[1]["x1"], rows[1]["y1"], rows[1]["x2"], rows[1]["y2"])] == [671, 288, 801, 418]
    # the same faces labelled wrongly: below the bar, exit 1, one line per model
    wrong = tmp_path / "wrong.csv"
    wrong.write_text(labels.read_text().replace(",happy,", ",sad,").replace(",neutral,", ",angry,")
                     .replace("frames/", f"{labels.parent}/frames/"))
    result = run_evaluate(str(wrong), "--out", str(tmp_path / "eval2"), "--min-accuracy", "0.5")
    assert_one_line_error(result, f"{DEFAULT}: accuracy", code=1)
    assert "is below --min-accuracy 50.0%" in result.stderr


def fer_row(emotion: int, face: np.ndarray, usage: str) -> str:
    return f"{emotion},{' '.join(map(str, cv2.resize(face, (48, 48)).ravel()))},{usage}"


def test_fer2013_and_ferplus_csvs_need_no_detection(tmp_path):
    gray = cv2.cvtColor(cv2.imread(str(DATA / "single_face.jpg")), cv2.COLOR_BGR2GRAY)
    face = gray[148:384, 157:393]
    rows = [fer_row(3, face, "Training"), fer_row(3, face, "PrivateTest"), fer_row(6, face, "PrivateTest")]
    fer = tmp_path / "fer2013.csv"
    fer.write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    result = run_evaluate(str(fer), "--out", str(tmp_path / "a"), "--usage", "PrivateTest")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "a" / "report.json").read_text())["models"][0]
    assert (report["images"], report["scored"]) == (2, 2)
    assert report["accuracy"] == 0.5  # the same happy face, once labelled neutral
    votes = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
    votes += "Training,a.png,0,10,0,0,0,0,0,0,0,0\nPrivateTest,b.png,0,9,1,0,0,0,0,0,0,0\n"
    votes += "PrivateTest,c.png,4,4,0,0,0,0,0,2,0,0\n"  # no majority: dropped
    ferplus = tmp_path / "fer2013new.csv"
    ferplus.write_text(votes)
    result = run_evaluate(str(fer), "--out", str(tmp_path / "b"), "--usage", "PrivateTest", "--ferplus", str(ferplus))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())["models"][0]
    assert (report["images"], report["scored"], report["accuracy"]) == (1, 1, 1.0)


@pytest.mark.parametrize("make, args, fragment", [
    (lambda d: d / "missing", [], "dataset not found"),
    (lambda d: (d / "x.txt").write_text("x") and d / "x.txt", [], "expected a folder of class folders or a .csv"),
    (lambda d: (d / "misc").mkdir() or d, [], "unknown label folder 'misc'"),
    (lambda d: d, [], "no class folders"),
    (lambda d: (d / "l.csv").write_text("path,label\na.jpg,joyful\n") and d / "l.csv", [],
     "l.csv: line 2: unknown label 'joyful'"),
    (lambda d: (d / "l.csv").write_text("path,label,box\na.jpg,happy,1 2 3\n") and d / "l.csv", [],
     "line 2: box must be 4 numbers"),
    (lambda d: (d / "l.csv").write_text("file,emotion\na.jpg,happy\n") and d / "l.csv", [],
     "header lacks column(s) ['path', 'label']"),
    (lambda d: (d / "l.csv").write_text("path,label\n") and d / "l.csv", [], "no labelled images"),
    (lambda d: (d / "l.csv").write_bytes(b"\xff\xfe\x00p\x00a") and d / "l.csv", [], "l.csv: not a UTF-8 text file"),
    (lambda d: (d / "f.csv").write_text("emotion,pixels,Usage\n3,1 2 3,Training\n") and d / "f.csv", [],
     "f.csv: line 2: expected 2304 pixel values"),
    (lambda d: (d / "happy").mkdir() or d, ["--usage", "PrivateTest"], "--usage and --ferplus apply to a FER2013 CSV"),
    (lambda d: (d / "happy").mkdir() or d, ["--model", "nonesuch"], "'nonesuch' is neither a file nor a shipped model"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, make, args, fragment):
    data = make(tmp_path)
    result = run_evaluate(str(data), "--out", str(tmp_path / "eval"), *args, timeout=60)
    assert_one_line_error(result, fragment)


def test_unreadable_images_and_missing_files_are_warnings_not_errors(tmp_path):
    listing = tmp_path / "l.csv"
    shutil.copy(DATA / "single_face.jpg", tmp_path / "ok.jpg")
    listing.write_text("path,label,x1,y1,x2,y2\nok.jpg,happy,,,,\ngone.jpg,sad,,,,\nok.jpg,happy,5000,10,5100,110\n")
    result = run_evaluate(str(listing), "--out", str(tmp_path / "eval"))
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert "gone.jpg: no such file" in result.stderr and "lies outside the image" in result.stderr
    report = json.loads((tmp_path / "eval" / "report.json").read_text())["models"][0]
    assert (report["scored"], report["unreadable"], report["accuracy"]) == (1, 2, 1.0)
    with (tmp_path / "eval" / f"{DEFAULT}.predictions.csv").open(newline="") as handle:
        widths = {len(row) for row in csv.reader(handle)}
    assert widths == {10 + len(report["labels"])}  # a skipped image's row as wide as the header
    table = result.stdout.splitlines()
    row = next(line.split() for line in table if line.startswith(DEFAULT))
    assert table[3].split()[-2:] == ["happy", "sad"] and row[-2:] == ["100.0", "-"]  # no sad face scored: no recall
    # nothing readable: the report has no accuracy, and --min-accuracy says why it fails
    listing.write_text("path,label\ngone.jpg,sad\n")
    result = run_evaluate(str(listing), "--out", str(tmp_path / "eval2"), "--min-accuracy", "0.5")
    assert_one_line_error(result, f"{DEFAULT}: no face was scored, so it cannot reach --min-accuracy 50.0%", code=1)


@pytest.mark.parametrize("name, label", [("Anger", "angry"), ("disgusted", "disgust"), ("FEARFUL", "fear"),
                                         ("happiness", "happy"), (" sadness ", "sad"), ("surprised", "surprise"),
                                         ("neutral", "neutral"), ("contempt", "contempt"), ("joy", None)])
def test_label_aliases(name, label):
    from edge.datasets import canonical_label

    assert canonical_label(name) == label


def test_one_fer2013_pixel_reader_for_every_package():
    from edge.datasets import DatasetError, parse_pixels

    face = parse_pixels(" ".join(["7"] * 2304), "x: line 2")
    assert face.shape == (48, 48) and face.dtype == np.uint8 and (face == 7).all()
    for text, fragment in (("1 2 x", "space-separated integers"), ("256 " * 2304, "0-255"), ("1 " * 100, "got 100")):
        with pytest.raises(DatasetError, match=fragment):
            parse_pixels(text, "x: line 2")
    import convert.faces
    import train.data

    assert "parse_pixels" not in vars(convert.faces) and "parse_pixels" not in vars(train.data)
