"""Capture: every source kind opens or fails with one clear line; the reader is lossless or drops stale frames."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.capture import FrameReader, Pacer, Source, SourceError, fit_into, open_source
from edge.config import CaptureConfig
from edge.messages import EndOfStream, FrameTask
from tests.conftest import DATA


@pytest.mark.parametrize("spec, message", [
    ("missing.mp4", "source not found: missing.mp4"),
    (str(DATA / "README.md"), "not a decodable video or image"),
    ("97", "camera 97 could not be opened"),
    ("rtsp://127.0.0.1:9/none", "stream could not be opened"),
    ("picamera", "picamera2"),
])
def test_bad_sources_fail_with_a_clear_message(spec, message):
    config = CaptureConfig(stall_timeout_s=1.0)
    with pytest.raises(SourceError, match=message):
        open_source(spec, config)


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path), CaptureConfig())


def test_video_file_is_lossless_and_image_folder_lists_images(tmp_path):
    video = open_source(str(DATA / "single_face.mp4"), CaptureConfig())
    assert not video.live and video.fps == pytest.approx(30.0)
    count = 0
    while video.read() is not None:
        count += 1
    assert count == 72
    folder = open_source(str(DATA), CaptureConfig())
    names = []
    while folder.read() is not None:
        names.append(folder.current_name())
    assert names == ["multi_face.jpg", "single_face.jpg"] and folder.still


class CountingSource(Source):
    """Synthetic frames whose first pixel is their frame number; optionally paced like a camera."""

    def __init__(self, frames: int, live: bool, period_s: float = 0.0) -> None:
        self.frames, self.live, self.period_s, self.fps = frames, live, period_s, 30.0
        self.frame_shape = (8, 8, 3)
        self.next = 0

    def read(self, out=None):
        if self.next >= self.frames:
            return None
        time.sleep(self.period_s)
        frame = out if out is not None else np.zeros(self.frame_shape, np.uint8)
        frame[0, 0, 0] = self.next % 256
        self.next += 1
        return frame


def run_reader(source: Source, slow_consumer_s: float, max_in_flight: int) -> tuple[list, FrameReader]:
    buffers = [np.zeros(8 * 8 * 3, np.uint8) for _ in range(4)]
    outbox: list = []
    done = threading.Event()
    reader: FrameReader

    def send(task):
        outbox.append(task)
        if isinstance(task, EndOfStream):
            done.set()
            return
        # A consumer on another thread: read the pixel, then free the slot later.
        def consume():
            time.sleep(slow_consumer_s)
            task.first_pixel = int(buffers[task.slot][0])
            reader.release(task.slot)
        threading.Thread(target=consume).start()

    reader = FrameReader(source, buffers, send, CaptureConfig(reopen_attempts=0), threading.Event(),
                         max_in_flight=max_in_flight)
    reader.start()
    assert done.wait(10)
    reader.join(5)
    time.sleep(slow_consumer_s + 0.05)
    return [t for t in outbox if isinstance(t, FrameTask)], reader


def test_file_reader_delivers_every_frame_in_order_under_backpressure():
    tasks, reader = run_reader(CountingSource(30, live=False), slow_consumer_s=0.01, max_in_flight=4)
    assert [t.index for t in tasks] == list(range(30))
    assert [t.seq for t in tasks] == list(range(30))
    assert [t.first_pixel for t in tasks] == list(range(30))  # no slot overwritten before it was used
    assert reader.dropped == 0


def test_live_reader_drops_stale_frames_and_keeps_the_newest():
    tasks, reader = run_reader(CountingSource(40, live=True, period_s=0.002), slow_consumer_s=0.03,
                               max_in_flight=1)
    indexes = [t.index for t in tasks]
    assert reader.dropped > 0 and len(tasks) + reader.dropped == 40
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)  # never the same frame twice
    assert [t.seq for t in tasks] == list(range(len(tasks)))
    assert [t.first_pixel for t in tasks] == indexes


class StallingSource(CountingSource):
    """A live source that stops delivering after a few frames until it is reopened."""

    def __init__(self, stall_after: int, reopens_that_fail: int) -> None:
        super().__init__(frames=1000, live=True)
        self.name, self.can_stall = "fake camera", True
        self.stall_after, self.reopens_that_fail, self.reopens = stall_after, reopens_that_fail, 0

    def read(self, out=None):
        if self.next == self.stall_after and self.reopens <= self.reopens_that_fail:
            return None
        return super().read(out)

    def reopen(self) -> bool:
        self.reopens += 1
        return self.reopens > self.reopens_that_fail


def test_a_stalled_live_source_is_reopened_with_back_off():
    source = StallingSource(stall_after=5, reopens_that_fail=2)
    started = time.perf_counter()
    tasks, reader = run_reader_with(source, CaptureConfig(reopen_attempts=5, reopen_backoff_s=0.01))
    assert [t.index for t in tasks] == list(range(12)) and reader.error is None
    assert source.reopens == 3
    assert time.perf_counter() - started >= 0.01 + 0.02 + 0.04  # the waits doubled


def test_a_live_source_that_never_comes_back_ends_with_an_error():
    source = StallingSource(stall_after=3, reopens_that_fail=100)
    tasks, reader = run_reader_with(source, CaptureConfig(reopen_attempts=2, reopen_backoff_s=0.01))
    assert [t.index for t in tasks] == [0, 1, 2]
    assert reader.error == "fake camera stopped delivering frames"


def run_reader_with(source: Source, config: CaptureConfig, frames: int = 12) -> tuple[list, FrameReader]:
    """Read until ``frames`` frames arrived (then stop) or the source gave up."""
    buffers = [np.zeros(int(np.prod(source.frame_shape)), np.uint8) for _ in range(4)]
    outbox: list = []
    stop = threading.Event()

    def consume(task):  # used at once, so its slot is free again
        outbox.append(task)
        if isinstance(task, FrameTask):
            reader.release(task.slot)
            if len(outbox) == frames:
                stop.set()

    reader = FrameReader(source, buffers, consume, config, stop, max_in_flight=4)
    reader.run()  # on this thread: it returns at the end of the stream
    assert isinstance(outbox[-1], EndOfStream)
    return outbox[:-1], reader


def test_a_file_read_as_live_ends_at_its_end():
    source = open_source(str(DATA / "single_face.mp4"), CaptureConfig(live="yes"))
    assert source.live and not source.can_stall
    tasks, reader = run_reader_with(source, CaptureConfig(reopen_backoff_s=5.0), frames=1000)
    assert len(tasks) == 72 and reader.error is None


@pytest.mark.parametrize("shape, shrunk", [((360, 640, 3), (6, 10, 3)), ((7, 1000, 3), (1, 64, 3)),
                                           ((480, 480), (8, 8, 3))])  # (gray: as BGR)
def test_a_frame_too_big_for_its_slot_is_shrunk_to_fit(shape, shrunk):
    buffer = np.zeros(8 * 8 * 3, np.uint8)
    view = fit_into(np.full(shape, 200, np.uint8), buffer)
    assert view.shape == shrunk and np.shares_memory(view, buffer)  # its aspect kept, as large as the slot allows
    assert (buffer[:view.size] == 200).all() and (buffer[view.size:] == 0).all()


class FakeClock:
    """perf_counter for edge.capture, and the stop event its Pacer sleeps on: a wait moves the clock on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def perf_counter(self) -> float:
        return self.now

    def wait(self, delay: float) -> bool:
        self.waits.append(delay)
        self.now += delay
        return False


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("edge.capture.time.perf_counter", fake.perf_counter)
    return fake


def test_pacer_holds_frames_until_their_time(clock):
    pacer, started, released = Pacer(), clock.now, []
    for index in range(10):
        pacer.wait(index / 30, clock)
        released.append(clock.now - started)
    assert released == pytest.approx([i / 30 for i in range(10)])


def test_pacer_a_little_behind_catches_up_on_its_schedule(clock):
    pacer, started = Pacer(), clock.now
    pacer.wait(0.0, clock)
    clock.now += 0.2  # a slow frame, less than MAX_PACE_LAG_S late
    for index in (1, 2, 3, 4, 5, 6):  # due at 0.033 ... 0.2 s: at once, then back on the schedule
        pacer.wait(index / 30, clock)
    pacer.wait(7 / 30, clock)
    assert clock.now - started == pytest.approx(7 / 30)


def test_pacer_falling_behind_restarts_the_clock_instead_of_rushing(clock):
    pacer = Pacer()
    pacer.wait(0.0, clock)
    clock.now += 0.7  # a stall longer than MAX_PACE_LAG_S
    restarted = clock.now
    pacer.wait(1 / 30, clock)  # late: shown at once, and the schedule starts again from it
    assert clock.now == restarted
    pacer.wait(2 / 30, clock)
    assert clock.now - restarted == pytest.approx(1 / 30)


def test_a_stop_ends_a_pacing_wait_at_once():
    pacer, stop = Pacer(), threading.Event()
    pacer.wait(0.0, stop)
    stop.set()
    started = time.perf_counter()
    pacer.wait(30.0, stop)
    assert time.perf_counter() - started < 10  # not the 30 s it was due in (generous: the machine may be loaded)


@pytest.mark.parametrize("threads", [1, 3])
def test_video_files_decode_on_the_configured_number_of_threads(threads):
    import cv2

    source = open_source(str(DATA / "single_face.mp4"), CaptureConfig(decode_threads=threads))
    try:
        assert source.capture.get(cv2.CAP_PROP_N_THREADS) == threads
        assert source.read() is not None
    finally:
        source.close()


# --- reliability: camera indexes, opens that block, damaged files ----------------------------------------------

@pytest.mark.parametrize("spec, camera", [("0", True), ("12", True), ("\u00b2", False), ("\u0661", False),
                                          ("-1", False), ("", False), ("1.5", False)])
def test_only_ascii_digits_name_a_camera(spec, camera):
    from edge.capture import is_camera_index

    assert is_camera_index(spec) is camera


def test_a_camera_index_too_large_for_opencv_is_a_clear_error():
    with pytest.raises(SourceError, match="camera index out of range"):
        open_source("99999999999999999999", CaptureConfig())


def test_the_opener_thread_returns_the_source_or_raises_its_error():
    from edge.capture import SourceOpener

    opener = SourceOpener(str(DATA / "single_face.mp4"), CaptureConfig())
    opener.start()
    deadline = time.monotonic() + 30
    while (source := opener.result(timeout=0.1)) is None and time.monotonic() < deadline:
        pass
    assert source is not None and source.frame_shape == (360, 640, 3)
    source.close()
    failing = SourceOpener("missing.mp4", CaptureConfig())
    failing.start()
    failing.join(30)
    with pytest.raises(SourceError, match="source not found"):
        failing.result(timeout=0)


def test_an_open_that_blocks_can_be_abandoned(tmp_path):
    """A FIFO with no writer blocks open() itself: the caller gives up at once, the thread ends when it can."""
    import os

    from edge.capture import SourceOpener

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    opener = SourceOpener(str(fifo), CaptureConfig())
    opener.start()
    assert opener.result(timeout=1.0) is None and opener.is_alive()
    started = time.perf_counter()
    opener.abandon(wait_s=0.1)
    assert time.perf_counter() - started < 10  # not blocked with the open (generous: the machine may be loaded)
    deadline = time.monotonic() + 30
    while opener.is_alive() and time.monotonic() < deadline:  # writers that send nothing: each open returns
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader at this moment (between the backends' tries)
            pass
        time.sleep(0.05)
    assert not opener.is_alive()
    with pytest.raises(SourceError, match="not a decodable video"):
        opener.result(timeout=0)


@pytest.fixture(scope="module")
def damaged_video(tmp_path_factory):
    from benchmarks.faults import damaged_copy
    from tests.conftest import looped_video

    folder = tmp_path_factory.mktemp("damaged")
    return damaged_copy(looped_video(folder, 7), folder / "damaged.mp4")  # 504 frames, 20 KB garbage in the middle


def test_a_damaged_file_is_decoded_past_the_damage_with_one_warning(damaged_video, caplog):
    source = open_source(str(damaged_video), CaptureConfig())
    assert source.frame_count == 504
    tasks, reader = run_reader_with(source, CaptureConfig(), frames=10_000)
    indexes = [t.index for t in tasks]
    gaps = [(a, b) for a, b in zip(indexes, indexes[1:]) if b != a + 1]
    assert len(gaps) >= 1 and indexes[-1] == 503  # frames after the damage, up to the last, are read
    assert len(tasks) + source.skipped == 504 and source.skipped > 0
    assert [t.timestamp for t in tasks] == pytest.approx([i / 30 for i in indexes])  # times follow the frame numbers
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"{damaged_video}: {source.skipped} of its 504 frames could not be decoded "
                        "(the file is damaged) and were skipped"]


def test_a_sound_file_whose_header_overcounts_its_frames_gives_no_warning(caplog):
    source = open_source(str(DATA / "no_face.mp4"), CaptureConfig())  # its header says 98 frames; 95 decode
    tasks, _ = run_reader_with(source, CaptureConfig(), frames=10_000)
    assert len(tasks) == 95 and source.skipped == 0
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_skipped_frames_keep_a_files_numbering_and_are_no_damage(caplog):
    import cv2

    capture, frames = cv2.VideoCapture(str(DATA / "single_face.mp4")), []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    source = open_source(str(DATA / "single_face.mp4"), CaptureConfig())
    assert np.array_equal(source.read(), frames[0])
    assert source.skip() and source.skip()
    assert np.array_equal(source.read(), frames[3])
    passed = 0
    while source.skip():
        passed += 1
    assert passed == 68 and source.read() is None  # every frame after the fourth, then the end
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
