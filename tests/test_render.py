"""Renderer: faces and status drawn onto the frame, latency shown as the stages report it."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import RenderConfig
from edge.render import Renderer, status_lines
from edge.results import Faces, FrameResult

LABELS = ("angry", "happy", "neutral")


def result(seq: int, stamps: dict[str, float]) -> FrameResult:
    faces = Faces(np.array([[100, 60, 180, 140]], np.int32), np.array([[0.1, 0.8, 0.1]], np.float32), LABELS)
    return FrameResult(seq=seq, index=seq, timestamp=seq / 30, faces=faces, stamps=stamps)


def test_status_lines_show_fps_stages_and_drops():
    lines = status_lines(29.97, {"detect": 1.25, "classify": 0.2, "total": 7.0, "queue": 3.0}, 2, True)
    assert lines == ["FPS  30.0", "ms detect 1.2 classify 0.2 total 7.0", "dropped 2"]
    assert status_lines(30.0, {"detect": 1.0}, 0, False) == ["FPS  30.0"]


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
