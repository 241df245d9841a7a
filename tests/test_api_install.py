"""`pip install .` into a clean virtual environment, then the `fer-edge` console script and `import edge` from it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.config import tomllib  # tomli on Python 3.10
from tests.conftest import DATA, ROOT

PACKAGE_FILES = ("pyproject.toml", "README.md", "edge", "convert", "train")  # what the build reads
INSTALL_TIMEOUT_S = 1200  # the wheels of NumPy, OpenCV and LiteRT, from a package index or pip's cache


def run(command: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("DISPLAY", "WAYLAND_DISPLAY", "PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with `pip install .` of a copy of this checkout (the build writes into the tree it builds)."""
    folder = tmp_path_factory.mktemp("install")
    source = folder / "src"
    source.mkdir()
    for name in PACKAGE_FILES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, source / name)
    venv = folder / "venv"
    done = run([sys.executable, "-m", "venv", str(venv)], folder)
    assert done.returncode == 0, done.stderr
    pip = str(venv / "bin" / "pip")
    probe = run([pip, "download", "--no-deps", "--dest", str(folder / "probe"), "setuptools>=77"], folder, timeout=180)
    if probe.returncode != 0:
        pytest.skip(f"no package index or pip cache reachable (pip download setuptools failed: "
                    f"{probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else probe.returncode})")
    done = run([pip, "install", "--quiet", str(source)], folder, timeout=INSTALL_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return venv


def test_the_console_script_runs_the_cli(installed, tmp_path):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    done = run([str(installed / "bin" / "fer-edge"), "--version"], tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == f"fer-edge {version}", done
    events = tmp_path / "faces.jsonl"
    done = run([str(installed / "bin" / "fer-edge"), "--source", str(DATA / "single_face.mp4"), "--headless",
                "--events", str(events), "--set", "detector.haar.min_neighbors=4"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(events.read_text().splitlines()) == 72
    assert done.stderr.startswith("72 frames in ")
    done = run([str(installed / "bin" / "fer-edge"), "--source", str(tmp_path / "missing.mp4")], tmp_path)
    assert done.returncode == 2 and done.stderr.strip() == f"error: source not found: {tmp_path / 'missing.mp4'}"


def test_the_installed_package_is_what_imports_and_has_the_version(installed, tmp_path):
    code = (f"import importlib.util, json, edge\n"
            f"faces = edge.analyze({str(DATA / 'multi_face.jpg')!r})\n"
            f"print(json.dumps({{'version': edge.__version__, 'file': edge.__file__, 'faces': len(faces),\n"
            f"                  'tensorflow': importlib.util.find_spec('tensorflow') is not None}}))\n")
    done = run([str(installed / "bin" / "python"), "-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert found["version"] == version  # from the installed metadata (no pyproject.toml beside the package)
    assert Path(found["file"]).is_relative_to(installed) and found["faces"] == 5
    assert found["tensorflow"] is False  # the device install
