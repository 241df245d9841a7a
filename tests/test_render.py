"""Renderer: faces and status drawn onto the frame, latency shown as the stages report it."""

from __future__ import annotations

import json
import logging
import sys

import cv2
import numpy as np
import pytest

from edge.config import RenderConfig
from edge.render import (FONT, TAG_PAD, TAG_SHIFTS, Renderer, display_available, draw_faces, draw_status,
                         opencv_has_gui, overlap, place_tags, status_lines, tag_text, text_scale)
from edge.results import Faces, FrameResult
from tests.conftest import DATA, run_cli

LABELS = ("angry", "happy", "neutral")


def result(seq: int, stamps: dict[str, float]) -> FrameResult:
    faces = Faces(np.array([[100, 60, 180, 140]], np.int32), np.array([[0.1, 0.8, 0.1]], np.float32), LABELS)
    return FrameResult(seq=seq, index=seq, timestamp=seq / 30, faces=faces, stamps=stamps)


def test_status_lines_show_fps_stages_and_drops_for_live_sources_and_the_source_time_for_files():
    latencies = {"detect": 1.25, "classify": 0.2, "total": 7.0, "queue": 3.0}
    assert status_lines(latencies, 2, True, fps=29.97) == ["FPS  30.0", "ms detect 1.2 classify 0.2 total 7.0",
                                                           "dropped 2"]
    assert status_lines({"detect": 1.0}, 0, False, fps=30.0) == ["FPS  30.0"]
    # a file's frames queue in the ring ahead of the detector: its total says how deep the ring is, not latency
    assert status_lines(latencies, 0, True, source_t=12.34) == ["t 12.3 s", "ms detect 1.2 classify 0.2"]


def test_the_box_and_status_are_drawn_and_total_latency_is_the_previous_frames():
    renderer = Renderer(RenderConfig())
    stamps = {"captured": 0.0, "detect_start": 0.001, "detect_end": 0.003, "render_start": 0.004}
    first, second = result(0, dict(stamps)), result(1, dict(stamps))
    frame = np.zeros((240, 320, 3), np.uint8)
    assert "total" not in renderer.latencies(first)
    first.stamps["rendered"] = 0.0095  # set by the pipeline once the frame is drawn
    shown = renderer.latencies(second)
    assert shown["total"] == pytest.approx(9.5) and shown["detect"] == pytest.approx(2.0)
    renderer.render(frame, second)
    assert frame[60, 100:180].any() and frame[100:140, 100].any()  # the box's edges
    assert not frame[100:120, 120:160].any()  # inside the box: untouched
    assert frame[:20, :60].any()  # the status panel


def status_panel(frame: np.ndarray) -> np.ndarray:
    """The top-left corner, where the status panel goes (the test faces are far from it)."""
    return frame[:40, :90]


def test_still_images_get_no_status_panel_and_files_their_source_time():
    renderer, frame = Renderer(RenderConfig()), np.full((240, 320, 3), 128, np.uint8)
    renderer.render(frame, result(0, {}), still=True)
    assert (status_panel(frame) == 128).all() and (frame != 128).any()  # the face is drawn, no panel
    still, file_frame, live_frame = frame, frame.copy(), frame.copy()
    file_frame[:] = live_frame[:] = 128
    renderer.render(file_frame, result(45, {}), realtime=False)
    renderer.render(live_frame, result(46, {}), realtime=True)
    assert (status_panel(file_frame) == 0).any() and (status_panel(live_frame) == 0).any()
    assert not np.array_equal(status_panel(file_frame), status_panel(live_frame))  # "t 1.5 s", not "FPS"
    expected = np.full_like(file_frame, 128)
    draw_status(expected, ["t 1.5 s"])
    draw_faces(expected, result(45, {}), False)
    assert np.array_equal(file_frame, expected)


def faces_at(boxes: list[list[int]], labels: list[str]) -> Faces:
    probs = np.full((len(boxes), len(LABELS)), 0.1, np.float32)
    return Faces(np.array(boxes, np.int32).reshape(-1, 4), probs, LABELS, track_id=np.arange(10, 10 + len(boxes)),
                 smoothed=probs, display_label=labels)


def tag_sizes(faces: Faces, frame_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Each tag's (width, height), as draw_faces measures it."""
    scale = text_scale(frame_size[1])
    thickness = max(1, int(round(scale * 2)))
    sizes = []
    for i in range(len(faces)):
        (tw, th), base = cv2.getTextSize(tag_text(faces, i), FONT, scale, thickness)
        sizes.append((tw + 2 * TAG_PAD, th + base + 2 * TAG_PAD))
    return sizes


def tag_rects(faces: Faces, frame_size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    return place_tags(faces.xyxy, tag_sizes(faces, frame_size), frame_size)


def distance(a: tuple[int, int, int, int], b: np.ndarray) -> float:
    """Gap between a tag and a face box (0 when they touch or overlap)."""
    dx = max(int(b[0]) - a[2], a[0] - int(b[2]), 0)
    dy = max(int(b[1]) - a[3], a[1] - int(b[3]), 0)
    return float(np.hypot(dx, dy))


def assert_tags_apart_inside_and_near(faces: Faces, frame_size: tuple[int, int]) -> None:
    rects = tag_rects(faces, frame_size)
    for i, a in enumerate(rects):
        assert 0 <= a[0] and 0 <= a[1] and a[2] <= frame_size[0] and a[3] <= frame_size[1], a
        height = a[3] - a[1]
        assert distance(a, faces.xyxy[i]) <= (TAG_SHIFTS + 1) * height, (a, faces.xyxy[i])
        for b in rects[i + 1:]:
            assert overlap(a, b) == 0, (a, b)


CLOSE_FACES = [  # (frame size, face boxes): side by side, one behind another, a crowd, at the frame's edges
    ((640, 360), [[100, 100, 160, 160], [165, 100, 225, 160], [230, 105, 290, 165]]),
    ((640, 360), [[200, 60, 260, 120], [215, 70, 275, 130], [190, 80, 250, 140]]),
    ((320, 240), [[x, y, x + 40, y + 40] for x in (10, 60, 110, 160, 210) for y in (20, 90, 160)]),
    ((640, 360), [[0, 0, 80, 80], [85, 2, 165, 82], [560, 280, 640, 360], [480, 285, 555, 360]]),
]


@pytest.mark.parametrize("frame_size, boxes", CLOSE_FACES)
def test_tags_of_close_faces_are_moved_apart_inside_the_frame_and_near_their_face(frame_size, boxes):
    labels = ["surprise", "neutral", "happy", "uncertain", "disgust"] * 3
    faces = faces_at(boxes, labels[:len(boxes)])
    naive = [(int(b[0]), int(b[1]) - h, int(b[0]) + w, int(b[1]))  # every tag left-aligned just above its face
             for b, (w, h) in zip(faces.xyxy, tag_sizes(faces, frame_size))]
    assert any(overlap(a, b) for i, a in enumerate(naive) for b in naive[i + 1:])  # they would collide
    assert_tags_apart_inside_and_near(faces, frame_size)


def test_tags_of_the_group_photo_do_not_overlap(tmp_path):
    events = tmp_path / "faces.jsonl"
    done = run_cli("--source", str(DATA / "multi_face.jpg"), "--headless", "--events", str(events))
    assert done.returncode == 0, done.stderr
    found = json.loads(events.read_text())["faces"]
    assert len(found) == 5
    faces = faces_at([face["box"] for face in found], [face["label"] for face in found])
    height, width = cv2.imread(str(DATA / "multi_face.jpg")).shape[:2]
    assert_tags_apart_inside_and_near(faces, (width, height))


def test_a_lone_tag_sits_just_above_its_face_or_inside_when_at_the_top():
    (above,) = tag_rects(faces_at([[100, 100, 160, 160]], ["happy"]), (640, 360))
    assert above[3] == 100 and above[0] == 100
    (top,) = tag_rects(faces_at([[100, 0, 160, 60]], ["happy"]), (640, 360))
    assert top[1] == 0 and top[0] == 100  # no room above: inside the box's top edge


def test_headless_opencv_with_a_display_runs_headless_with_a_warning(monkeypatch, caplog):
    """opencv-python-headless (Raspberry Pi OS Lite's choice) has no GUI backend: no window, no traceback."""
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "\n  GUI:                           NONE\n")
    assert not opencv_has_gui()
    with caplog.at_level(logging.WARNING, logger="edge.render"):
        assert display_available() is False
    (record,) = caplog.records
    assert "opencv-python-headless" in record.message
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "\n  GUI:                           QT5\n")
    assert opencv_has_gui() and display_available() is True
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert display_available() is False
