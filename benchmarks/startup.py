"""Start-up probe: runs the edge CLI in a fresh process and reports the seconds from launch to the first rendered frame.

Usage (by benchmarks/fps.py): ``python -m benchmarks.startup LAUNCH_T -- <edge.run arguments>``, where
LAUNCH_T is the parent's ``time.perf_counter()`` just before it started this process. On Linux
perf_counter is CLOCK_MONOTONIC, one clock for every process, so the difference is the real
time from the command's start (interpreter start and imports included) to the first frame.
The run stops after that frame; the probe prints ``{"first_frame_s": ...}`` on stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def probe_main(argv: list[str]) -> int:
    launched = float(argv[0])
    import edge.run  # what `python -m edge.run` imports, timed like the rest of the start-up

    class FirstFramePresenter(edge.run.Presenter):
        """The CLI's presenter; stops the run once the first frame is drawn and written."""

        def __call__(self, frame, result, pipeline) -> bool:  # type: ignore[no-untyped-def]
            super().__call__(frame, result, pipeline)
            print(json.dumps({"first_frame_s": time.perf_counter() - launched}), flush=True)
            return False

    edge.run.Presenter = FirstFramePresenter  # this probe process only
    return edge.run.main(argv[2:] if argv[1:2] == ["--"] else argv[1:])


def measure_startup(cli_args: list[str], timeout_s: float = 120.0) -> float:
    """Seconds from launching a fresh interpreter running the CLI to its first rendered frame."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    launched = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.startup", repr(launched), "--", *cli_args],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    for line in done.stdout.splitlines():
        if line.startswith("{"):
            return float(json.loads(line)["first_frame_s"])
    raise RuntimeError(f"start-up probe failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")


if __name__ == "__main__":
    sys.exit(probe_main(sys.argv[1:]))
