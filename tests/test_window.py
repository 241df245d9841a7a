"""The window: opens on a display, shows frames, and q ends the run in order (on a virtual X display)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, looped_video, shm_segments

pytestmark = pytest.mark.skipif(not (shutil.which("Xvfb") and shutil.which("xdotool")),
                                reason="needs Xvfb and xdotool (apt-get install xvfb xdotool; .ci/run installs them)")


@pytest.fixture
def display():
    number = 90 + os.getpid() % 50
    server = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1280x720x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket = Path(f"/tmp/.X11-unix/X{number}")
    deadline = time.monotonic() + 30  # generous: a loaded machine starts Xvfb slowly
    while not socket.exists() and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert socket.exists(), "Xvfb did not start"
    yield f":{number}"
    server.terminate()
    server.wait(5)


def test_window_shows_the_video_and_q_quits(tmp_path, display):
    clip = looped_video(tmp_path, 40)
    events = tmp_path / "faces.jsonl"
    env = {**os.environ, "DISPLAY": display}
    env.pop("WAYLAND_DISPLAY", None)
    run = subprocess.Popen([sys.executable, "-m", "edge.run", "--source", str(clip), "--events", str(events)],
                           cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    found = subprocess.run(["xdotool", "search", "--sync", "--name", "edge:"], env=env, capture_output=True,
                           text=True, timeout=30)
    window = found.stdout.split()[0]
    time.sleep(0.5)
    shot = subprocess.run(["xdotool", "getwindowgeometry", window], env=env, capture_output=True, text=True)
    assert "Geometry" in shot.stdout
    # No window manager on the virtual display: focus the window directly, then type q.
    subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, timeout=10)
    subprocess.run(["xdotool", "key", "q"], env=env, timeout=10)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == 0, stderr
    lines = events.read_text().count("\n")
    assert 0 < lines < 40 * 72  # it stopped early, every shown frame recorded
    assert shm_segments(run.pid) == []
