"""python -m edge.batch without Ray (--workers 1, inline): inputs, outputs, the report, resuming, errors."""

from __future__ import annotations

import csv
import functools
import http.server
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from edge import batch
from edge.batch import ModelFile, collect_inputs, make_tasks
from edge.classify import DEFAULT_MODEL, Classifier
from edge.native import held_stderr
from edge.video import decodable_frames
from tests.conftest import ROOT, free_port, looped_video

TIMEOUT_S = 300


def run_batch(*args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.batch", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def sigint_as_default() -> None:
    """In the child before exec: Ctrl-C's default action, so that Python raises KeyboardInterrupt for it.

    A shell without job control starts its background jobs with SIGINT ignored, and that is
    inherited: a suite run as `pytest &` would start batches that (rightly) ignore the test's SIGINT.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def event_frames(folder: Path) -> int:
    """Frames in an input's events file: JSON Lines lines, or distinct frames of the CSV's rows."""
    if (folder / "events.jsonl").is_file():
        return len((folder / "events.jsonl").read_text().splitlines())
    with (folder / "events.csv").open(newline="") as file:
        return len({(row["frame"], row["image"]) for row in csv.DictReader(file)})


def report(out: Path) -> dict[str, dict]:
    return {r["name"]: r for r in json.loads((out / "batch.json").read_text())["inputs"]}


def leftovers(out: Path) -> list[str]:
    """Partial folders or staged files a run left behind."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def media(tmp_path_factory, data) -> Path:
    """Two clips that share a name, an image folder, a clip with no face and a corrupt file."""
    root = tmp_path_factory.mktemp("media")
    for folder in ("a", "b", "photos"):
        (root / folder).mkdir()
    shutil.copy(data / "single_face.mp4", root / "a" / "clip.mp4")
    shutil.copy(data / "single_face.mp4", root / "b" / "clip.mp4")
    shutil.copy(data / "no_face.mp4", root / "a" / "empty_room.mp4")
    for name in ("multi_face.jpg", "single_face.jpg"):
        shutil.copy(data / name, root / "photos" / name)
    (root / "broken.mp4").write_bytes((data / "single_face.mp4").read_bytes()[:5000])  # truncated: no index
    return root


def test_inputs_from_folders_globs_and_list_files(media, tmp_path):
    out = media / "a" / "results"  # an output folder inside an input folder is never an input
    (out / "x").mkdir(parents=True)
    shutil.copy(media / "photos" / "single_face.jpg", out / "x" / "written.jpg")
    try:
        check_inputs(media, tmp_path, out)
    finally:
        shutil.rmtree(out)


def check_inputs(media: Path, tmp_path: Path, out: Path) -> None:
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"# one input a line\n\n{media / 'photos'}\nrtsp://camera.local/live\n../nowhere/gone.mp4\n")
    (tmp_path / "media").symlink_to(media)
    inputs = collect_inputs([str(media / "a"), str(tmp_path / "media" / "*" / "clip.mp4"), str(listing),
                             str(media / "a" / "clip.mp4")], exclude=out.resolve())
    assert inputs == [str(media / "a" / "clip.mp4"), str(media / "a" / "empty_room.mp4"),
                      str(media / "b" / "clip.mp4"), str(media / "photos"), "rtsp://camera.local/live",
                      str((tmp_path.parent / "nowhere" / "gone.mp4").resolve())]
    names = [task.name for task in make_tasks(inputs)]
    assert names[1:] == ["empty_room", names[2], "photos", "live", "gone"]
    assert names[0] != names[2] and all(n.startswith("clip-") for n in (names[0], names[2]))
    assert [t.name for t in make_tasks(inputs)] == names  # the same inputs always get the same folders
    assert make_tasks(["/x/batch.json.mp4"])[0].name == "batch.json-input"


@pytest.mark.parametrize("extra, message", [
    (["{tmp}/missing.mp4"], "error: input not found:"),
    (["{tmp}/nothing_*.mp4"], "error: no input matches"),
    (["{tmp}/empty_folder"], "error: no videos or images in"),
    (["{data}/single_face.mp4", "--model", "{tmp}/none.tflite"], "error: model file not found:"),
    (["{data}/single_face.mp4", "--config", "{tmp}/none.toml"], "error: config file not found:"),
])
def test_bad_input_exits_2_with_one_line(data, tmp_path, capsys, extra, message):
    (tmp_path / "empty_folder").mkdir()
    argv = [a.format(tmp=tmp_path, data=data) for a in extra] + ["--out", str(tmp_path / "out"), "--workers", "1"]
    assert batch.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)


@pytest.mark.parametrize("option, message", [
    (["--workers", "0"], "--workers must be >= 1, got 0"),
    (["--num-cpus", "0"], "--num-cpus must be > 0, got 0"),
])
def test_bad_options_exit_2(data, tmp_path, capsys, option, message):
    with pytest.raises(SystemExit) as raised:
        batch.main([str(data / "single_face.mp4"), "--out", str(tmp_path / "out"), *option])
    assert raised.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(message)


def test_without_ray_the_command_says_how_to_get_it(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError, as where it is not installed
    assert batch.main([str(data / "single_face.mp4"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pip install 'fer-edge[batch]'" in err[0] and "--workers 1" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:{port}", "cannot join the Ray cluster at 127.0.0.1:{port} (nothing answers at 127.0.0.1:{port}: "
                         "Connection refused)"),
    ("ray://127.0.0.1:{port}", "cannot join the Ray cluster at ray://127.0.0.1:{port} (nothing answers at"),
    ("no-such-head.invalid:6379", "cannot join the Ray cluster at no-such-head.invalid:6379 (unknown host"),
    ("http://head:8265", "not a Ray cluster address: http://head:8265 (expected HOST:PORT or ray://HOST:PORT)"),
    ("head:port", "not a Ray cluster address: head:port"),
])
def test_a_cluster_address_nothing_answers_at_fails_at_once(data, tmp_path, capsys, address, message):
    """ray.init would retry such an address for many minutes; the batch says what is wrong and exits 2."""
    port = free_port()  # nothing listens there
    argv = [str(data / "single_face.mp4"), "--out", str(tmp_path / "out"), "--ray", address.format(port=port)]
    assert batch.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: " + message.format(port=port)), err


def test_lines_a_library_writes_to_file_descriptor_2_are_held_back_and_handed_over(capfd):
    """What Ray's C++ client writes while it joins never lands above the batch's own error line."""
    with held_stderr() as held:
        os.write(2, b"W gcs_client.cc: Failed to get cluster ID\nsecond line\n")
        assert held == []  # filled once the block ends
    print("after", file=sys.stderr)
    assert held == ["W gcs_client.cc: Failed to get cluster ID", "second line"]
    assert capfd.readouterr().err == "after\n"


def test_the_join_deadline_escapes_a_loop_that_retries_on_any_exception():
    """As ray.init's GCS connection loop does (`except Exception`: retry); the deadline is a BaseException."""
    attempts, before = 0, signal.getsignal(signal.SIGALRM)
    with pytest.raises(batch.JoinTimeout):
        with batch.join_deadline(0.3):
            while attempts < 100:  # ~10 s if the deadline never came
                try:
                    attempts += 1
                    time.sleep(0.1)
                except Exception:
                    pass
    assert attempts < 100
    assert signal.getsignal(signal.SIGALRM) == before  # the handler put back
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # no alarm left to fire later


def test_inline_batch_writes_every_input_and_the_report(media, tmp_path):
    out = tmp_path / "out"
    done = run_batch(str(media), "--out", str(out), "--workers", "1", "--output-video", "--events", "csv")
    assert done.returncode == 3, done.stderr  # one input failed; the others are done
    records = report(out)
    clips = sorted(name for name in records if name.startswith("clip-"))
    assert len(clips) == 2 and set(records) == {*clips, "empty_room", "photos", "broken"}
    assert records["broken"]["status"] == "failed"
    assert records["broken"]["error"] == f"not a decodable video or image: {media / 'broken.mp4'}"
    assert not (out / "broken").exists()
    expected = {clips[0]: 72, clips[1]: 72, "empty_room": decodable_frames(media / "a" / "empty_room.mp4"), "photos": 2}
    for name, frames in expected.items():
        record, folder = records[name], out / name
        assert record["status"] == "ok" and record["frames"] == frames == event_frames(folder), name
        assert {"events.csv", "summary.json", "summary.csv", "timeline.png", "done.json"} <= set(os.listdir(folder))
        assert json.loads((folder / "done.json").read_text())["frames"] == frames
        assert record["fps"] > 0 and record["attempts"] == 1
        assert 0 < record["cpu_s"] <= (os.cpu_count() or 1) * record["seconds"] + 0.5  # the task's own CPU time
    for clip in clips:
        assert decodable_frames(out / clip / "annotated.mp4") == 72
        assert records[clip]["tracks"] == 1 and records[clip]["dominant"] == {"0": "happy"}
        assert json.loads((out / clip / "summary.json").read_text())["tracks"][0]["dominant"] == "happy"
    assert sorted(os.listdir(out / "photos" / "annotated")) == ["multi_face.jpg", "single_face.jpg"]
    assert records["photos"]["faces"] == 6 and records["photos"]["tracks"] == 0  # images are not tracked
    assert records["empty_room"]["faces"] == 0
    with (out / "batch.csv").open(newline="") as file:
        rows = {row["name"]: row for row in csv.DictReader(file)}
    assert set(rows) == set(records) and rows[clips[0]]["dominant"] == "#0 happy"
    assert rows["broken"]["error"] == records["broken"]["error"]
    combined = json.loads((out / "batch.json").read_text())["combined"]
    assert combined["inputs"] == 5 and combined["ok"] == 4 and combined["failed"] == 1
    assert combined["frames"] == sum(expected.values()) and combined["tracks"] == 2
    assert combined["dominant_tracks"] == {"happy": 2}
    assert leftovers(out) == []
    lines = done.stderr.strip().splitlines()
    assert sum(bool(re.match(r"\[\d/5\] ", line)) for line in lines) == 5  # a line per finished input
    assert lines[-1].startswith("5 inputs: 4 done, 1 failed;")


def test_on_a_terminal_one_bar_for_the_batch_and_a_line_per_input(data, tmp_path):
    pytest.importorskip("tqdm")
    leader, follower = pty.openpty()  # a terminal nobody sized (0 x 0), as under `script` or some CI runners
    command = [sys.executable, "-m", "edge.batch", str(data / "single_face.mp4"), str(data / "multi_face.jpg"),
               "--out", str(tmp_path / "out"), "--workers", "1"]
    process = subprocess.Popen(command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=follower)
    os.close(follower)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=TIMEOUT_S) == 0
    finally:
        process.kill()
        os.close(leader)
    screen = b"".join(chunks).decode(errors="replace")
    assert re.search(r"0/2 \[", screen) and re.search(r"2/2 \[", screen)  # the bar: inputs done / total
    assert re.search(r"\d+ frames/s\]", screen)  # frames/s across the batch on the bar
    lines = [line.strip() for line in screen.replace("\r", "\n").splitlines()]
    assert [line.split(":")[0] for line in lines if line.startswith("[")] == ["[1/2] single_face", "[2/2] multi_face"]


def test_a_rerun_skips_finished_inputs_and_force_redoes_them(data, tmp_path):
    out = tmp_path / "out"
    inputs = [str(data / "single_face.mp4"), str(data / "multi_face.jpg")]
    assert run_batch(*inputs, "--out", str(out), "--workers", "1").returncode == 0
    marker = out / "single_face" / "done.json"
    first = marker.stat().st_mtime_ns
    again = run_batch(*inputs, "--out", str(out), "--workers", "1")
    assert again.returncode == 0, again.stderr
    assert "2 of 2 inputs finished earlier: skipped" in again.stderr
    assert marker.stat().st_mtime_ns == first
    assert {r["status"] for r in report(out).values()} == {"skipped"}
    forced = run_batch(*inputs, "--out", str(out), "--workers", "1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert marker.stat().st_mtime_ns != first and {r["status"] for r in report(out).values()} == {"ok"}
    assert leftovers(out) == []


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"),
                                                 (signal.SIGTERM, 143, "terminated"),
                                                 (signal.SIGHUP, 129, "hung up")])
def test_a_stop_keeps_finished_inputs_and_says_how_to_resume(data, tmp_path, signum, code, word):
    out = tmp_path / "out"
    long_clip = looped_video(tmp_path, 20)  # 1440 frames: still running when the signal comes
    command = [sys.executable, "-m", "edge.batch", str(data / "single_face.mp4"), str(long_clip),
               str(data / "multi_face.jpg"), "--out", str(out), "--workers", "1"]
    process = subprocess.Popen(command, cwd=ROOT, stderr=subprocess.PIPE, text=True, preexec_fn=sigint_as_default)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not (out / "single_face" / "done.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"{word}: 2 inputs not run") and "run the same command again to resume" in last
    records = report(out)
    assert records["single_face"]["status"] == "ok"
    assert records["single_face"]["frames"] == 72 == event_frames(out / "single_face")
    assert records["looped_20"]["status"] == "not run" and records["multi_face"]["status"] == "not run"
    assert not (out / "looped_20").exists() and leftovers(out) == []


def test_a_model_travels_as_bytes_to_a_worker_without_the_file(tmp_path):
    model = tmp_path / "mine.tflite"
    shutil.copy(DEFAULT_MODEL, model)
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), model.with_suffix(".json"))
    travelling = ModelFile.of(model)
    assert travelling.path == str(model) and travelling.local() == model  # the file is here: used in place
    model.unlink()
    copy = travelling.local()
    assert copy != model and copy.read_bytes() == DEFAULT_MODEL.read_bytes()
    assert Classifier(copy).labels == Classifier(DEFAULT_MODEL).labels
    shipped = ModelFile.of(DEFAULT_MODEL)  # a shipped model travels by name: every worker has it installed
    assert shipped == ModelFile(name="fer2013-mini-xception") and shipped.local() == DEFAULT_MODEL


@pytest.mark.parametrize("config_threads, task_cpus, expected", [(0, 1, 1), (1, 2, 1), (2, 1, 2)])
def test_a_task_runs_opencv_on_the_configs_threads_else_on_its_cpus(data, tmp_path, config_threads, task_cpus,
                                                                    expected):
    from edge.config import load_config, override

    config = override(load_config(None), "detector", threads=config_threads)
    settings = batch.Settings(str(tmp_path), "run", config, plot=False, threads=task_cpus)
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        record = batch.run_task(batch.Task("clip", str(data / "single_face.mp4")), settings,
                                ModelFile.of(DEFAULT_MODEL))
        assert record["status"] == "ok" and record["frames"] == 72
        assert cv2.getNumThreads() == expected
    finally:
        cv2.setNumThreads(before)


def test_a_url_is_read_whole_at_the_source_timestamps(data, tmp_path):
    clip = tmp_path / "served" / "clip.avi"  # MJPG in AVI: FFmpeg reads it over plain HTTP without seeking
    clip.parent.mkdir()
    capture = cv2.VideoCapture(str(data / "single_face.mp4"))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30, (640, 360))
    while (frame := capture.read()[1]) is not None:
        writer.write(frame)
    writer.release()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(clip.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/clip.avi"
        done = run_batch(url, "--out", str(tmp_path / "out"), "--workers", "1")
    finally:
        server.shutdown()
        thread.join()
    assert done.returncode == 0, done.stderr
    record = report(tmp_path / "out")["clip"]
    assert record["source"] == url and record["frames"] == 72 == event_frames(tmp_path / "out" / "clip")
    events = [json.loads(line) for line in (tmp_path / "out" / "clip" / "events.jsonl").read_text().splitlines()]
    assert [e["t"] for e in events[:3]] == [0.0, 0.0333, 0.0667]  # the file's own times, not the wall clock


# ---------------------------------------------------------------------------------------------- order

@pytest.fixture(scope="module")
def stages():
    from edge.config import load_config
    from edge.runner import Stages

    config = load_config(None)
    return config, Stages(config)


def test_an_inputs_estimate_scales_with_its_length(data, tmp_path, stages):
    config, built = stages
    short, long = make_tasks([str(data / "single_face.mp4"), str(looped_video(tmp_path, 8))])
    short_s, long_s = (batch.estimated_seconds(task, config, built) for task in (short, long))
    assert 0 < short_s < long_s
    assert 4 < long_s / short_s < 16  # 576 frames against 72 of the same faces: ~8x


def test_an_unreadable_input_is_estimated_as_nothing_and_an_image_folder_by_its_images(data, tmp_path, stages):
    config, built = stages
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    folder = tmp_path / "stills"
    folder.mkdir()
    for i in range(3):
        shutil.copy(data / "multi_face.jpg", folder / f"{i}.jpg")
    missing, unreadable, stills = make_tasks([str(tmp_path / "missing.mp4"), str(broken), str(folder)])
    assert batch.estimated_seconds(missing, config, built) == 0.0
    assert batch.estimated_seconds(unreadable, config, built) == 0.0
    assert batch.estimated_seconds(stills, config, built) > 0  # 3 images: all of them timed


def test_longest_first_orders_by_estimate_and_keeps_ties_in_input_order():
    tasks = make_tasks([f"/clips/{name}.mp4" for name in ("a", "b", "c", "d")])
    estimates = {"a": 1.0, "b": 5.0, "c": 1.0, "d": float("inf")}
    assert [t.name for t in batch.longest_first(tasks, estimates)] == ["d", "b", "a", "c"]
    assert batch.longest_first(tasks, {"a": 1.0, "b": 5.0}) is None  # not all estimated: input order


def test_the_probe_stops_at_its_budget(data, tmp_path, stages, monkeypatch):
    config, built = stages
    tasks = make_tasks([str(data / "single_face.mp4"), str(looped_video(tmp_path, 2))])
    probe = batch.CostProbe(tasks, config, built)
    probe.start()
    meta: dict = {}
    assert [t.name for t in batch.ordered(tasks, probe, 1, meta)] == ["looped_2", "single_face"]
    assert meta["order"] == "longest first" and set(meta["estimated_s"]) == {"single_face", "looped_2"}
    assert batch.ordered(tasks, probe, 2, meta) == tasks and meta["order"] == "as given"  # both run at once
    monkeypatch.setattr(batch, "PROBE_BUDGET_S", 0.0)
    late = batch.CostProbe(tasks, config, built)
    late.start()
    assert batch.ordered(tasks, late, 1, meta) == tasks and meta["order"] == "as given"
    assert late.estimates == {}
