"""Main-process memory over a long run: resident and unique memory sampled as frames go by, growth per frame.

    python benchmarks/memory.py --loop 200                 # this checkout
    python benchmarks/memory.py --loop 200 --root ../main  # another checkout, to compare
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.media import bench_video  # noqa: E402

SAMPLE_S = 0.5
WARMUP_FRAMES = 300  # the first frames allocate caches, the tracker's state, the codec's buffers
MB = 2**20
EDGE_SAMPLES = 5  # start and end figures are medians of this many samples (one sample can catch a spike)


def measure(root: Path, video: Path, events: Path) -> dict[str, float]:
    """Run the CLI from ``root`` on ``video``; the main process's memory against frames done."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    process = subprocess.Popen([sys.executable, "-m", "edge.run", "--headless", "--source", str(video),
                                "--events", str(events)], cwd=root, env=env, stderr=subprocess.PIPE, text=True)
    main = psutil.Process(process.pid)
    frames, rss, uss = [], [], []
    while process.poll() is None:
        try:
            info = main.memory_full_info()
            done = events.read_text().count("\n") if events.exists() else 0
        except (psutil.Error, OSError):
            break
        frames.append(done)
        rss.append(info.rss)
        uss.append(info.uss)
        time.sleep(SAMPLE_S)
    stderr = process.communicate()[1]
    if process.returncode != 0:
        raise SystemExit(f"the run failed: {stderr}")
    f, r, u = (np.array(a, float) for a in (frames, rss, uss))
    steady = f >= WARMUP_FRAMES
    slope = np.polyfit(f[steady], u[steady], 1)[0] if steady.sum() > 2 else float("nan")
    def first(a: np.ndarray) -> float:
        return float(np.median(a[steady][:EDGE_SAMPLES]))

    def last(a: np.ndarray) -> float:
        return float(np.median(a[steady][-EDGE_SAMPLES:]))

    return {"frames": float(f.max()), "rss_start_mb": first(r) / MB, "rss_end_mb": last(r) / MB,
            "uss_start_mb": first(u) / MB, "uss_end_mb": last(u) / MB,
            "uss_growth_kb_per_frame": slope / 1024, "samples": float(steady.sum())}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", type=int, default=200, help="the sample clip this many times (72 frames each)")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="the checkout whose edge/ runs")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fer-memory-") as folder:
        video = bench_video(REPO_ROOT / "tests" / "data" / "single_face.mp4", args.loop, Path(folder)).path
        result = measure(args.root.resolve(), video, Path(folder) / "events.jsonl")
    print(f"{args.root.resolve()}: {result['frames']:.0f} frames; main process after {WARMUP_FRAMES} frames -> end "
          f"(medians of {EDGE_SAMPLES} samples): "
          f"RSS {result['rss_start_mb']:.1f} -> {result['rss_end_mb']:.1f} MB, USS {result['uss_start_mb']:.1f} -> "
          f"{result['uss_end_mb']:.1f} MB; USS growth {result['uss_growth_kb_per_frame']:.3f} KB a frame "
          f"(least squares over {result['samples']:.0f} samples)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
