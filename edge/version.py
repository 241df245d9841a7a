"""The package's version, single-sourced from pyproject.toml (the installed metadata, or the source checkout's
file), and the name of the CPU it runs on (for reports)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 on older Raspberry Pi OS
    import tomli as tomllib

DISTRIBUTION = "fer-edge"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"  # there in a source checkout only


def version() -> str:
    """This code's version: a source checkout's pyproject.toml first (it is what runs, whatever else is
    installed), else the installed package's metadata, else ``0+unknown``."""
    try:
        project = tomllib.loads(PYPROJECT.read_text())["project"]
        if project.get("name") == DISTRIBUTION:
            return str(project["version"])
    except (OSError, ValueError, KeyError, TypeError):  # no checkout here (an installed package)
        pass
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def cpu_name() -> str:
    """The CPU's name: x86's "model name", a Raspberry Pi's "Model" line of /proc/cpuinfo, else what Python knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
