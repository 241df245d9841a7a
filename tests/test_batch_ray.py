"""python -m edge.batch on a real Ray: a local instance it starts and stops, and a cluster it joins.

The cluster (`ray start --head`) is started once for the module; the local-instance test runs first,
before it exists. Each test is a real batch of short clips made from the sample media.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, looped_video
from tests.test_batch import event_frames, leftovers, report, sigint_as_default

ray = pytest.importorskip("ray")  # in the dev install ([batch] extra); the device install has no Ray
psutil = pytest.importorskip("psutil")

START_TIMEOUT_S = 180  # Ray's start-up is seconds, much longer on a loaded machine
TIMEOUT_S = 300




def batch_process(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge.batch", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
                            preexec_fn=sigint_as_default)


def finish(process: subprocess.Popen, timeout: float = TIMEOUT_S) -> str:
    """Wait for a batch process; its stderr."""
    try:
        _, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return stderr


def alive(pids: set[int]) -> list[int]:
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    return running


def check_frames(out: Path) -> dict[str, dict]:
    """Every finished input's frame count in batch.json equals the frames in its events file."""
    records = report(out)
    for name, record in records.items():
        if record["status"] in ("ok", "skipped"):
            assert record["frames"] == event_frames(out / name) > 0, name
    return records


def test_a_local_instance_runs_the_batch_and_leaves_no_process_behind(data, tmp_path):
    out = tmp_path / "out"
    process = batch_process(str(data / "single_face.mp4"), str(data / "multi_face.jpg"), "--out", str(out),
                            "--ray", "auto", "--workers", "2", "--output-video")
    seen: set[int] = set()
    deadline = time.monotonic() + TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        try:
            seen |= {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    stderr = finish(process)
    assert process.returncode == 0, stderr
    assert len(seen) >= 3  # Ray's own processes (GCS, raylet, workers) ran under the command
    meta = json.loads((out / "batch.json").read_text())
    assert meta["mode"].startswith("local Ray instance with 2 CPUs") and meta["ray_startup_s"] > 0
    records = check_frames(out)
    assert {r["status"] for r in records.values()} == {"ok"}
    assert records["single_face"]["dominant"] == {"0": "happy"} and records["multi_face"]["faces"] == 5
    assert (out / "single_face" / "annotated.mp4").is_file()
    deadline = time.monotonic() + 20
    while alive(seen) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(seen) == [], "Ray processes left behind"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Ray cluster with token authentication, as `ray start --head` starts one; stopped at the end."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    port = free_port()
    command = [shutil.which("ray") or "ray", "start", "--head", f"--port={port}", "--num-cpus=2",
               "--include-dashboard=false", "--disable-usage-stats", f"--ray-client-server-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}", "--block"]
    log = tmp_path_factory.mktemp("ray_head") / "head.log"
    with log.open("w") as output:
        head = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    processes: set[int] = set()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while "Ray runtime started" not in log.read_text():
            assert head.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)
        processes = {child.pid for child in psutil.Process(head.pid).children(recursive=True)}
        yield f"127.0.0.1:{port}", env
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` drains and stops its processes
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"  # `ray stop` would remove it
    if current.is_file() and current.read_text().strip().endswith(f":{port}"):
        current.unlink()
    deadline = time.monotonic() + 20
    while alive(processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive(processes) == []


def test_a_killed_worker_is_retried_once_then_reported(cluster, data, tmp_path):
    address, env = cluster
    out = tmp_path / "out"
    clips = []
    for name in ("kill_once", "kill_twice"):
        (tmp_path / name).mkdir()
        clip = looped_video(tmp_path / name, 6)  # 432 frames: a few seconds to kill it in
        clips.append(clip.rename(tmp_path / f"{name}.mp4"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video" * 100)
    process = batch_process(*map(str, clips), str(data / "single_face.mp4"), str(broken), "--out", str(out),
                            "--ray", address, "--workers", "2", "--quiet", env=env)
    kills = {"kill_once": 1, "kill_twice": 2}
    killed: dict[str, list[int]] = {name: [] for name in kills}
    deadline = time.monotonic() + TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        for name, times in kills.items():
            try:
                beat = json.loads((out / f".{name}.partial" / "worker.json").read_text())
            except (OSError, ValueError):
                continue
            pid = int(beat["worker"].rsplit(":", 1)[1])
            if len(killed[name]) < times and pid not in killed[name]:
                os.kill(pid, signal.SIGKILL)  # the Ray worker process running this input's task
                killed[name].append(pid)
        time.sleep(0.05)
    stderr = finish(process)
    assert {name: len(pids) for name, pids in killed.items()} == kills
    assert process.returncode == 3, stderr  # some inputs failed; the batch went on
    records = check_frames(out)
    assert records["kill_once"]["status"] == "ok" and records["kill_once"]["attempts"] == 2
    assert records["kill_once"]["frames"] == 432
    assert records["kill_twice"]["status"] == "failed"
    assert records["kill_twice"]["error"] == "its worker process died on all 2 attempts (killed, or out of memory)"
    assert records["single_face"]["status"] == "ok" and records["single_face"]["attempts"] == 1
    assert records["broken"]["status"] == "failed"
    assert records["broken"]["error"] == f"not a decodable video or image: {broken}"
    assert not (out / "kill_twice").exists() and leftovers(out) == []


def test_an_interrupted_batch_resumes_without_redoing_finished_inputs(cluster, data, tmp_path):
    address, env = cluster
    out = tmp_path / "out"
    command = [str(data / "single_face.mp4"), str(looped_video(tmp_path, 20)), str(data / "multi_face.jpg"),
               "--out", str(out), "--ray", address, "--workers", "1"]
    process = batch_process(*command, env=env)
    marker = out / "single_face" / "done.json"
    deadline = time.monotonic() + TIMEOUT_S
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the terminal's whole process group
    stderr = finish(process, timeout=60)
    assert process.returncode == 130, stderr
    assert "run the same command again to resume" in stderr.strip().splitlines()[-1]
    records = check_frames(out)
    assert [records[n]["status"] for n in ("single_face", "looped_20", "multi_face")] == ["ok", "not run", "not run"]
    assert leftovers(out) == [] and not (out / "looped_20").exists()
    finished_at = marker.stat().st_mtime_ns

    again = batch_process(*command, env=env)
    stderr = finish(again)
    assert again.returncode == 0, stderr
    assert "1 of 3 inputs finished earlier: skipped" in stderr
    records = check_frames(out)
    assert [records[n]["status"] for n in ("single_face", "looped_20", "multi_face")] == ["skipped", "ok", "ok"]
    assert marker.stat().st_mtime_ns == finished_at  # the finished input was not redone
    assert records["looped_20"]["frames"] == 1440 and records["multi_face"]["faces"] == 5
    assert leftovers(out) == []


def test_the_longest_input_starts_first_wherever_it_is_listed(cluster, data, tmp_path):
    address, env = cluster
    out = tmp_path / "out"
    (tmp_path / "long").mkdir()
    long = looped_video(tmp_path / "long", 12).rename(tmp_path / "long.mp4")  # 864 frames, listed last
    shorts = []
    for name in ("short_a", "short_b"):
        shorts.append(shutil.copy(data / "single_face.mp4", tmp_path / f"{name}.mp4"))
    process = batch_process(*map(str, shorts), str(long), "--out", str(out), "--ray", address, "--workers", "2",
                            "--quiet", env=env)
    stderr = finish(process)
    assert process.returncode == 0, stderr
    meta = json.loads((out / "batch.json").read_text())
    assert meta["order"] == "longest first"
    estimates = meta["estimated_s"]
    assert estimates["long"] > 5 * max(estimates["short_a"], estimates["short_b"])
    records = check_frames(out)
    started = {name: datetime.fromisoformat(r["started"]) for name, r in records.items()}
    finished = {name: started[name] + timedelta(seconds=records[name]["seconds"]) for name in records}
    # in input order it would wait for a short input to end; first, it starts before either has ended
    assert started["long"] < min(finished["short_a"], finished["short_b"])


def test_a_terminated_ray_batch_writes_its_report_and_says_how_to_resume(cluster, data, tmp_path):
    address, env = cluster
    out = tmp_path / "out"
    process = batch_process(str(data / "single_face.mp4"), str(looped_video(tmp_path, 20)), "--out", str(out),
                            "--ray", address, "--workers", "1", env=env)
    marker = out / "single_face" / "done.json"
    deadline = time.monotonic() + TIMEOUT_S
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)  # ray.init puts a handler of its own on SIGTERM: the batch's must win
    stderr = finish(process, timeout=60)
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1].startswith("terminated: 1 inputs not run; run the same command again")
    records = check_frames(out)
    assert [records[n]["status"] for n in ("single_face", "looped_20")] == ["ok", "not run"]
    assert leftovers(out) == []
