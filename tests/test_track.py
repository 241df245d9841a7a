"""The tracker on synthetic detections: steady faces, crossing faces, missed detections, faces that leave."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edge.config import ConfigError, SmoothingConfig, TrackerConfig, load_config
from edge.results import Faces
from edge.boxes import iou_matrix
from edge.track import TrackedLabels, Tracker, assign, overlap_pairs

SIZE = 40  # face box side, pixels


def box(x: float, y: float) -> list[float]:
    return [x, y, x + SIZE, y + SIZE]


def run(tracker: Tracker, frames: list[list[list[float]]]) -> list[list[int]]:
    """Track ids per frame, in the order the boxes were given."""
    return [tracker.match(np.array(boxes, np.float64).reshape(-1, 4)).tolist() for boxes in frames]


def cheapest(cost: np.ndarray) -> float:
    """The cheapest assignment's total cost, by trying every one."""
    rows, cols = cost.shape
    if rows <= cols:
        return min(sum(cost[r, c] for r, c in zip(range(rows), cs)) for cs in itertools.permutations(range(cols), rows))
    return min(sum(cost[r, c] for r, c in zip(rs, range(cols))) for rs in itertools.permutations(range(rows), cols))


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 3), (3, 2), (4, 4), (5, 3)])
def test_assignment_is_the_cheapest_one(rows, cols):
    rng = np.random.default_rng(rows * 10 + cols)
    for _ in range(20):
        cost = rng.random((rows, cols))
        pairs = assign(cost)
        assert len(pairs) == min(rows, cols)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(cheapest(cost))


def test_assignment_of_nothing():
    assert assign(np.zeros((0, 3))) == [] and assign(np.zeros((2, 0))) == []


def test_overlap_pairs_are_the_most_pairs_not_the_greedy_ones():
    reference = np.array([[0, 0, 10, 10], [4, 0, 14, 10]])
    found = np.array([[1, 0, 11, 10], [-3, 0, 7, 10], [50, 50, 60, 60]])
    # found[0] overlaps reference[0] best (IoU 0.82); taking that pair would leave found[1] (0.54 with
    # reference[0], 0.18 with reference[1]) without one: the most pairs at IoU >= 0.5 are two
    assert overlap_pairs(found, reference, 0.5) == [(0, 1), (1, 0)]
    assert overlap_pairs(found, reference, 0.6) == [(0, 0)]
    assert overlap_pairs(found, reference, 0.9) == []
    assert overlap_pairs(found[:0], reference, 0.5) == overlap_pairs(found, reference[:0], 0.5) == []


def test_iou_by_hand():
    iou = iou_matrix(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]]))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])


def test_a_moving_face_keeps_its_id():
    ids = run(Tracker(TrackerConfig()), [[box(10 + 6 * i, 50 + 2 * i)] for i in range(60)])
    assert ids == [[0]] * 60


def test_faces_get_ids_in_order_and_keep_them_whatever_the_box_order():
    frames = [[box(0, 0), box(200, 0)], [box(203, 0), box(2, 0)], [box(4, 1), box(205, 2)]]
    assert run(Tracker(TrackerConfig()), frames) == [[0, 1], [1, 0], [0, 1]]


def crossing(occluded: range) -> list[list[list[float]]]:
    """Face A moves right at y=100, face B left at y=110, 8 px a frame; B is hidden behind A in ``occluded``."""
    frames = []
    for i in range(40):
        a, b = box(8 * i, 100), box(312 - 8 * i, 110)
        frames.append([a] if i in occluded else [a, b])
    return frames


def test_crossing_faces_keep_their_ids():
    ids = run(Tracker(TrackerConfig()), crossing(occluded=range(0)))
    assert all(frame == [0, 1] for frame in ids)


def test_crossing_faces_keep_their_ids_when_one_is_hidden_behind_the_other():
    ids = run(Tracker(TrackerConfig()), crossing(occluded=range(17, 22)))
    assert all(frame == ([0] if i in range(17, 22) else [0, 1]) for i, frame in enumerate(ids))


def test_without_prediction_the_hidden_face_loses_its_id():
    """The same crossing with velocity_weight 0: what the constant-velocity prediction is for."""
    ids = run(Tracker(TrackerConfig(velocity_weight=0.0)), crossing(occluded=range(17, 22)))
    assert ids[-1] != [0, 1]


def test_a_face_missed_for_a_few_frames_keeps_its_id():
    frames = [[box(100 + 3 * i, 100)] if i not in (10, 11, 12) else [] for i in range(30)]
    ids = run(Tracker(TrackerConfig(max_missed=3)), frames)
    assert [frame for frame in ids if frame] == [[0]] * 27


def test_a_face_that_leaves_for_good_ends_its_track_and_ids_are_never_reused():
    tracker = Tracker(TrackerConfig(max_missed=3))
    stays, leaves = box(0, 0), box(300, 0)
    assert run(tracker, [[stays, leaves]] * 5) == [[0, 1]] * 5
    assert run(tracker, [[stays]] * 3) == [[0]] * 3
    assert tracker.ids == {0, 1}  # missed 3 frames: still waiting
    run(tracker, [[stays]])
    assert tracker.ids == {0}  # missed 4 > max_missed: ended
    assert run(tracker, [[stays, leaves]]) == [[0, 2]]  # back after a long gap: a new id


def test_a_far_away_face_starts_a_new_track():
    tracker = Tracker(TrackerConfig())
    assert run(tracker, [[box(0, 0)], [box(0, 0), box(0, 200)]]) == [[0], [0, 1]]


def test_update_sets_the_track_ids_of_faces_and_keeps_the_rest():
    labels = ("a", "b")
    tracker = Tracker(TrackerConfig())
    faces = Faces(np.array([box(0, 0), box(100, 0)]), np.array([[0.2, 0.8], [0.9, 0.1]]), labels)
    tracked = tracker.update(faces)
    assert tracked.track_id.tolist() == [0, 1]
    np.testing.assert_array_equal(tracked.probs, faces.probs)
    assert tracker.update(Faces.empty(labels)).track_id.tolist() == []


@pytest.mark.parametrize("text, error", [
    ("[tracker]\nmax_missed = 0\n", {"max_missed": 0, "enabled": True}),
    ("[tracker]\nmin_iou = 0.3\nmax_distance = 1.0\n", {"min_iou": 0.3, "max_distance": 1.0, "max_missed": 10}),
    ("[tracker]\nmax_missed = -1\n", "tracker.max_missed must be >= 0"),
    ("[tracker]\nmin_iou = 1.5\n", "tracker.min_iou must be <= 1.0"),
    ("[tracker]\nvelocity_weight = 2\n", "tracker.velocity_weight must be <= 1.0"),
    ("[tracker]\nenabled = 'yes'\n", "tracker.enabled must be bool"),
])
def test_tracker_config(tmp_path, text, error):
    path = tmp_path / "config.toml"
    path.write_text(text)
    if isinstance(error, dict):  # loads, with exactly these values
        tracker = load_config(path).tracker
        assert {key: getattr(tracker, key) for key in error} == error
    else:
        with pytest.raises(ConfigError, match=error):
            load_config(path)


def test_tracked_labels_give_ids_and_steady_labels_as_the_cli_shows_them():
    labels = ("happy", "sad")
    step = TrackedLabels(TrackerConfig(), SmoothingConfig(half_life_s=0.5, hysteresis=0.2, min_confidence=0.0), labels)
    shown = []
    for i in range(10):
        probs = [[0.9, 0.1]] if i < 8 else [[0.3, 0.7]]  # two flickering frames at the end
        faces = step.update(Faces(np.array([box(10 + 2 * i, 50)]), np.array(probs, np.float32), labels), t=i / 30)
        assert faces.track_id.tolist() == [0]
        shown += faces.shown_label
    assert shown == ["happy"] * 10  # two frames of "sad" do not flip a smoothed, hysteretic label
    assert faces.raw_label == ["sad"] and faces.smoothed[0, 0] > 0.5


def test_tracked_labels_without_the_tracker_leave_faces_untracked():
    step = TrackedLabels(TrackerConfig(enabled=False), SmoothingConfig(), ("happy", "sad"))
    faces = step.update(Faces(np.array([box(10, 50)]), np.array([[0.9, 0.1]], np.float32), ("happy", "sad")), t=0.0)
    assert faces.track_id.tolist() == [-1] and faces.smoothed is None
