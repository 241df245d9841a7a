"""The single-process stage runner: the same faces and labels as the multi-process pipeline, in one process."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edge.boxes import iou_matrix
from edge.capture import SourceError
from edge.config import Config
from edge.runner import Runner, Stages

# The pipeline's detector process and the runner run the same detector on the same frames in the same
# order, so they agree exactly today (measured: every box, label and probability of the 72 frames); the
# tolerance leaves room for OpenCV's thread count, which differs between the two, to reorder its scan.
MIN_BOX_IOU = 0.9
MAX_PROB_DIFF = 0.02
MIN_SAME_LABEL = 0.97  # fraction of frames with the same shown label


@pytest.fixture(scope="module")
def stages() -> Stages:
    return Stages(Config())


def test_same_faces_and_labels_as_the_cli_pipeline(data, tmp_path, cli, stages):
    events = tmp_path / "cli.jsonl"
    done = cli("--source", str(data / "single_face.mp4"), "--headless", "--events", str(events))
    assert done.returncode == 0, done.stderr
    expected = [json.loads(line) for line in events.read_text().splitlines()]
    got = [result.record() for _, result in Runner(str(data / "single_face.mp4"), Config(), stages=stages)]
    assert len(got) == len(expected) == 72
    same_label = 0
    for ours, theirs in zip(got, expected):
        assert ours["frame"] == theirs["frame"] and ours["t"] == theirs["t"]
        assert len(ours["faces"]) == len(theirs["faces"]), ours["frame"]
        for a, b in zip(ours["faces"], theirs["faces"]):
            assert iou_matrix(np.array([a["box"]]), np.array([b["box"]]))[0, 0] >= MIN_BOX_IOU
            assert a["track_id"] == b["track_id"]
            assert max(abs(a["probs"][k] - b["probs"][k]) for k in a["probs"]) <= MAX_PROB_DIFF
            same_label += a["label"] == b["label"]
    assert same_label >= MIN_SAME_LABEL * sum(len(e["faces"]) for e in expected)


def test_video_faces_are_tracked_and_smoothed(data, stages):
    results = [result for _, result in Runner(str(data / "single_face.mp4"), Config(), stages=stages)]
    assert [r.index for r in results] == list(range(72))
    tracked = [r.faces for r in results if len(r.faces)]
    assert len(tracked) >= 70
    assert all(faces.track_id[0] == 0 and faces.smoothed is not None for faces in tracked)
    latencies = results[10].latencies_ms()
    assert {"capture", "detect", "classify"} <= set(latencies)


def test_images_are_not_tracked(data, tmp_path, stages):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("multi_face.jpg", "single_face.jpg"):
        (folder / name).write_bytes((data / name).read_bytes())
    results = [result for _, result in Runner(str(folder), Config(), stages=stages)]
    assert [r.name for r in results] == ["multi_face.jpg", "single_face.jpg"]
    assert [len(r.faces) for r in results] == [5, 1]
    for result in results:
        assert (result.faces.track_id == -1).all()
        assert result.faces.smoothed is None and result.faces.display_label is None


def test_track_false_leaves_tracking_to_the_caller(data, stages):
    results = [r for _, r in Runner(str(data / "single_face.mp4"), Config(), stages=stages, track=False)]
    assert sum(len(r.faces) for r in results) >= 70
    assert all((r.faces.track_id == -1).all() and r.faces.smoothed is None for r in results)


def test_stages_classify_a_still_image(data, stages):
    faces = stages.faces(cv2.imread(str(data / "multi_face.jpg")), still=True)
    assert len(faces) == 5
    assert np.allclose(faces.probs.sum(axis=1), 1.0, atol=0.02)
    gray = stages.faces(cv2.imread(str(data / "multi_face.jpg"), cv2.IMREAD_GRAYSCALE), still=True)
    assert np.array_equal(gray.xyxy, faces.xyxy)


def test_source_is_closed_when_iteration_stops_early(data, stages):
    runner = Runner(str(data / "single_face.mp4"), Config(), stages=stages)
    for frame, result in runner:
        frame[:] = 0  # the frame is the caller's to draw on
        if result.index == 2:
            break
    assert runner.frames_done == 3
    assert runner.source.capture is None  # released


def test_a_new_source_starts_from_a_clean_detector(data, stages):
    first = [r.record()["faces"] for _, r in Runner(str(data / "single_face.mp4"), Config(), stages=stages)]
    again = [r.record()["faces"] for _, r in Runner(str(data / "single_face.mp4"), Config(), stages=stages)]
    assert len(first) == 72 and first == again


def test_bad_source_is_a_source_error(tmp_path, stages):
    with pytest.raises(SourceError, match="source not found"):
        list(Runner(str(tmp_path / "missing.mp4"), Config(), stages=stages))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    with pytest.raises(SourceError, match="not a decodable video"):
        list(Runner(str(broken), Config(), stages=stages))
