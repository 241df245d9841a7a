"""Two checkouts of fer-edge side by side: the CLI on one clip, runs interleaved, medians of frames/s and CPU a frame.

    git worktree add --detach /tmp/base 5dfc1cf
    python benchmarks/checkouts.py /tmp/base . --source tests/data/single_face.mp4 --loop 10 --rounds 5
    python benchmarks/checkouts.py /tmp/base . --source tests/data/no_face.mp4 --rounds 1   # false boxes

Each round runs ``python -m edge.run --source CLIP --headless --events ...`` once in every checkout,
in turn, so both meet the same load (``--video`` adds ``--output``: the encoder's cost too, which other
work may have changed between the checkouts). CPU is that of all the run's processes (the
CLI and its workers, from the children's resource usage); with ``--loop`` > 1 each round also plays the
clip once, and CPU a frame is the difference over the extra frames (start-up left out). Frames/s is the
steady rate after the first frame (the CLI's own line: frames, elapsed, first frame). Boxes are counted
from the events file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/checkouts.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.media import bench_video  # noqa: E402

SUMMARY = re.compile(r"(\d+) frames in ([\d.]+) s .*?first frame after ([\d.]+) s")


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(checkout: Path, clip: Path, workdir: Path, video: bool = False) -> dict[str, float]:
    """One CLI run in ``checkout``: frames, steady frames/s, CPU seconds (all processes), boxes, frames with boxes."""
    events, output = workdir / "events.jsonl", workdir / "out.mp4"
    for path in (events, output):
        path.unlink(missing_ok=True)
    command = [sys.executable, "-m", "edge.run", "--source", str(clip), "--headless", "--events", str(events)]
    before = children_cpu_s()
    done = subprocess.run(command + (["--output", str(output)] if video else []), cwd=checkout,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(checkout)})
    cpu_s = children_cpu_s() - before
    match = SUMMARY.search(done.stdout + done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"{checkout}: exit {done.returncode}: {(done.stderr or done.stdout).strip()[-500:]}")
    frames, elapsed, first = int(match[1]), float(match[2]), float(match[3])
    boxes = [len(json.loads(line).get("faces", [])) for line in events.read_text().splitlines() if line.strip()]
    return {"frames": frames, "fps": (frames - 1) / (elapsed - first) if elapsed > first else float("nan"),
            "cpu_s": cpu_s, "boxes": sum(boxes), "frames_with_boxes": sum(1 for b in boxes if b)}


def round_of(checkout: Path, long_clip: Path, short_clip: Path | None, workdir: Path, video: bool) -> dict[str, float]:
    """One round in a checkout: the long clip, and (when looped) the clip once, whose CPU is the start-up's
    share: CPU ms a frame is the difference over the extra frames, start-up and shut-down left out."""
    result = run_once(checkout, long_clip, workdir, video)
    result["cpu_ms_per_frame"] = 1000.0 * result["cpu_s"] / result["frames"]
    if short_clip is not None:
        short = run_once(checkout, short_clip, workdir, video)
        result["startup_cpu_s"] = short["cpu_s"]
        result["cpu_ms_per_frame"] = 1000.0 * (result["cpu_s"] - short["cpu_s"]) / (result["frames"] - short["frames"])
    return result


def cell(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f}; " + " ".join(f"{v:.{digits}f}" for v in values)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python benchmarks/checkouts.py", description=__doc__.split("\n")[0])
    parser.add_argument("checkouts", type=Path, nargs="+", help="fer-edge checkouts (folders) to compare")
    parser.add_argument("--source", type=Path, required=True, help="video file")
    parser.add_argument("--loop", type=int, default=1, help="play the clip N times back to back")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each checkout, interleaved")
    parser.add_argument("--video", action="store_true", help="also write the annotated video (--output)")
    parser.add_argument("--json", type=Path, help="write every run as JSON")
    args = parser.parse_args(argv)
    missing = [p for p in [*args.checkouts, args.source] if not p.exists()]
    if missing:
        print(f"error: not found: {missing[0]}", file=sys.stderr)
        return 2
    if args.loop < 1 or args.rounds < 1:
        print("error: --loop and --rounds must be at least 1", file=sys.stderr)
        return 2
    runs: dict[str, list[dict[str, float]]] = {str(c): [] for c in args.checkouts}
    with tempfile.TemporaryDirectory(prefix="fer-checkouts-") as tmp:
        source = args.source.resolve()
        clip = bench_video(source, args.loop, Path(tmp)).path
        for round_ in range(args.rounds):
            for checkout in args.checkouts:
                result = round_of(checkout.resolve(), clip, source if args.loop > 1 else None, Path(tmp), args.video)
                runs[str(checkout)].append(result)
                print(f"[checkouts] round {round_ + 1}/{args.rounds} {checkout}: {result['fps']:.1f} frames/s, "
                      f"{result['cpu_ms_per_frame']:.2f} CPU ms/frame, {result['boxes']} boxes", file=sys.stderr)
    cpu_what = "start-up excluded" if args.loop > 1 else "start-up included"
    print(f"{args.source} x{args.loop}, {args.rounds} interleaved rounds, load {os.getloadavg()[0]:.1f} at the end")
    print(f"{'checkout':<30} {'frames':>6} {'frames/s (median; all)':>40} {f'CPU ms/frame, {cpu_what} (median; all)':>48} "
          f"{'boxes':>6} {'frames with boxes':>18}")
    for checkout, results in runs.items():
        print(f"{checkout:<30} {results[0]['frames']:>6} {cell([r['fps'] for r in results], 1):>40} "
              f"{cell([r['cpu_ms_per_frame'] for r in results], 2):>48} "
              f"{results[0]['boxes']:>6} {results[0]['frames_with_boxes']:>18}")
    if args.json:
        args.json.write_text(json.dumps({"source": str(args.source), "loop": args.loop, "runs": runs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
