"""The README's Python API examples, run as they are written: each block a fresh script, on the sample media."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from tests.conftest import DATA, ROOT

SECTION = "## Python API"


def api_blocks() -> list[str]:
    """The ```python blocks of the README's Python API section, in order."""
    text = (ROOT / "README.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return re.findall(r"```python\n(.*?)```", text[start:end if end >= 0 else None], flags=re.S)


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> list[tuple[Path, subprocess.CompletedProcess]]:
    """Every block run as a script with no `__main__` guard, in a folder of its own that has the sample media
    at tests/data, as a reader in the project's folder would run it."""
    runs = []
    for i, code in enumerate(api_blocks()):
        folder = tmp_path_factory.mktemp(f"block{i}")
        (folder / "tests").mkdir()
        (folder / "tests" / "data").symlink_to(DATA)
        (folder / "example.py").write_text(code)
        environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        environment["PYTHONPATH"] = str(ROOT)
        done = subprocess.run([sys.executable, "example.py"], cwd=folder, env=environment, capture_output=True,
                              text=True, timeout=300)
        runs.append((folder, done))
    return runs


def test_the_section_has_examples():
    assert len(api_blocks()) >= 3


def test_every_example_runs(ran):
    for folder, done in ran:
        assert done.returncode == 0, f"{folder / 'example.py'}:\n{done.stderr}"
        assert "Traceback" not in done.stderr and done.stdout


def test_analyze_example_prints_the_five_faces(ran):
    _, done = ran[0]
    lines = done.stdout.splitlines()
    faces = [line for line in lines if re.fullmatch(r"\(\d+, \d+, \d+, \d+\) \w+ \d+%", line)]
    assert len(faces) == 5 and "'happy':" in lines[-1]


def test_stream_example_writes_the_events_and_a_drawn_frame(ran, tmp_path, cli):
    folder, done = ran[1]
    records = [json.loads(line) for line in (folder / "faces.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(72))
    assert {face["track_id"] for r in records for face in r["faces"]} == {0}
    assert cv2.imread(str(folder / "frame_30.jpg")).shape == (360, 640, 3)
    assert re.search(r"^ 1\.00 s  #0 \w+ \(raw: \w+\)$", done.stdout, flags=re.M)
    events = tmp_path / "cli.jsonl"
    assert cli("--source", str(DATA / "single_face.mp4"), "--headless", "--events", str(events)).returncode == 0
    cli_records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [set(r) for r in records] == [set(r) for r in cli_records]  # the same lines as --events
    assert [len(r["faces"]) for r in records] == [len(r["faces"]) for r in cli_records]


def test_settings_example_prints_what_its_comments_say(ran):
    _, done = ran[2]
    assert "72 frames at 30.0 frames/s" in done.stdout
    assert "config key detector.haar.min_face must be <= 1.0, got 2.0" in done.stdout
    assert "source not found: missing.jpg" in done.stdout
    assert re.search(r"^tests/data/multi_face\.jpg \[('\w+', ){4}'\w+'\]$", done.stdout, flags=re.M)
