"""Shared fixtures: paths of the committed sample media and a helper to run the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"


@pytest.fixture(scope="session")
def data() -> Path:
    return DATA


def run_cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `python -m edge.run ...` headless in a child process, as a user would."""
    environment = {**os.environ, **(env or {})}
    environment.pop("DISPLAY", None)
    environment.pop("WAYLAND_DISPLAY", None)
    return subprocess.run([sys.executable, "-m", "edge.run", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=environment)


@pytest.fixture(scope="session")
def cli():
    return run_cli
