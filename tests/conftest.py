"""Shared fixtures: paths of the committed sample media and a helper to run the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA


def free_port() -> int:
    """A local TCP port nothing listens at (bound, then closed again)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def looped_video(folder: Path, times: int) -> Path:
    """The 72-frame sample clip played forwards and backwards ``times`` times, at 30 fps: a long run."""
    import cv2

    from edge.video import read_frames

    frames = list(read_frames(DATA / "single_face.mp4"))
    path = folder / f"looped_{times}.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
    for i in range(times):
        for frame in frames if i % 2 == 0 else frames[::-1]:
            writer.write(frame)
    writer.release()
    return path


def shm_segments(pid: int) -> list[str]:
    """Shared-memory segments the run with this pid created and did not free."""
    shm = Path("/dev/shm")
    return [p.name for p in shm.glob(f"fer_edge_{pid}_*")] if shm.is_dir() else []


def run_cli(*args: str, timeout: float = 120,
            preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess:
    """Run `python -m edge.run ...` headless in a child process, as a user would; check it cleaned up.
    ``preexec_fn`` runs in the child before exec (e.g. to drop privileges)."""
    environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    process = subprocess.Popen([sys.executable, "-m", "edge.run", *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environment, preexec_fn=preexec_fn)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        process.kill()
    assert shm_segments(process.pid) == [], "shared memory left behind"
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.fixture(scope="session")
def cli():
    return run_cli
