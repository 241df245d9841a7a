"""End to end: `python -m edge.run` on the real sample media, its outputs, its errors, its shutdown."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import psutil
import pytest

from tests.conftest import DATA, ROOT, looped_video, run_cli, shm_segments


def frame_count(path: Path) -> int:
    capture, count = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        count += 1
    return count


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def clean_system():
    """After the test no child process is left (run_cli checks the shared memory of each run).

    multiprocessing's resource tracker is this pytest process's own helper (started by tests
    that run a pipeline in-process), not a leftover of a run.
    """
    yield
    leftovers = [c for c in psutil.Process().children(recursive=True)
                 if "resource_tracker" not in " ".join(c.cmdline())]
    assert leftovers == []


def test_single_face_video_end_to_end(tmp_path, clean_system):
    out, events = tmp_path / "out.mp4", tmp_path / "faces.jsonl"
    result = run_cli("--source", str(DATA / "single_face.mp4"), "--headless", "--output", str(out),
                     "--events", str(events))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert frame_count(out) == 72
    capture = cv2.VideoCapture(str(out))
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 360)
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0, abs=0.1)
    records = read_jsonl(events)
    assert [r["frame"] for r in records] == list(range(72))
    with_face = [r for r in records if r["faces"]]
    assert len(with_face) >= 70
    face = with_face[0]["faces"][0]
    assert set(face) == {"box", "track_id", "label", "score", "raw_label", "probs", "smoothed"}
    assert face["raw_label"] == max(face["probs"], key=face["probs"].get)
    assert sum(face["probs"].values()) == pytest.approx(1.0, abs=0.03)
    assert records[30]["t"] == pytest.approx(1.0)


def test_no_face_video_gives_zero_faces(tmp_path, clean_system):
    events = tmp_path / "faces.csv"
    result = run_cli("--source", str(DATA / "no_face.mp4"), "--headless", "--events", str(events))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(events.open()))
    # The container says 98 frames; 95 decode. Every decodable frame gets its row.
    assert len(rows) == frame_count(DATA / "no_face.mp4") == 95
    assert all(row["label"] == "" for row in rows)


def test_group_photo_every_face_labelled(tmp_path, clean_system):
    out, events = tmp_path / "annotated.jpg", tmp_path / "faces.jsonl"
    result = run_cli("--source", str(DATA / "multi_face.jpg"), "--output", str(out), "--events", str(events))
    assert result.returncode == 0, result.stderr
    (record,) = read_jsonl(events)
    assert len(record["faces"]) == 5
    assert all(f["label"] in f["probs"] for f in record["faces"])
    assert cv2.imread(str(out)).shape == cv2.imread(str(DATA / "multi_face.jpg")).shape


def test_image_folder_writes_one_annotated_image_each(tmp_path, clean_system):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("single_face.jpg", "multi_face.jpg"):
        (folder / name).write_bytes((DATA / name).read_bytes())
    out_dir, events = tmp_path / "annotated", tmp_path / "faces.csv"
    result = run_cli("--source", str(folder), "--output", str(out_dir), "--events", str(events))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["multi_face.jpg", "single_face.jpg"]
    rows = list(csv.DictReader(events.open()))
    assert sorted({r["image"] for r in rows}) == ["multi_face.jpg", "single_face.jpg"]
    assert len(rows) == 6  # five faces and one face


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    (folder / "not_video.mp4").write_bytes(b"\x00" * 2048)
    (folder / "corrupt.tflite").write_bytes(b"garbage" * 100)
    (folder / "corrupt.json").write_text((ROOT / "edge/models/fer2013_mini_xception_int8.json").read_text())
    (folder / "bad.toml").write_text("[detector.haar]\nscale_factor = 0.9\n")
    (folder / "truncated.mp4").write_bytes((DATA / "single_face.mp4").read_bytes()[:3000])
    return folder


@pytest.mark.parametrize("args, message", [
    (["--source", "missing.mp4"], "source not found: missing.mp4"),
    (["--source", "{bad}/not_video.mp4"], "not a decodable video or image"),
    (["--source", "{bad}/truncated.mp4"], "not a decodable video or image"),  # FFmpeg: "moov atom not found"
    (["--source", "97"], "camera 97 could not be opened"),  # OpenCV: 9 lines of warnings
    (["--source", "rtsp://127.0.0.1:9/stream"], "stream could not be opened"),  # FFmpeg: "Connection refused"
    (["--source", "\u00b2"], "source not found: \u00b2"),  # a digit to str.isdigit, not to int()
    (["--source", "99999999999999999999"], "camera index out of range"),
    (["--model", "{bad}/missing.tflite"], "model file not found"),
    (["--model", "{bad}/corrupt.tflite"], "not a loadable TFLite model"),
    (["--config", "{bad}/bad.toml"], "config key detector.haar.scale_factor must be > 1.0, got 0.9"),
    (["--config", "/proc/self/mem"], "config file cannot be read: /proc/self/mem"),  # reading it is an I/O error
    (["--serve", "127.0.0.1:\u00b2"], "--serve must be HOST:PORT"),
    (["--output", "{bad}/no/such/dir/out.mp4"], "output folder does not exist"),
    (["--output", "{bad}/out.txt"], "output video must end in one of"),
    (["--events", "{bad}"], "output is a folder, not a file"),
    (["--events", "/proc/e.jsonl"], "cannot write events file /proc/e.jsonl"),
])
def test_bad_input_gives_one_line_error_and_nonzero_exit(bad_files, args, message, clean_system):
    args = [a.replace("{bad}", str(bad_files)) for a in args]
    if "--source" not in args:
        args += ["--source", str(DATA / "single_face.mp4")]
    result = run_cli(*args, "--headless", timeout=60)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()  # one line, the error: nothing from the native libraries, no traceback
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def without_read_override() -> None:
    """In the child before exec: drop the capabilities with which root reads any file whatever its permissions
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from the bounding set, so the program it runs checks them as anyone's.
    Where that is not allowed (not root, or no CAP_SETPCAP) nothing changes: such a user has no override anyway."""
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        prctl(24, capability, 0, 0, 0)  # PR_CAPBSET_DROP


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="drops Linux capabilities to run as a plain user")
def test_an_unreadable_config_is_a_one_line_error(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("")
    config.chmod(0)
    probe = subprocess.run([sys.executable, "-c", f"open({str(config)!r}).close()"], preexec_fn=without_read_override,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode == 0:  # (a root whose capabilities cannot be dropped)
        pytest.skip("this user reads any file whatever its permissions")
    result = run_cli("--config", str(config), "--source", str(DATA / "single_face.jpg"), "--headless",
                     preexec_fn=without_read_override)
    assert result.returncode == 2 and result.stderr.splitlines() == [
        f"error: config file cannot be read: {config} (Permission denied)"], result.stderr


@pytest.fixture
def own_copy(tmp_path) -> Path:
    """A copy of the sample clip, with a symbolic and a hard link to it."""
    source = tmp_path / "v.mp4"
    source.write_bytes((DATA / "single_face.mp4").read_bytes())
    (tmp_path / "link.mp4").symlink_to(source)
    os.link(source, tmp_path / "hard.mp4")
    return source


@pytest.mark.parametrize("flag, name", [("--output", "v.mp4"), ("--events", "v.mp4"), ("--output", "link.mp4"),
                                        ("--events", "hard.mp4"), ("--output", "./v.mp4")])
def test_an_output_that_is_the_source_is_refused_and_the_source_untouched(own_copy, flag, name, clean_system):
    before = own_copy.read_bytes()
    output = own_copy.parent / name if not name.startswith("./") else Path(f"{own_copy.parent}/./{name[2:]}")
    result = run_cli("--source", str(own_copy), "--headless", flag, str(output))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"error: {flag} {output} would overwrite the source {own_copy}: choose another path"], result.stderr
    assert own_copy.read_bytes() == before


def test_events_that_cannot_be_written_stop_the_run_with_exit_3_and_the_rest_still_closes(tmp_path, long_video,
                                                                                            clean_system):
    summary, out = tmp_path / "summary", tmp_path / "out.mp4"
    result = run_cli("--source", str(long_video), "--headless", "--events", "/dev/full", "--output", str(out),
                     "--summary", str(summary))
    assert result.returncode == 3, result.stderr
    assert result.stderr.splitlines() == ["error: cannot write /dev/full: No space left on device"]
    assert frame_count(out) >= 1  # the video was finalized ...
    assert json.loads((summary / "summary.json").read_text())["frames"] >= 1  # ... and the summary written
    assert sorted(p.name for p in summary.iterdir()) == ["summary.csv", "summary.json", "timeline.png"]


def test_a_ring_left_by_a_killed_run_is_freed_by_the_next_run(clean_system):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended: its pid is free
    stale, live = Path(f"/dev/shm/fer_edge_{pid}_deadbeef"), Path(f"/dev/shm/fer_edge_{os.getpid()}_0badcafe")
    for path in (stale, live):
        path.write_bytes(b"\0" * 4096)
    try:
        assert run_cli("--source", str(DATA / "single_face.jpg"), "--headless").returncode == 0
        assert not stale.exists()  # its run is gone: freed
        assert live.exists()  # this process is alive: left alone
    finally:
        for path in (stale, live):
            path.unlink(missing_ok=True)


def test_validate_config(bad_files):
    good = run_cli("--config", str(ROOT / "config.toml"), "--validate-config")
    assert good.returncode == 0 and "config OK" in good.stdout
    bad = run_cli("--config", str(bad_files / "bad.toml"), "--validate-config")
    assert bad.returncode == 2 and "detector.haar.scale_factor" in bad.stderr


@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """Long enough to interrupt: the sample clip 15 times."""
    return looped_video(tmp_path_factory.mktemp("long"), 15)


def start_cli(*args: str, own_group: bool = False) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.Popen([sys.executable, "-m", "edge.run", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=own_group)


def wait_for_frames(events: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if events.exists() and events.read_text().count("\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError("the run produced no frames in time")


@pytest.mark.parametrize("sig, code, group", [(signal.SIGTERM, 143, False), (signal.SIGINT, 130, False),
                                             (signal.SIGTERM, 143, True), (signal.SIGINT, 130, True)])
def test_signal_stops_in_order_and_output_stays_playable(tmp_path, long_video, sig, code, group, clean_system):
    """Sent to the main process, or to its whole process group as a terminal, `timeout` or systemd do."""
    out, events = tmp_path / "out.mp4", tmp_path / "faces.jsonl"
    process = start_cli("--source", str(long_video), "--headless", "--output", str(out), "--events", str(events),
                        own_group=group)
    wait_for_frames(events, 20)
    children = psutil.Process(process.pid).children(recursive=True)
    if group:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    written = frame_count(out)
    lines = read_jsonl(events)  # every line complete JSON
    assert 20 <= written == len(lines) < 15 * 72
    psutil.wait_procs(children, timeout=5)
    assert not any(child.is_running() for child in children)
    assert shm_segments(process.pid) == []


def test_a_dying_worker_ends_the_run_with_an_error(tmp_path, long_video, clean_system):
    out, events = tmp_path / "out.mp4", tmp_path / "faces.jsonl"
    process = start_cli("--source", str(long_video), "--headless", "--output", str(out), "--events", str(events))
    wait_for_frames(events, 10)
    workers = [c for c in psutil.Process(process.pid).children(recursive=True)
               if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 2  # the detector and the classifier
    workers[0].kill()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 3, stderr
    assert "process died" in stderr and "Traceback" not in stderr
    assert frame_count(out) == len(read_jsonl(events)) > 0
    assert shm_segments(process.pid) == []


def test_workers_end_when_the_main_process_is_killed(tmp_path, long_video, clean_system):
    events = tmp_path / "faces.jsonl"
    process = start_cli("--source", str(long_video), "--headless", "--events", str(events))
    wait_for_frames(events, 10)
    workers = [c for c in psutil.Process(process.pid).children(recursive=True)
               if "spawn_main" in " ".join(c.cmdline())]
    assert len(workers) == 2
    process.kill()
    process.communicate(timeout=30)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []
    deadline = time.monotonic() + 10  # multiprocessing's resource tracker frees the frames
    while shm_segments(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert shm_segments(process.pid) == []


def test_runtime_never_imports_tensorflow(tmp_path):
    code = (
        "import sys, edge.run\n"
        f"rc = edge.run.main(['--source', {str(DATA / 'single_face.jpg')!r}, '--headless'])\n"
        "from edge.classify import Classifier\n"
        "Classifier()\n"
        "print(rc, any(m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras') for m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["0", "False"], result.stderr
