"""The result type validates its shapes and gives labels, scores and JSON records."""

from __future__ import annotations

import numpy as np
import pytest

from edge.results import Faces, FrameResult, Stamps

LABELS = ("a", "b", "c")


def test_faces_derive_labels_scores_and_records():
    faces = Faces(np.array([[1, 2, 11, 12], [5, 5, 9, 9]]), np.array([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]]), LABELS)
    assert faces.shown_label == ["b", "a"]
    np.testing.assert_allclose(faces.score, [0.7, 0.6], rtol=1e-6)
    assert faces.track_id.tolist() == [-1, -1]
    record = faces.records()[0]
    assert record["box"] == [1, 2, 11, 12] and record["label"] == "b" and set(record["probs"]) == set(LABELS)


@pytest.mark.parametrize("xyxy, probs, message", [
    (np.zeros((2, 3)), np.zeros((2, 3)), r"xyxy: expected shape \(_, 4\), got \(2, 3\)"),
    (np.zeros((2, 4)), np.zeros((1, 3)), r"probs: expected shape \(2, 3\), got \(1, 3\)"),
    (np.zeros((1, 4)), np.zeros((1, 2)), r"probs: expected shape \(1, 3\), got \(1, 2\)"),
])
def test_bad_shapes_are_rejected(xyxy, probs, message):
    with pytest.raises(ValueError, match=message):
        Faces(xyxy, probs, LABELS)


def test_empty_faces_and_frame_record():
    result = FrameResult(seq=0, index=3, timestamp=0.1, faces=Faces.empty(LABELS),
                         stamps=Stamps(captured=1.0, detect_start=1.002, detect_end=1.005))
    assert len(result.faces) == 0
    assert result.record() == {"frame": 3, "seq": 0, "t": 0.1, "faces": []}
    latencies = result.latencies_ms()
    assert latencies == {"queue": pytest.approx(2.0), "detect": pytest.approx(3.0)}  # only spans with both ends
