"""Detector: the seam (Detections, factory), and the Haar backend on the sample media: photos, the clip, scan planning."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from edge.boxes import iou_matrix
from edge.config import DETECTOR_KINDS, DetectorConfig, HaarConfig
from edge.detect import BACKENDS, Detections, DetectorError, make_detector
from edge.haar import HaarDetector, plan_full_scan, suppress_duplicates
from edge.video import read_frames
from tests.conftest import DATA

# Hand-checked boxes of the five faces in multi_face.jpg (x1, y1, x2, y2).
MULTI_FACES = np.array([[209, 68, 319, 178], [303, 232, 427, 356], [427, 208, 528, 309],
                        [516, 306, 637, 427], [671, 288, 801, 418]])


def gray(name: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(DATA / name)), cv2.COLOR_BGR2GRAY)


def video_frames(name: str, color: bool = False) -> list[np.ndarray]:
    return [frame if color else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) for frame in read_frames(DATA / name)]


def boxes_of(detector: HaarDetector, frame: np.ndarray, still: bool = False) -> np.ndarray:
    return detector.detect(frame, still=still).xyxy


@pytest.mark.parametrize("columns, message", [
    ({"xyxy": np.full((2, 4), 7.0), "scores": np.ones(2), "keypoints": np.zeros((2, 6, 2))}, 2),
    ({"xyxy": []}, 0),
    ({"xyxy": np.zeros((3,))}, r"xyxy: expected shape \(_, 4\), got \(3,\)"),
    ({"xyxy": np.zeros((2, 4)), "scores": np.ones(3)}, r"scores: expected shape \(2,\), got \(3,\)"),
    ({"xyxy": np.zeros((1, 4)), "keypoints": np.zeros((1, 6))}, r"keypoints: expected shape \(1, _, 2\)"),
])
def test_detections_validate_their_columns(columns, message):
    if isinstance(message, int):  # valid: that many faces, boxes as (n, 4) int32 pixels
        detections = Detections(**columns)
        assert len(detections) == message and detections.xyxy.dtype == np.int32
        assert detections.xyxy.tolist() == [[7, 7, 7, 7]] * message
    else:
        with pytest.raises(ValueError, match=message):
            Detections(**columns)


def test_the_factory_builds_every_configured_kind_and_refuses_others():
    assert set(BACKENDS) == set(DETECTOR_KINDS)
    assert isinstance(make_detector(DetectorConfig()), HaarDetector)  # the default
    from edge.blazeface import BlazeFaceDetector
    assert isinstance(make_detector(dataclasses.replace(DetectorConfig(), kind="blazeface")), BlazeFaceDetector)
    with pytest.raises(DetectorError, match="unknown detector.kind 'yolo'"):
        make_detector(dataclasses.replace(DetectorConfig(), kind="yolo"))


def test_haar_takes_the_bgr_frame_and_finds_what_it_finds_in_gray():
    image = cv2.imread(str(DATA / "multi_face.jpg"))
    detector = make_detector(DetectorConfig())
    found = detector.detect(image, still=True)
    assert found.scores is None and found.keypoints is None
    assert np.array_equal(found.xyxy, boxes_of(detector, gray("multi_face.jpg"), still=True))


def test_every_face_of_the_group_photo_is_found():
    boxes = boxes_of(HaarDetector(HaarConfig()), gray("multi_face.jpg"), still=True)
    assert len(boxes) == 5
    assert (iou_matrix(MULTI_FACES, boxes).max(axis=1) > 0.5).all()


def test_single_face_photo():
    assert len(boxes_of(HaarDetector(HaarConfig()), gray("single_face.jpg"), still=True)) == 1


def test_following_keeps_the_face_in_every_frame_full_resolution_haar_finds_it():
    frames = video_frames("single_face.mp4")
    detector = HaarDetector(HaarConfig())
    cascade = detector.cascade
    ours = [boxes_of(detector, frame) for frame in frames]
    reference = [cascade.detectMultiScale(f, 1.1, 4, minSize=(24, 24)) for f in frames]
    assert all(len(boxes) == 1 for boxes in ours)
    found = [(i, np.array([(x, y, x + w, y + h) for x, y, w, h in rects])) for i, rects in enumerate(reference)
             if len(rects)]
    assert len(found) >= 60  # the reference finds the face in most frames ...
    for i, rects in found:  # ... and where it does, the followed box is on that face
        assert iou_matrix(rects, ours[i]).max() > 0.5, i


def test_no_face_video_gives_no_faces():
    detector, frames = make_detector(DetectorConfig()), video_frames("no_face.mp4", color=True)
    assert len(frames) == 95 and sum(len(detector.detect(frame)) for frame in frames) == 0  # 95 decodable frames


def test_scan_plan_covers_every_size_in_equal_slices():
    config = HaarConfig(scan_slices=8)
    plan = plan_full_scan((360, 640), config, window=24)
    assert len(plan.slices) == 8
    assert plan.sizes[0] == 24 and plan.sizes[-1] * config.scan_scale_factor > 360 * config.max_face
    assert np.allclose(np.diff(np.log(plan.sizes)), np.log(config.scan_scale_factor))
    assert sorted({u.size for u in plan.units}) == list(plan.sizes)
    loads = [sum(u.cost for u in s) for s in plan.slices]
    assert max(loads) < 2 * min(loads)
    for size in plan.sizes:  # a size's strips cover every column, overlapping by the face size
        strips = sorted((u.x1, u.x2) for u in plan.units if u.size == size)
        assert strips[0][0] == 0 and strips[-1][1] == 640
        assert all(b[0] <= a[1] - min(size, a[1] - a[0]) for a, b in zip(strips, strips[1:]))


def test_smallest_face_follows_min_face_and_downscale():
    assert plan_full_scan((720, 1280), HaarConfig(min_face=0.1), window=24).sizes[0] == pytest.approx(72)
    assert plan_full_scan((720, 1280), HaarConfig(min_face=0.01), window=24).sizes[0] == 24
    assert plan_full_scan((720, 1280), HaarConfig(min_face=0.01, downscale=0.25), 24).sizes[0] == 96


def test_a_full_cycle_of_one_scale_scans_proposes_every_face_a_multi_scale_scan_finds():
    """The one-scale proposals lose nothing against OpenCV's own scan at the same size step."""
    photo = gray("multi_face.jpg")
    config = HaarConfig()
    detector = HaarDetector(config)
    rects = detector.cascade.detectMultiScale(photo, config.scan_scale_factor, config.min_neighbors, minSize=(24, 24))
    reference = np.array([(x, y, x + w, y + h) for x, y, w, h in rects])
    assert len(reference) >= 4  # the fifth face needs the finer step of still images
    units = detector.plan(photo.shape).units
    proposals = detector.propose(photo, units, hide=np.empty((0, 4), np.int32))
    assert (iou_matrix(reference, proposals).max(axis=1) > 0.5).all()
    hidden = detector.propose(photo, units, hide=MULTI_FACES)  # tracked faces are not proposed again
    assert not len(hidden) or (iou_matrix(MULTI_FACES, hidden) < 0.2).all()


def test_suppress_duplicates_keeps_one_box_per_face():
    boxes = np.array([[0, 0, 100, 100], [5, 5, 98, 98], [200, 200, 250, 250]], np.int32)
    kept = suppress_duplicates(boxes)
    assert len(kept) == 2 and [0, 0, 100, 100] in kept.tolist()


def test_a_new_face_is_shown_at_once_when_verified_else_after_confirm_frames():
    frames = video_frames("single_face.mp4")[:6]
    verified = HaarDetector(HaarConfig())
    assert [len(verified.detect(f)) for f in frames] == [1] * 6
    unverified = HaarDetector(HaarConfig(verify_cascade="", confirm_frames=3))
    assert [len(unverified.detect(f)) for f in frames] == [0, 0, 1, 1, 1, 1]


def test_lettering_is_proposed_but_never_shown():
    """no_face.mp4's title lettering gets one-scale proposals; the local search rejects them all."""
    frames = video_frames("no_face.mp4")
    fine = HaarConfig(scan_slices=1, scan_scale_factor=1.1, verify_cascade="", confirm_frames=1)
    detector = HaarDetector(fine)
    plan = detector.plan(frames[0].shape)
    none = np.empty((0, 4), np.int32)
    assert sum(len(detector.propose(f, plan.units, hide=none)) for f in frames) > 0
    assert sum(len(detector.detect(f)) for f in frames) == 0


@pytest.mark.parametrize("size", [24, 40, 90, 200, 340])
def test_a_face_appearing_at_any_size_is_found_within_one_scan_cycle(size):
    """From 24 px (a webcam face at ~3 m) to the frame's height, with the default config."""
    photo = gray("single_face.jpg")
    reference = HaarDetector(HaarConfig()).scan_full_resolution(photo)[0]
    scale = size / (reference[2] - reference[0])
    shrunk = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    face = np.round(reference * scale).astype(int)
    # the face's centre at (400, 180) of a flat 640x360 frame
    ox, oy = 400 - (face[0] + face[2]) // 2, 180 - (face[1] + face[3]) // 2
    scene = np.full((360, 640), 100, np.uint8)
    x1, y1, x2, y2 = max(0, ox), max(0, oy), min(640, ox + shrunk.shape[1]), min(360, oy + shrunk.shape[0])
    scene[y1:y2, x1:x2] = shrunk[y1 - oy:y2 - oy, x1 - ox:x2 - ox]
    truth = (face + [ox, oy, ox, oy])[None]
    config = HaarConfig()
    detector = HaarDetector(config)
    noise = np.random.default_rng(size)
    found_after = None
    for frame_number in range(5 + config.scan_slices):
        picture = scene if frame_number >= 5 else np.full_like(scene, 100)  # the face comes in at frame 5
        boxes = boxes_of(detector, cv2.add(picture, noise.integers(0, 3, scene.shape, dtype=np.uint8)))
        if frame_number < 5:
            assert len(boxes) == 0
        elif found_after is None and len(boxes) and iou_matrix(truth, boxes).max() > 0.5:
            found_after = frame_number - 5
    assert found_after is not None
    assert len(boxes) == 1 and iou_matrix(truth, boxes).max() > 0.5


def test_large_sizes_are_scanned_every_few_frames_and_small_ones_over_scan_slices():
    from edge.haar import FAST_FACE, FAST_SLICES
    config = HaarConfig()
    plan = plan_full_scan((360, 640), config, window=24)
    fast_sizes = {u.size for group in plan.fast for u in group}
    assert fast_sizes == {s for s in plan.sizes if s >= FAST_FACE * 360} and len(plan.fast) == FAST_SLICES
    assert len(plan.slices) == config.scan_slices and not fast_sizes & {u.size for s in plan.slices for u in s}
    cycle = [plan.frame_units(k) for k in range(config.scan_slices * FAST_SLICES)]
    assert all(any(u.size in fast_sizes for u in units) for units in cycle)  # every frame scans some large sizes
    for k in range(FAST_SLICES):  # and every large size within FAST_SLICES frames
        assert fast_sizes == {u.size for units in cycle[k:k + FAST_SLICES] for u in units if u.size in fast_sizes}


def test_a_lost_face_is_searched_for_as_long_as_it_was_seen_up_to_max_lost():
    frames = video_frames("single_face.mp4")
    flat = np.full_like(frames[0], 120)
    config = HaarConfig(max_lost=20)
    long_seen = HaarDetector(config)
    for frame in frames[:40]:
        long_seen.detect(frame)
    kept = []
    for _ in range(25):
        assert len(long_seen.detect(flat)) == 0  # a lost face is not shown
        kept.append(len(long_seen.faces))
    assert kept[:20] == [1] * 20 and kept[20:] == [0] * 5
    briefly_seen = HaarDetector(config)
    for frame in frames[:2]:
        briefly_seen.detect(frame)
    assert [len(briefly_seen.detect(flat)) + len(briefly_seen.faces) for _ in range(5)] == [1, 1, 1, 0, 0]


def test_a_lost_face_found_again_is_the_same_face_shown_at_once():
    frames = video_frames("single_face.mp4")
    detector = HaarDetector(HaarConfig(verify_cascade="", confirm_frames=3))  # new faces wait 3 frames
    for frame in frames[:10]:
        detector.detect(frame)
    for _ in range(5):
        detector.detect(np.full_like(frames[0], 120))
    assert len(detector.detect(frames[10])) == 1  # not 3 frames later: it is the face that was lost
