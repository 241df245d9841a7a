"""The package's version, single-sourced from pyproject.toml: the installed metadata, or the source checkout's file."""

from __future__ import annotations

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
