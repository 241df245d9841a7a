"""Output paths checked before anything is opened: no output may be an input file, or another output."""

from __future__ import annotations

import os
from pathlib import Path

from edge.capture import IMAGE_SUFFIXES
from edge.render import OutputError

FileKey = tuple[int, int]  # (st_dev, st_ino): one file, whatever path or link names it


def file_key(path: Path) -> FileKey | None:
    try:
        info = os.stat(path)  # follows symbolic links
    except (OSError, ValueError):  # not there (yet), or not a name the OS accepts
        return None
    return info.st_dev, info.st_ino


def source_files(spec: str) -> list[Path]:
    """The files a --source path reads: the file, or a folder's images (cameras and URLs read none)."""
    path = Path(spec)
    try:
        if path.is_dir():
            return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return [path] if path.exists() else []
    except OSError:  # unreadable: the source itself says so when it is opened
        return []


def check_outputs(outputs: dict[str, list[Path]], inputs: dict[str, list[Path]]) -> None:
    """Refuse (OutputError) an output that is an input file, or that two outputs share.

    A file is the same file by inode (hard links, symbolic links, bind mounts) or, where it does
    not exist yet, by its resolved path (``./x`` and ``x``, a link to a folder).
    """
    read: dict[FileKey | str, tuple[str, Path]] = {}
    for what, paths in inputs.items():
        for path in paths:
            if (key := file_key(path)) is not None:
                read[key] = (what, path)
            read[os.path.realpath(path)] = (what, path)
    written: dict[FileKey | str, tuple[str, Path]] = {}
    for flag, paths in outputs.items():
        for path in paths:
            keys = [key for key in (file_key(path), os.path.realpath(path)) if key is not None]
            for key in keys:
                if key in read:
                    what, source = read[key]
                    raise OutputError(f"{flag} {path} would overwrite the {what} {source}: choose another path")
                if key in written and written[key][0] != flag:
                    raise OutputError(f"{written[key][0]} and {flag} both write {path}: choose another path")
            for key in keys:
                written[key] = (flag, path)
