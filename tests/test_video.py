"""Video writers: H.264 that decodes as written, frame times, odd sizes, the mp4v fallback, write failures, kill -9."""

from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from edge import video
from edge.config import RenderConfig
from edge.render import OutputError, VideoSink
from edge.results import Faces, FrameResult
from tests.conftest import DATA, ROOT, looped_video, shm_segments
from tests.test_run import frame_count, start_cli, wait_for_frames

KILL_SLACK_FRAMES = 60  # lost at a kill -9: the fragment being filled (1 s at 30 fps) and the encoder's queue


def clip() -> list[np.ndarray]:
    capture, frames = cv2.VideoCapture(str(DATA / "single_face.mp4")), []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    return frames


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 10 * np.log10(255 ** 2 / mse) if mse > 0 else 99.0


def decoded(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from the file, up to the first it cannot (a killed run's last fragment)."""
    capture, frames = cv2.VideoCapture(str(path)), []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    return frames


def top_level_boxes(path: Path) -> list[str]:
    data, boxes, at = path.read_bytes(), [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        boxes.append(kind.decode("latin-1"))
        at += size if size >= 8 else len(data)
    return boxes


def result(index: int, fps: float = 30.0) -> FrameResult:
    return FrameResult(seq=index, index=index, timestamp=index / fps, faces=Faces.empty(("a", "b")))


def test_h264_mp4_decodes_as_written_in_fragments(tmp_path):
    frames, path = clip(), tmp_path / "out.mp4"
    sink = VideoSink(path, RenderConfig(), fps=30.0)
    for i, frame in enumerate(frames):
        sink.write(frame.copy(), result(i))
    sink.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and (stream.width, stream.height) == (640, 360)
        times = [frame.time for frame in container.decode(video=0)]
    assert times == pytest.approx([i / 30 for i in range(72)], abs=1e-3)
    back = decoded(path)
    assert len(back) == 72
    assert min(psnr(a, b) for a, b in zip(back, frames)) > 32
    boxes = top_level_boxes(path)
    assert boxes[:2] == ["ftyp", "moov"] and boxes.count("moof") >= 2  # a fragment per second: 72 frames, 3


def test_frame_times_become_the_videos_timestamps_and_odd_sizes_are_padded(tmp_path):
    """A live source's frames arrive irregularly: the video keeps their times (not a fixed rate)."""
    path = tmp_path / "live.mp4"
    writer = video.H264Writer(path, 30.0, (321, 241), "ultrafast", 1)
    stamps = [10.0 + t for t in (0.0, 0.033, 0.2, 0.2, 0.25, 1.0)]  # a repeated time still moves on
    for i, t in enumerate(stamps):
        writer.write(np.full((241, 321, 3), 40 * i, np.uint8), t)
    writer.close()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (322, 242)
        times = [frame.time for frame in container.decode(video=0)]
    assert times == pytest.approx([0.0, 0.033, 0.2, 0.2, 0.25, 1.0], abs=2e-3)
    assert times[3] > times[2]


@pytest.mark.parametrize("codec, suffix, expected", [
    ("h264", ".mp4", "h264"), ("h264", ".mov", "h264"), ("h264", ".avi", "mp4v"), ("MJPG", ".avi", "MJPG"),
    ("mp4v", ".mp4", "mp4v"),
])
def test_codec_and_suffix_choose_the_writer(tmp_path, codec, suffix, expected):
    path = tmp_path / f"out{suffix}"
    writer = video.open_writer(path, 30.0, (64, 48), codec, "ultrafast", 1)
    for i in range(5):
        writer.write(np.full((48, 64, 3), 50 * i, np.uint8), i / 30)
    writer.close()
    chosen = "h264" if isinstance(writer, video.H264Writer) else writer.fourcc
    assert chosen == expected
    assert frame_count(path) == 5


def test_without_pyav_mp4v_is_written_with_a_one_line_warning(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    assert not video.pyav_available()
    sink = VideoSink(tmp_path / "out.mp4", RenderConfig(), fps=30.0)
    with caplog.at_level(logging.WARNING, logger="edge.video"):
        for i, frame in enumerate(clip()[:10]):
            sink.write(frame, result(i))
    sink.close()
    (record,) = caplog.records
    assert "mp4v" in record.message and "pip install 'fer-edge[video]'" in record.message
    assert "\n" not in record.message
    assert frame_count(tmp_path / "out.mp4") == 10


@pytest.mark.parametrize("codec", ["h264x", "", "mp4"])
def test_a_bad_codec_is_refused_before_the_run(tmp_path, codec):
    with pytest.raises(OutputError, match="render.codec must be 'h264' or a 4-character FourCC"):
        VideoSink(tmp_path / "out.mp4", RenderConfig(codec=codec), fps=30.0)


# --- write failures: a file size limit stands in for a full disk ------------------------------------------

WRITE_UNDER_LIMIT = """
import json, resource, signal, sys
from pathlib import Path
import cv2, numpy as np
from edge.config import RenderConfig
from edge.render import VideoSink
from edge.results import Faces, FrameResult
path, codec, limit, loops = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
capture, frames = cv2.VideoCapture(sys.argv[5]), []
while (frame := capture.read()[1]) is not None:
    frames.append(frame)
sink = VideoSink(path, RenderConfig(codec=codec), fps=30.0)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG, as ENOSPC would fail it
if limit:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
report = {"failed_at": None, "close_error": None, "frames": 0}
try:
    for i in range(loops * len(frames)):
        sink.write(frames[i % len(frames)].copy(), FrameResult(seq=i, index=i, timestamp=i / 30,
                                                                faces=Faces.empty(("a",))))
        report["frames"] += 1  # written whole
except OSError as exc:
    report["failed_at"] = i
    report["write_error"] = str(exc)
try:
    sink.close()
except OSError as exc:
    report["close_error"] = str(exc)
print(json.dumps(report))
"""


def write_under_limit(path: Path, codec: str, limit: int, loops: int = 4) -> dict:
    """Write the clip ``loops`` times in a child process whose files may not grow past ``limit`` bytes."""
    done = subprocess.run([sys.executable, "-c", WRITE_UNDER_LIMIT, str(path), codec, str(limit), str(loops),
                           str(DATA / "single_face.mp4")], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_h264_write_fails_with_oserror_when_the_disk_fills_mid_run(tmp_path):
    path = tmp_path / "out.mp4"
    report = write_under_limit(path, "h264", 150_000)
    assert report["failed_at"] is not None and 0 < report["failed_at"] < 4 * 72, report
    assert "cannot write video" in report["write_error"] and "File too large" in report["write_error"]
    assert report["close_error"] is None  # reported once, by the write
    assert 0 < len(decoded(path)) < report["failed_at"]  # what was written still plays


def test_h264_close_fails_with_oserror_when_the_last_fragment_does_not_fit(tmp_path):
    """FFmpeg does not report the failed write of the last fragment at close: the sink checks the size."""
    complete = tmp_path / "complete.mp4"
    assert write_under_limit(complete, "h264", 0, loops=1) == {"failed_at": None, "close_error": None, "frames": 72}
    boxes = top_level_boxes(complete)
    last_fragment = complete.read_bytes().rfind(b"moof") - 4  # the file up to its last fragment fits
    assert boxes.count("moof") >= 2
    report = write_under_limit(tmp_path / "cut.mp4", "h264", last_fragment + 100, loops=1)
    assert report["failed_at"] is None, report
    assert report["close_error"] and "is incomplete" in report["close_error"]


def test_opencv_writes_fail_silently_so_close_checks_the_file(tmp_path):
    report = write_under_limit(tmp_path / "out.mp4", "mp4v", 150_000)
    assert report["failed_at"] is None  # OpenCV's writer says nothing ...
    assert report["close_error"] and "is incomplete" in report["close_error"]  # ... the check at close does
    assert write_under_limit(tmp_path / "ok.mp4", "mp4v", 0, loops=1)["close_error"] is None


# --- kill -9 ----------------------------------------------------------------------------------------------

WRITE_THEN_WAIT = """
import sys
from pathlib import Path
import cv2
from edge.config import RenderConfig
from edge.render import VideoSink
from edge.results import Faces, FrameResult
capture, frames = cv2.VideoCapture(sys.argv[2]), []
while (frame := capture.read()[1]) is not None:
    frames.append(frame)
sink = VideoSink(Path(sys.argv[1]), RenderConfig(), fps=30.0)
for i in range(int(sys.argv[3])):
    sink.write(frames[i % len(frames)].copy(), FrameResult(seq=i, index=i, timestamp=i / 30, faces=Faces.empty(("a",))))
print("written", flush=True)
sys.stdin.read()  # killed here, with the file open
"""


def test_a_killed_writer_leaves_a_file_that_plays_up_to_about_a_second_before(tmp_path):
    path, written = tmp_path / "killed.mp4", 200
    child = subprocess.Popen([sys.executable, "-c", WRITE_THEN_WAIT, str(path), str(DATA / "single_face.mp4"),
                              str(written)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "written\n"
        child.kill()
        child.wait(timeout=30)
    finally:
        child.kill()
    frames, original = decoded(path), clip()
    assert written - KILL_SLACK_FRAMES <= len(frames) <= written
    assert min(psnr(frame, original[i % 72]) for i, frame in enumerate(frames)) > 32  # the right frames, in order


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory) -> tuple[Path, int]:
    """`edge.run --output x.mp4` killed with SIGKILL mid-run: the video, and the events lines it had flushed."""
    folder = tmp_path_factory.mktemp("killed")
    out, events = folder / "killed.mp4", folder / "faces.jsonl"
    process = start_cli("--source", str(looped_video(folder, 15)), "--headless", "--output", str(out),
                        "--events", str(events))
    try:
        wait_for_frames(events, 150)
    finally:
        process.kill()
        process.communicate(timeout=30)
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker frees the frames
    while shm_segments(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return out, events.read_text().count("\n")


def test_a_killed_run_leaves_a_video_that_plays_up_to_near_the_kill(killed_run):
    out, flushed = killed_run
    frames = decoded(out)
    # every frame an event was flushed for was rendered before the kill; all but the last second are there
    assert len(frames) >= flushed - KILL_SLACK_FRAMES
    assert frames[0].shape == (360, 640, 3)

