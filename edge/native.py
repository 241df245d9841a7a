"""Native libraries' own logging (OpenCV, FFmpeg inside it, TensorFlow) kept off the terminal unless debugging."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator

# Read by the libraries when they first log, and inherited by spawned workers: set before any of that.
QUIET = {
    "OPENCV_LOG_LEVEL": "OFF",  # OpenCV's "[ WARN:0@0.1] global cap_v4l.cpp ..." lines
    "OPENCV_FFMPEG_LOGLEVEL": "-8",  # FFmpeg's av_log through OpenCV: AV_LOG_QUIET ("moov atom not found")
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow Lite, where it is the fallback interpreter: errors only
}


def quiet_native_logs(debug: bool = False) -> None:
    """Silence the native libraries in this process and the workers it starts; with ``debug`` leave them be.

    The runtime reports every failure itself, in one line; the libraries' own lines (2 to 9 for a
    bad video, camera or stream) would bury it. A value already in the environment is kept.
    """
    if debug:
        return
    for name, value in QUIET.items():
        os.environ.setdefault(name, value)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and os.environ["OPENCV_LOG_LEVEL"] == "OFF":  # imported already: its level may be read
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)


@contextlib.contextmanager
def held_stderr(fd: int = 2) -> Iterator[list[str]]:
    """Hold back what is written to the file descriptor ``fd`` (stderr) in the block, where native code writes
    past Python's ``sys.stderr``; the list is filled with those lines once the block ends."""
    sys.stderr.flush()
    saved = os.dup(fd)
    lines: list[str] = []
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), fd)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, fd)
            os.close(saved)
            held.seek(0)
            lines.extend(held.read().decode(errors="replace").splitlines())
