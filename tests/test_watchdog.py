"""Watchdog: a stage holding frames that finishes none for the timeout is stalled; idle or moving stages never are."""

from __future__ import annotations

from edge.watchdog import Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def watch(timeout_s: float = 5.0) -> tuple[Watchdog, Clock]:
    clock = Clock()
    return Watchdog(timeout_s, clock=clock), clock


def step(watchdog: Watchdog, clock: Clock, seconds: float, **counts: tuple[int, int]) -> tuple[str, float] | None:
    """Advance the clock in quarter-second looks, feeding the same counts; what the watchdog says last."""
    stalled = None
    for _ in range(int(seconds / 0.25)):
        clock.now += 0.25
        for stage, (handed, done) in counts.items():
            watchdog.update(stage, handed, done)
        stalled = watchdog.stalled()
    return stalled


def test_a_stage_with_frames_in_flight_and_no_progress_is_stalled_after_the_timeout():
    watchdog, clock = watch(5.0)
    assert step(watchdog, clock, 4.5, detector=(10, 8)) is None
    stage, seconds = step(watchdog, clock, 1.0, detector=(10, 8))
    assert stage == "detector" and 5.0 <= seconds <= 5.5


def test_an_idle_stage_is_never_stalled_and_its_clock_starts_when_it_gets_work():
    watchdog, clock = watch(5.0)
    assert step(watchdog, clock, 60.0, detector=(8, 8)) is None  # a paused camera, the end of a file
    assert step(watchdog, clock, 4.5, detector=(9, 8)) is None  # busy for 4.5 s only
    assert step(watchdog, clock, 1.0, detector=(9, 8))[0] == "detector"


def test_a_slow_stage_that_keeps_finishing_frames_is_not_stalled():
    watchdog, clock = watch(5.0)
    for done in range(20):  # one frame every 4 s, always more waiting
        assert step(watchdog, clock, 4.0, classifier=(done + 5, done)) is None


def test_the_stage_stalled_longest_is_named():
    watchdog, clock = watch(2.0)
    step(watchdog, clock, 1.0, detector=(9, 9), classifier=(9, 3))  # the classifier stopped first ...
    stalled = step(watchdog, clock, 1.5, detector=(10, 9), classifier=(9, 3))  # ... the detector then blocks on it
    assert stalled is not None and stalled[0] == "classifier"


def test_no_stall_is_blamed_for_the_time_its_owner_was_away():
    """The main thread busy for longer than the timeout: stages waiting to hand it results are not stalled."""
    watchdog, clock = watch(5.0)
    step(watchdog, clock, 1.0, classifier=(12, 10))
    clock.now += 8.0  # no look for 8 s
    watchdog.update("classifier", 12, 10)
    assert watchdog.stalled() is None
    assert step(watchdog, clock, 5.5, classifier=(12, 10))[0] == "classifier"  # then it is, if nothing moves
