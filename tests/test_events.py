"""Events sink: every frame written whole as it comes, a failed write leaves whole frames and fails once, cleanly."""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import sys
import time

import pytest

from edge import render
from edge.render import EventSink, OutputError
from tests.conftest import ROOT

LABELS = ("happy", "sad")


def event(frame: int) -> dict:
    face = {"box": [1, 2, 30, 40], "track_id": 0, "label": "happy", "score": 0.9, "raw_label": "happy",
            "probs": {"happy": 0.9, "sad": 0.1}, "smoothed": {"happy": 0.8, "sad": 0.2}}
    return {"frame": frame, "seq": frame, "t": frame / 30, "faces": [face] if frame % 2 else []}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_each_frame_is_in_the_file_as_soon_as_it_is_written(tmp_path, suffix):
    path = tmp_path / f"events{suffix}"
    sink = EventSink(path, LABELS)
    for frame in range(3):
        sink.write_event(event(frame))
        text = path.read_text()  # read by another reader while the run goes on: complete up to this frame
        if suffix == ".csv":
            rows = list(csv.DictReader(text.splitlines()))
            assert [int(r["frame"]) for r in rows] == list(range(frame + 1))
        else:
            assert [json.loads(line)["frame"] for line in text.splitlines()] == list(range(frame + 1))
    sink.close()


def test_a_csv_of_no_frame_still_has_its_header(tmp_path):
    sink = EventSink(tmp_path / "e.csv", LABELS)
    sink.close()
    assert (tmp_path / "e.csv").read_text().startswith("frame,t,image,face,track_id")


def test_a_write_that_fails_part_way_leaves_the_whole_frames_before_it(tmp_path, monkeypatch):
    path = tmp_path / "e.jsonl"
    sink = EventSink(path, LABELS)
    sink.write_event(event(0))
    sink.write_event(event(1))
    real_write = os.write

    def disk_fills(fd, data):  # the first bytes of the frame fit, then the disk is full
        if fd != sink.fd:
            return real_write(fd, data)
        if len(data) > 10:
            return real_write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(render.os, "write", disk_fills)
    with pytest.raises(OSError) as failure:
        sink.write_event(event(2))
    assert failure.value.errno == errno.ENOSPC and failure.value.filename == str(path)
    with pytest.raises(OSError):  # and every later write fails too, without touching the file
        sink.write_event(event(3))
    monkeypatch.setattr(render.os, "write", real_write)
    sink.close()  # nothing more to raise: the failure was reported once
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == [0, 1]


def test_dev_full_fails_at_the_first_frame_and_dev_null_takes_everything(tmp_path):
    sink = EventSink(render.Path("/dev/full"), LABELS)
    with pytest.raises(OSError, match="No space left"):
        sink.write_event(event(0))
    sink.close()
    sink = EventSink(render.Path("/dev/null"), LABELS)  # it cannot be synced: nothing to lose
    for frame in range(3):
        sink.write_event(event(frame))
    time.sleep(render.SYNC_INTERVAL_S * 1.5)
    sink.write_event(event(3))
    sink.close()


def test_a_folder_or_a_file_that_cannot_be_created_is_refused_before_the_run(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        EventSink(tmp_path, LABELS)
    with pytest.raises(OutputError, match="cannot write events file /proc/e.jsonl"):
        EventSink(render.Path("/proc/e.jsonl"), LABELS)


def test_a_killed_writer_leaves_every_frame_it_wrote(tmp_path):
    """kill -9 right after a write: the frame is there, whole (nothing waits in a buffer of the process)."""
    path = tmp_path / "e.jsonl"
    code = ("import os, sys\n"
            "from pathlib import Path\n"
            "from edge.render import EventSink\n"
            f"sink = EventSink(Path({str(path)!r}), ('happy', 'sad'))\n"
            "for frame in range(25):\n"
            "    sink.write_event({'frame': frame, 'seq': frame, 't': frame / 30, 'faces': []})\n"
            "os.kill(os.getpid(), 9)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == -9
    assert [json.loads(line)["frame"] for line in path.read_text().splitlines()] == list(range(25))
