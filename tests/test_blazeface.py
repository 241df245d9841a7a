"""BlazeFace backend: anchors, decoding and NMS against hand-computed values; real faces of tests/data against Haar's;
bad models refused in one line; the model's extraction from a wheel."""

from __future__ import annotations

import hashlib
import zipfile

import cv2
import numpy as np
import pytest

from convert import ConvertError
from convert import blazeface as extract
from edge.blazeface import (COORDS, DEFAULT_MODEL, SHORT_RANGE, BlazeFaceDetector, ModelSpec, decode, haar_like,
                            square_views, ssd_anchors, weighted_nms)
from edge.boxes import iou_matrix
from edge.config import BlazeFaceConfig, Config, DetectorConfig, override
from edge.detect import DetectorError, make_detector
from edge.video import read_frames
from tests.conftest import DATA, ROOT, run_cli

MULTI_FACES = np.array([[209, 68, 319, 178], [303, 232, 427, 356], [427, 208, 528, 309],
                        [516, 306, 637, 427], [671, 288, 801, 418]])  # as in test_detect.py


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector(BlazeFaceConfig())


def test_the_short_range_anchor_grid():
    """Strides 8, 16, 16, 16 with interpolated anchors: 16x16 cells x 2, then 8x8 cells x 6 = 896."""
    anchors = ssd_anchors(SHORT_RANGE)
    assert anchors.shape == (896, 2)
    assert np.allclose(anchors[0], [0.5 / 16, 0.5 / 16]) and np.allclose(anchors[1], anchors[0])
    assert np.allclose(anchors[2], [1.5 / 16, 0.5 / 16])
    assert np.allclose(anchors[512:518], [0.5 / 8, 0.5 / 8]) and np.allclose(anchors[518], [1.5 / 8, 0.5 / 8])
    assert np.allclose(anchors[-1], [7.5 / 8, 7.5 / 8])
    assert len(ssd_anchors(ModelSpec("x", 192, (4,), 0.0))) == 48 * 48  # the full-range model's grid


def test_decoding_offsets_sizes_keypoints_and_scores():
    anchors = np.array([[0.25, 0.5], [0.75, 0.75]], np.float32)
    raw = np.zeros((2, COORDS), np.float32)
    raw[0, :4] = [12.8, -6.4, 32.0, 64.0]  # x, y offsets and w, h in input pixels (side 128)
    raw[0, 4:6] = [-12.8, 0.0]  # first keypoint 0.1 left of the anchor
    logits = np.array([2.0, -3.0], np.float32)  # sigmoid 0.881, 0.047
    boxes, points, scores = decode(raw, logits, anchors, 128, 0.5)
    assert len(boxes) == 1 and scores[0] == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert boxes[0] == pytest.approx([0.35 - 0.125, 0.45 - 0.25, 0.35 + 0.125, 0.45 + 0.25])
    assert points[0, 0] == pytest.approx([0.15, 0.5]) and points[0, 1] == pytest.approx([0.25, 0.5])
    assert decode(raw, np.array([500.0, -500.0]), anchors, 128, 0.5)[2] == pytest.approx([1.0])  # no overflow


def test_weighted_nms_averages_a_face_by_score_and_keeps_the_best_score():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    points[1] += 3.0
    scores = np.array([0.9, 0.3, 0.8], np.float32)
    out_boxes, out_points, out_scores = weighted_nms(boxes, points, scores, 0.3)
    assert out_scores.tolist() == pytest.approx([0.9, 0.8])
    assert out_boxes[0] == pytest.approx([0.5, 0, 10.5, 10])  # (0.9 * 0 + 0.3 * 2) / 1.2
    assert out_points[0, 0] == pytest.approx([0.75, 0.75])
    assert out_boxes[1] == pytest.approx([50, 50, 60, 60])


def test_haar_like_boxes_are_square_larger_and_higher():
    face = haar_like(np.array([[100, 100, 200, 200]], np.float64))[0]
    assert face[2] - face[0] == pytest.approx(face[3] - face[1]) and face[2] - face[0] > 100
    assert (face[0] + face[2]) / 2 == pytest.approx(150) and (face[1] + face[3]) / 2 < 150


def test_tiles_cover_the_frame_and_overlap():
    views = square_views(1280, 720, 360)
    covered = np.zeros((720, 1280), bool)
    for v in views:
        covered[max(0, v.y):v.y + v.side, max(0, v.x):v.x + v.side] = True
    assert covered.all() and all(v.side == 360 for v in views)
    xs = sorted({v.x for v in views})
    assert all(b - a <= 360 * 0.75 + 1 for a, b in zip(xs, xs[1:]))


def test_every_face_of_the_sample_photos_agrees_with_haar(detector):
    photo = cv2.imread(str(DATA / "multi_face.jpg"))
    found = detector.detect(photo, still=True)
    assert len(found) == 5 and found.keypoints.shape == (5, 6, 2) and (found.scores > 0.75).all()
    assert (iou_matrix(MULTI_FACES, found.xyxy).max(axis=1) >= 0.5).all()
    single = cv2.imread(str(DATA / "single_face.jpg"))
    haar = make_detector(DetectorConfig()).detect(single, still=True).xyxy
    ours = detector.detect(single, still=True).xyxy
    assert len(ours) == 1 and iou_matrix(haar, ours)[0, 0] >= 0.5


def test_the_sample_clip_face_agrees_with_haar_in_every_frame():
    ours = make_detector(override(Config(), "detector", kind="blazeface").detector)
    haar = make_detector(DetectorConfig())
    frames = 0
    for frame in read_frames(DATA / "single_face.mp4"):
        frames += 1
        a, b = ours.detect(frame), haar.detect(frame, still=True).xyxy
        assert len(a) == 1 and iou_matrix(b, a.xyxy).max() >= 0.5, frames
        eyes, mouth = a.keypoints[0, :2], a.keypoints[0, 3]
        assert mouth[1] > eyes[:, 1].max()  # the keypoints are a face's: the mouth below the eyes
    assert frames == 72


def test_no_face_clip_gives_no_boxes():
    ours = make_detector(override(Config(), "detector", kind="blazeface").detector)
    found = [len(ours.detect(frame)) for frame in read_frames(DATA / "no_face.mp4")]
    assert len(found) == 95 and sum(found) == 0  # every one of its 95 decodable frames


@pytest.mark.parametrize("model, message", [
    ("{tmp}/missing.tflite", "BlazeFace model not found"),
    ("edge/models/fer2013_mini_xception_int8.tflite", "is not a BlazeFace short-range model: expected input"),
    ("{tmp}/garbage.tflite", "not a loadable TFLite model"),
])
def test_a_bad_model_is_refused_in_one_line(tmp_path, model, message):
    (tmp_path / "garbage.tflite").write_bytes(b"not a model" * 10)
    path = model.replace("{tmp}", str(tmp_path))
    path = path if path.startswith("/") else str(ROOT / path)
    with pytest.raises(DetectorError, match=message):
        BlazeFaceDetector(BlazeFaceConfig(model=path))


def test_the_cli_runs_blazeface_and_refuses_bad_detectors(tmp_path):
    events = tmp_path / "faces.jsonl"
    good = run_cli("--source", str(DATA / "single_face.mp4"), "--headless", "--detector", "blazeface",
                   "--events", str(events))
    assert good.returncode == 0, good.stderr
    assert sum(1 for line in events.read_text().splitlines() if '"box"' in line) == 72
    (tmp_path / "bad_model.toml").write_text(
        f'[detector]\nkind = "blazeface"\n[detector.blazeface]\nmodel = "{ROOT / "edge/models/fer2013_mini_xception_int8.tflite"}"\n')
    (tmp_path / "no_model.toml").write_text(f'[detector.blazeface]\nmodel = "{tmp_path / "none.tflite"}"\n')
    for args, message in [(["--detector", "yolo"], "detector.kind must be one of ['haar', 'blazeface'], got 'yolo'"),
                          (["--config", str(tmp_path / "bad_model.toml")], "is not a BlazeFace short-range model"),
                          (["--config", str(tmp_path / "no_model.toml"), "--detector", "blazeface"],
                           "BlazeFace model not found")]:
        outputs = [tmp_path / "bad.jsonl", tmp_path / "bad.mp4"]
        bad = run_cli("--source", str(DATA / "single_face.mp4"), "--headless", *args,
                      "--events", str(outputs[0]), "--output", str(outputs[1]))
        errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
        assert bad.returncode == 2 and len(errors) == 1 and message in errors[0], bad.stderr
        assert "Traceback" not in bad.stderr
        assert not any(path.exists() for path in outputs)  # no empty output left behind by a run that never began


def fake_wheel(path, model: bytes) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(extract.MODEL_MEMBER, model)
        archive.writestr("mediapipe-0.10.14.dist-info/LICENSE", "Apache License 2.0")


def test_the_model_is_extracted_from_a_wheel_and_checked(tmp_path):
    shipped = DEFAULT_MODEL.read_bytes()
    assert len(shipped) == extract.MODEL_BYTES and hashlib.sha256(shipped).hexdigest() == extract.MODEL_SHA256
    fake_wheel(tmp_path / "good.whl", shipped)
    written = extract.extract_blazeface(tmp_path / "out", tmp_path / "good.whl")
    assert written.model.read_bytes() == shipped and "Apache" in written.license.read_text()
    assert "mediapipe==0.10.14" in written.readme.read_text()
    fake_wheel(tmp_path / "bad.whl", shipped[:-1])
    with pytest.raises(ConvertError, match="expected 229,714 bytes"):
        extract.extract_blazeface(tmp_path / "out", tmp_path / "bad.whl")
    assert extract.main(["--wheel", str(tmp_path / "missing.whl"), "--out", str(tmp_path / "out")]) == 2
