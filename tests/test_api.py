"""The Python API (edge.analyze, edge.stream, edge.Analyzer) on the real sample media: what the CLI gives, in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import edge
from edge.boxes import iou_matrix
from edge.config import Config, ConfigError
from edge.results import Face, Faces
from edge.runner import Runner
from tests.conftest import DATA, ROOT

MIN_BOX_IOU = 0.9  # the CLI's detector process and this process run the same detector (see test_runner.py)
MAX_PROB_DIFF = 0.02
MIN_SAME_LABEL = 0.97


@pytest.fixture(scope="module")
def analyzer() -> edge.Analyzer:
    return edge.Analyzer()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_same_faces(ours: list[dict], theirs: list[dict]) -> int:
    """The faces of one frame agree (boxes, track ids, probabilities); how many have the same label."""
    assert len(ours) == len(theirs)
    same = 0
    for a, b in zip(ours, theirs):
        assert iou_matrix(np.array([a["box"]]), np.array([b["box"]]))[0, 0] >= MIN_BOX_IOU
        assert a["track_id"] == b["track_id"] and set(a) == set(b)
        assert max(abs(a["probs"][k] - b["probs"][k]) for k in a["probs"]) <= MAX_PROB_DIFF
        same += a["label"] == b["label"]
    return same


# --- analyze ------------------------------------------------------------------------------------------

def test_analyze_gives_the_faces_the_cli_finds_in_a_photo(tmp_path, cli):
    events = tmp_path / "faces.jsonl"
    done = cli("--source", str(DATA / "multi_face.jpg"), "--headless", "--events", str(events))
    assert done.returncode == 0, done.stderr
    (expected,) = read_jsonl(events)
    faces = edge.analyze(DATA / "multi_face.jpg")
    assert len(faces) == 5 and all(isinstance(face, Face) for face in faces)
    assert assert_same_faces([face.record() for face in faces], expected["faces"]) == 5
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert all(type(v) is int for v in face.box) and 0 <= x1 < x2 <= 1000 and 0 <= y1 < y2 <= 667
        assert face.label == max(face.probs, key=face.probs.get) and face.score == face.probs[face.label]
        assert sum(face.probs.values()) == pytest.approx(1.0, abs=0.03)
        assert face.track_id == -1 and face.raw_label is None and face.smoothed is None  # a photo: not tracked


def test_an_array_a_path_and_a_gray_array_give_the_same_faces(analyzer):
    by_path = analyzer.analyze(str(DATA / "multi_face.jpg"))
    assert len(by_path) == 5
    image = cv2.imread(str(DATA / "multi_face.jpg"))
    assert analyzer.analyze(image) == by_path
    assert analyzer.analyze(image[:, ::-1][:, ::-1]) == by_path  # a view that is not contiguous
    gray = analyzer.analyze(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY))
    assert [face.box for face in gray] == [face.box for face in by_path]
    assert analyzer.analyze(np.zeros((120, 160, 3), np.uint8)) == []


def test_analyze_a_second_time_gives_the_same_answer(analyzer):
    first = analyzer.analyze(DATA / "single_face.jpg")
    assert len(first) == 1
    assert analyzer.analyze(DATA / "single_face.jpg") == first


@pytest.mark.parametrize("make_path", [
    lambda tmp: tmp / "missing.jpg",
    lambda tmp: (tmp / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg") and tmp / "broken.jpg",
])
def test_a_missing_or_unreadable_image_is_the_cli_s_one_line_error(tmp_path, cli, make_path):
    path = make_path(tmp_path)
    done = cli("--source", str(path), "--headless")
    assert done.returncode == 2
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    with pytest.raises(edge.SourceError) as raised:
        edge.analyze(path)
    assert f"error: {raised.value}" == line


@pytest.mark.parametrize("image, error, message", [
    (DATA, edge.SourceError, "analyze() takes one image, got a folder"),
    (DATA / "single_face.mp4", edge.SourceError, "analyze() takes one image, got a video"),
    ("0", edge.SourceError, "use stream() for cameras and streams"),
    ("rtsp://camera.local/stream", edge.SourceError, "use stream() for cameras and streams"),
    (np.zeros((10, 10, 3), np.float32), edge.SourceError, "must be a uint8 BGR array of shape (h, w, 3)"),
    (np.zeros((10, 10, 4), np.uint8), edge.SourceError, "got a uint8 array of shape (10, 10, 4)"),
    (np.zeros((0, 10, 3), np.uint8), edge.SourceError, "got a uint8 array of shape (0, 10, 3)"),
    (12.5, TypeError, "image must be a numpy array or a path, got float"),
])
def test_what_analyze_does_not_take_is_a_clear_error(analyzer, image, error, message):
    with pytest.raises(error) as raised:
        analyzer.analyze(image)
    assert message in str(raised.value) and "\n" not in str(raised.value)


# --- stream ---------------------------------------------------------------------------------------------

def test_stream_gives_the_cli_s_tracks_and_steady_labels(tmp_path, cli):
    events = tmp_path / "faces.jsonl"
    done = cli("--source", str(DATA / "single_face.mp4"), "--headless", "--events", str(events))
    assert done.returncode == 0, done.stderr
    expected = read_jsonl(events)
    got = [result.record() for result in edge.stream(DATA / "single_face.mp4")]
    assert [r["frame"] for r in got] == [r["frame"] for r in expected] == list(range(72))
    assert [r["t"] for r in got] == [r["t"] for r in expected]
    same = sum(assert_same_faces(ours["faces"], theirs["faces"]) for ours, theirs in zip(got, expected))
    assert same >= MIN_SAME_LABEL * sum(len(r["faces"]) for r in expected)
    faces = [face for r in got for face in r["faces"]]
    assert len(faces) >= 70 and {face["track_id"] for face in faces} == {0}
    assert all("smoothed" in face and "raw_label" in face for face in faces)
    assert json.loads(json.dumps(got)) == got  # plain JSON


def test_stream_results_are_the_runner_s_and_carry_their_frame(data):
    runner = [result.record() for _, result in Runner(str(data / "single_face.mp4"), Config())]
    capture = cv2.VideoCapture(str(data / "single_face.mp4"))
    with edge.stream(str(data / "single_face.mp4")) as results:
        assert (results.name, results.fps, results.total) == (str(data / "single_face.mp4"), 30.0, 72)
        records = []
        for result in results:
            records.append(result.record())
            assert isinstance(result, edge.FrameResult) and isinstance(result.faces, Faces)
            assert [face.record() for face in result.faces] == result.record()["faces"]
            assert np.array_equal(result.frame, capture.read()[1])  # the source's own frame, untouched
    assert len(records) == 72 and records == runner


def test_annotated_draws_as_the_cli_and_leaves_the_frame_alone(tmp_path, cli):
    drawn = tmp_path / "annotated.png"  # lossless: the CLI's pixels exactly
    done = cli("--source", str(DATA / "multi_face.jpg"), "--headless", "--output", str(drawn))
    assert done.returncode == 0, done.stderr
    (result,) = list(edge.stream(DATA / "multi_face.jpg"))
    original = result.frame.copy()
    annotated = result.annotated()
    assert np.array_equal(result.frame, original) and annotated is not result.frame
    assert np.array_equal(annotated, cv2.imread(str(drawn)))
    assert result.name == "multi_face.jpg" and len(result.faces) == 5


def test_a_video_s_annotated_frame_has_the_cli_s_status_panel(analyzer):
    results = analyzer.stream(DATA / "single_face.mp4")
    result = next(results)
    results.close()
    annotated = result.annotated()
    changed = np.any(annotated != result.frame, axis=2)
    x1, y1, x2, y2 = result.faces[0].box
    assert changed[:30, :60].mean() > 0.2  # the panel (source time, stage costs) top left
    assert changed[y1:y2 + 1, x1].mean() > 0.9  # the face's box


def test_results_without_a_frame_cannot_be_drawn():
    with pytest.raises(ValueError, match="carries no frame"):
        edge.FrameResult(seq=0, index=0, timestamp=0.0, faces=Faces.empty(("a",))).annotated()


def test_a_folder_streams_image_by_image_untracked(tmp_path, analyzer):
    for name in ("multi_face.jpg", "single_face.jpg"):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    results = analyzer.stream(tmp_path)
    assert results.total == 2
    got = list(results)
    assert [(r.name, len(r.faces)) for r in got] == [("multi_face.jpg", 5), ("single_face.jpg", 1)]
    assert all(face.track_id == -1 for r in got for face in r.faces)


def test_streams_of_one_analyzer_interleave_with_each_other_and_with_analyze(analyzer):
    alone = [r.record() for r in analyzer.stream(DATA / "single_face.mp4")]
    assert len(alone) == 72
    first, second = analyzer.stream(DATA / "single_face.mp4"), analyzer.stream(DATA / "single_face.mp4")
    together = []
    for a, b in zip(first, second):
        assert len(analyzer.analyze(DATA / "multi_face.jpg")) == 5  # a photo between two frames
        together.append((a.record(), b.record()))
    assert [a for a, _ in together] == alone and [b for _, b in together] == alone


def test_a_stream_stopped_early_releases_its_source(analyzer):
    results = analyzer.stream(DATA / "single_face.mp4")
    for result in results:
        if result.index == 2:
            break
    results.close()
    assert results.source.capture is None
    assert list(results) == []
    unread = analyzer.stream(DATA / "single_face.mp4")
    unread.close()  # never iterated: closed all the same
    assert unread.source.capture is None
    with analyzer.stream(DATA / "single_face.mp4") as results:
        next(results)
    assert results.source.capture is None


@pytest.mark.parametrize("source, message", [
    ("missing.mp4", "source not found: missing.mp4"),
    (DATA / "single_face.jpg" / "x", "source not found"),
])
def test_a_bad_source_fails_when_the_stream_is_made(analyzer, source, message):
    with pytest.raises(edge.SourceError, match=message):
        analyzer.stream(source)


@pytest.mark.parametrize("source, message", [
    (np.zeros((4, 4, 3), np.uint8), "source must be a path, a camera index or a URL, got ndarray (for an image"),
    (True, "source must be a path, a camera index or a URL, got bool"),
])
def test_what_stream_does_not_take_is_a_clear_error(analyzer, source, message):
    with pytest.raises(TypeError) as raised:
        analyzer.stream(source)
    assert message in str(raised.value)


def test_a_broken_video_is_the_cli_s_error(tmp_path, analyzer):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    with pytest.raises(edge.SourceError, match=f"not a decodable video or image: {broken}"):
        analyzer.stream(broken)


# --- settings ---------------------------------------------------------------------------------------------

def test_settings_are_config_tables(tmp_path):
    assert len(edge.analyze(DATA / "multi_face.jpg", detector={"haar": {"min_face": 0.4}})) == 0  # faces ~0.2 high
    toml = tmp_path / "big.toml"
    toml.write_text("[detector.haar]\nmin_face = 0.4\n")
    assert edge.analyze(DATA / "multi_face.jpg", config=toml) == []
    analyzer = edge.Analyzer(config=toml, detector={"haar": {"min_face": 0.05}})  # keywords over the file
    assert len(analyzer.analyze(DATA / "multi_face.jpg")) == 5
    assert analyzer.config.detector.haar.min_face == 0.05
    untracked = [face for r in edge.stream(DATA / "single_face.mp4", tracker={"enabled": False}) for face in r.faces]
    assert len(untracked) >= 70 and all(face.track_id == -1 for face in untracked)
    assert edge.Analyzer(config=Config()).labels[3] == "happy"


@pytest.mark.parametrize("tables, message", [
    ({"detector": {"haar": {"min_face": 2.0}}}, "config key detector.haar.min_face must be <= 1.0, got 2.0"),
    ({"detector": {"haar": {"min_fac": 0.1}}}, "unknown config key detector.haar.min_fac"),
    ({"detector": "haar"}, "config key detector is a table, not a value: set its keys, e.g. detector.kind"),
    ({"min_face": 0.1}, "unknown config key min_face (known: capture, detector,"),
    ({"render": {"probabilities": "yes"}}, "config key render.probabilities must be bool, got str 'yes'"),
])
def test_bad_settings_are_the_config_file_s_errors(tables, message):
    with pytest.raises(ConfigError) as raised:
        edge.Analyzer(**tables)
    assert message in str(raised.value)


def test_a_bad_model_or_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(edge.ModelError, match="model not found: 'nope'"):
        edge.Analyzer(model="nope")
    with pytest.raises(ConfigError, match="config file not found"):
        edge.Analyzer(config=tmp_path / "missing.toml")


def test_a_shipped_model_by_name():
    assert len(edge.analyze(DATA / "single_face.jpg", model="fer2013-mini-xception")) == 1


# --- the package ---------------------------------------------------------------------------------------------

def test_version_is_pyproject_s():
    from edge.config import tomllib  # tomli on Python 3.10

    assert edge.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_importing_edge_loads_neither_opencv_nor_the_api():
    """`import edge.config` (the CLI's first import, each worker's) stays light: the API loads on first use."""
    code = "import sys, edge.config; print('cv2' in sys.modules, 'edge.api' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["False", "False"], done.stderr
    assert set(edge.__all__) <= set(dir(edge))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        edge.nope  # noqa: B018


def test_faces_index_like_a_list():
    faces = Faces(np.array([[0, 0, 10, 10], [5, 5, 20, 20]]), np.array([[0.9, 0.1], [0.2, 0.8]]), ("a", "b"))
    assert faces[0].label == "a" and faces[-1].label == "b" and faces[1] == list(faces)[1]
    assert [face.record() for face in faces] == faces.records()
    with pytest.raises(IndexError):
        faces[2]  # noqa: B018
    with pytest.raises(TypeError):
        faces["a"]  # noqa: B018


@pytest.mark.parametrize("how", ["script", "notebook"])
def test_a_script_without_a_main_guard_and_a_notebook_cell_work(tmp_path, how):
    """No worker processes: nothing to bootstrap, so no `if __name__ == "__main__":` is needed."""
    code = (f"import edge\n"
            f"results = [r.record() for r in edge.stream({str(DATA / 'single_face.mp4')!r})]\n"
            f"print(len(results), results[-1]['faces'][0]['track_id'])\n")
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    if how == "script":
        script = tmp_path / "script.py"
        script.write_text(code)
        command = [sys.executable, str(script)]
    else:  # a notebook's kernel runs cells in a __main__ that has no file
        command = [sys.executable, "-c", code]
    done = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["72", "0"]
    assert "Traceback" not in done.stderr
