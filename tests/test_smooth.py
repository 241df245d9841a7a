"""Per-track smoothing by hand: EMA and window arithmetic, hysteresis, "uncertain", and the Faces columns it fills."""

from __future__ import annotations

import numpy as np
import pytest

from edge.config import ConfigError, SmoothingConfig, load_config
from edge.results import UNCERTAIN, Faces
from edge.smooth import Smoother, choose_label, ema_weight

LABELS = ("a", "b", "c")
BOX = [[0, 0, 10, 10]]


def one_face(probs: list[float], track_id: int = 0) -> Faces:
    return Faces(np.array(BOX), np.array([probs]), LABELS, track_id=np.array([track_id]))


def feed(smoother: Smoother, samples: list[tuple[float, list[float]]]) -> list[Faces]:
    return [smoother.update(one_face(probs), t) for t, probs in samples]


@pytest.mark.parametrize("dt, half_life, weight", [(0.1, 0.1, 0.5), (0.2, 0.1, 0.75), (0.0, 0.1, 0.0),
                                                   (-1.0, 0.1, 0.0), (0.05, 0.1, 1 - 0.5 ** 0.5)])
def test_ema_weight(dt, half_life, weight):
    assert ema_weight(dt, half_life) == pytest.approx(weight)


def test_ema_by_hand():
    smoother = Smoother(SmoothingConfig(method="ema", half_life_s=0.1, hysteresis=0.0, min_confidence=0.0), LABELS)
    out = feed(smoother, [(0.0, [1, 0, 0]), (0.1, [0, 1, 0]), (0.2, [0, 1, 0]), (0.4, [0, 0, 1])])
    expected = [[1, 0, 0], [0.5, 0.5, 0], [0.25, 0.75, 0], [0.0625, 0.1875, 0.75]]  # weights 1/2, 1/2, 3/4
    np.testing.assert_allclose([f.smoothed[0] for f in out], expected, atol=1e-6)
    assert [f.shown_label[0] for f in out] == ["a", "a", "b", "c"]  # the 0.5/0.5 tie keeps the first
    assert [f.raw_label[0] for f in out] == ["a", "b", "b", "c"]


def test_window_by_hand():
    smoother = Smoother(SmoothingConfig(method="window", window_s=0.25, hysteresis=0.0, min_confidence=0.0), LABELS)
    out = feed(smoother, [(0.0, [1, 0, 0]), (0.1, [0, 1, 0]), (0.2, [0, 1, 0]), (0.3, [0, 0, 1])])
    expected = [[1, 0, 0], [0.5, 0.5, 0], [1 / 3, 2 / 3, 0], [0, 2 / 3, 1 / 3]]  # t=0.0 leaves at t=0.3
    np.testing.assert_allclose([f.smoothed[0] for f in out], expected, atol=1e-6)


@pytest.mark.parametrize("smoothed, shown, expected", [
    ([0.6, 0.3, 0.1], None, "a"),  # a new track shows its top label
    ([0.3, 0.6, 0.1], "a", "b"),  # b leads a by 0.3 >= 0.2
    ([0.35, 0.5, 0.15], "a", "a"),  # b leads by only 0.15: a stays
    ([0.3, 0.5, 0.2], "a", "b"),  # exactly the margin: switch
    ([0.35, 0.35, 0.3], None, UNCERTAIN),  # top below min_confidence 0.4
    ([0.38, 0.32, 0.3], "a", UNCERTAIN),  # a shown label falls below it: uncertain at once
    ([0.5, 0.3, 0.2], UNCERTAIN, UNCERTAIN),  # leaving uncertain takes 0.4 + 0.2
    ([0.6, 0.3, 0.1], UNCERTAIN, "a"),
    ([0.45, 0.5, 0.05], "a", "a"),  # above the threshold, not leading by the margin
])
def test_hysteresis_and_uncertain(smoothed, shown, expected):
    assert choose_label(np.array(smoothed), LABELS, shown, hysteresis=0.2, min_confidence=0.4) == expected


def test_a_single_outlier_frame_does_not_flip_the_label():
    smoother = Smoother(SmoothingConfig(), LABELS)
    steady, outlier = [0.1, 0.8, 0.1], [0.9, 0.05, 0.05]
    samples = [(i / 30, outlier if i == 10 else steady) for i in range(20)]
    assert {f.shown_label[0] for f in feed(smoother, samples)} == {"b"}


def test_tracks_are_smoothed_separately_and_ended_tracks_forgotten():
    smoother = Smoother(SmoothingConfig(method="ema", half_life_s=0.1, hysteresis=0.0, min_confidence=0.0), LABELS)
    two = Faces(np.array(BOX * 2), np.array([[1, 0, 0], [0, 0, 1]]), LABELS, track_id=np.array([3, 7]))
    smoother.update(two, 0.0)
    out = smoother.update(Faces(np.array(BOX * 2), np.array([[0, 1, 0], [0, 1, 0]]), LABELS,
                                track_id=np.array([7, 3])), 0.1)
    np.testing.assert_allclose(out.smoothed, [[0, 0.5, 0.5], [0.5, 0.5, 0]], atol=1e-6)
    smoother.update(one_face([0, 1, 0], track_id=3), 0.2, alive={3})
    assert set(smoother.states) == {3}


def test_untracked_faces_keep_their_raw_probabilities():
    smoother = Smoother(SmoothingConfig(), LABELS)
    out = smoother.update(one_face([0.2, 0.7, 0.1], track_id=-1), 0.0)
    np.testing.assert_allclose(out.smoothed, [[0.2, 0.7, 0.1]], atol=1e-6)
    assert out.shown_label == ["b"] and smoother.states == {}


def test_faces_records_carry_raw_and_smoothed():
    faces = Faces(np.array(BOX * 2), np.array([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2]]), LABELS, track_id=np.array([0, 1]),
                  smoothed=np.array([[0.6, 0.3, 0.1], [0.3, 0.35, 0.35]]), display_label=["a", UNCERTAIN])
    first, second = faces.records()
    assert first["label"] == "a" and first["raw_label"] == "b" and first["score"] == pytest.approx(0.6)
    assert first["probs"]["b"] == pytest.approx(0.7) and first["smoothed"]["a"] == pytest.approx(0.6)
    assert second["label"] == UNCERTAIN and second["score"] == pytest.approx(0.35)  # the top smoothed one
    assert list(first) == ["box", "track_id", "label", "score", "raw_label", "probs", "smoothed"]


@pytest.mark.parametrize("kwargs, message", [
    ({"smoothed": np.zeros((1, 3))}, r"smoothed: expected shape \(2, 3\), got \(1, 3\)"),
    ({"display_label": ["a"]}, "display_label: expected 2 labels, got 1"),
    ({"smoothed": np.zeros((2, 3)), "display_label": ["a", "b"]}, None),
])
def test_faces_validate_the_smoothing_columns(kwargs, message):
    args = (np.array(BOX * 2), np.zeros((2, 3)), LABELS)
    if message is None:
        assert len(Faces(*args, **kwargs)) == 2
    else:
        with pytest.raises(ValueError, match=message):
            Faces(*args, **kwargs)


@pytest.mark.parametrize("text, error", [
    ("[smoothing]\nmethod = 'window'\nwindow_s = 1.0\n", {"method": "window", "window_s": 1.0, "enabled": True}),
    ("[smoothing]\nenabled = false\n", {"enabled": False, "method": "ema"}),
    ("[smoothing]\nmethod = 'median'\n", "smoothing.method must be one of"),
    ("[smoothing]\nhalf_life_s = 0\n", "smoothing.half_life_s must be > 0.0"),
    ("[smoothing]\nmin_confidence = 1.1\n", "smoothing.min_confidence must be <= 1.0"),
])
def test_smoothing_config(tmp_path, text, error):
    path = tmp_path / "config.toml"
    path.write_text(text)
    if isinstance(error, dict):  # loads, with exactly these values
        smoothing = load_config(path).smoothing
        assert {key: getattr(smoothing, key) for key in error} == error
    else:
        with pytest.raises(ConfigError, match=error):
            load_config(path)
