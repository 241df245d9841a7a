"""Batch throughput: a set of short clips through the CLI one after another, the batch inline, and on Ray.

    python benchmarks/batch.py                         # 8 clips, 3 rounds, BENCHMARKS.md untouched
    python benchmarks/batch.py --repeats 3 --json benchmarks/results/batch.json --markdown BENCHMARKS.md

The clips are made from the sample media (the sample clip looped, and stress variants of it: half size with
noise, dim, blurred, tilting, close-up; the five-face group clip; the clip with no face). Every mode does
the same work per clip: events (JSON Lines) and the per-track summary (JSON, CSV, timeline PNG):

- *CLI, one after another*: `python -m edge.run --source CLIP --headless --events E --summary D` per clip;
- *batch inline*: `python -m edge.batch CLIPS --out D --workers 1` (no Ray, one process);
- *batch on Ray, 1 worker* and *2 workers*: `--ray auto --workers N` (a local instance started and stopped
  by the command, one task per CPU).

Rounds are interleaved (every mode once per round, the order rotating) and the median round is reported;
CPU time counts every process of the command, the rest of the machine's CPU use is reported beside it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/batch.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.flicker import degraded_copy  # noqa: E402
from benchmarks.fps import git_commit, versions  # noqa: E402
from benchmarks.group_clip import write_group_clip  # noqa: E402
from benchmarks.markdown import sections  # noqa: E402
from benchmarks.media import bench_video, probe  # noqa: E402
from benchmarks.procmon import ProcessMonitor, wait_until_quiet  # noqa: E402
from benchmarks.report import table  # noqa: E402
from edge.version import cpu_name  # noqa: E402

DATA = REPO_ROOT / "tests" / "data"
SECTION = "## Batch analysis (issue 16)"
MODES = {  # name -> (label, batch arguments or None for the CLI one clip after another)
    "cli": ("CLI, one clip after another", None),
    "inline": ("batch inline (--workers 1, no Ray)", ["--workers", "1"]),
    "ray1": ("batch on Ray, 1 worker", ["--ray", "auto", "--workers", "1"]),
    "ray2": ("batch on Ray, 2 workers", ["--ray", "auto", "--workers", "2"]),
}
SAMPLE_LOOP = 4  # the sample clip (72 frames) x 4 = 288 frames per clip
TILT_DEG = 15.0
TILT_PERIOD_FRAMES = 96
ROLE_POLL_S = 0.3  # how often the benchmark looks for new processes to tell Ray workers from services
QUIET_CPU_PCT = 15.0  # % of all cores busy: --wait-quiet waits for less than this before each round


def progress(message: str) -> None:
    print(f"[batch-bench] {message}", file=sys.stderr, flush=True)


def transformed(source: Path, out: Path, change: Callable[[np.ndarray, int], np.ndarray]) -> Path:
    """A copy of a clip with every frame changed by ``change(frame, index)``, as mp4v at the source's rate."""
    capture = cv2.VideoCapture(str(source))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    writer, index = None, 0
    while (frame := capture.read()[1]) is not None:
        frame = change(frame, index)
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frame.shape[1], frame.shape[0]))
        writer.write(frame)
        index += 1
    capture.release()
    if writer is None:
        raise SystemExit(f"error: not a decodable video: {source}")
    writer.release()
    return out


def tilt(frame: np.ndarray, index: int) -> np.ndarray:
    height, width = frame.shape[:2]
    angle = TILT_DEG * math.sin(2 * math.pi * index / TILT_PERIOD_FRAMES)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    return cv2.warpAffine(frame, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)


def close_up(frame: np.ndarray, index: int) -> np.ndarray:
    """The middle 60% of the frame blown up to the full size: a face about 1.7x larger, cut at the edges."""
    height, width = frame.shape[:2]
    y, x = int(height * 0.2), int(width * 0.2)
    return cv2.resize(frame[y:height - y, x:width - x], (width, height), interpolation=cv2.INTER_LINEAR)


def make_clips(folder: Path) -> list[Path]:
    """The benchmark's clips, made from tests/data (the same clips on every run)."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = [bench_video(DATA / "single_face.mp4", SAMPLE_LOOP, folder).path.rename(folder / "sample.mp4")]
    clips.append(degraded_copy(clips[0], 0.5, 12.0, 0, folder / "half_noisy.mp4"))
    clips.append(transformed(clips[0], folder / "dim.mp4", lambda f, i: (f * 0.35).astype(np.uint8)))
    clips.append(transformed(clips[0], folder / "blurred.mp4", lambda f, i: cv2.GaussianBlur(f, (0, 0), 2.5)))
    clips.append(transformed(clips[0], folder / "tilting.mp4", tilt))
    clips.append(transformed(clips[0], folder / "close_up.mp4", close_up))
    clips.append(write_group_clip(folder / "group.mp4", frames=240))
    no_face = bench_video(DATA / "no_face.mp4", 3, folder).path
    clips.append(no_face.rename(folder / "no_face.mp4"))
    return clips


def role(process: psutil.Process, root_pid: int) -> str:
    """Which part of a command a process is: the command itself, a Ray worker, or Ray's own services."""
    if process.pid == root_pid:
        return "command"
    try:
        title = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return "other"
    # A worker's title is Ray's ("ray::IDLE", "ray::run_task") only once it has started; before that it is
    # its command line, default_worker.py, which the poll often sees first.
    if (title.startswith("ray::") and "Agent" not in title) or "workers/default_worker.py" in title:
        return "Ray workers"
    return "Ray services" if "ray" in title.lower() or process.name() in ("gcs_server", "raylet") else "children"


def monitored(command: list[str], interval_s: float) -> tuple[subprocess.CompletedProcess, dict, float]:
    """Run a command with every process it starts monitored: its result, the monitor's report (CPU seconds
    by role added), wall seconds."""
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=err, text=True)
        monitor = ProcessMonitor(root_pid=process.pid, interval_s=interval_s)
        roles: dict[int, str] = {}
        with monitor:
            while process.poll() is None:
                try:
                    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
                except psutil.Error:
                    tree = []
                for child in tree:
                    if child.pid not in roles:
                        roles[child.pid] = role(child, process.pid)
                time.sleep(ROLE_POLL_S)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())
    report = monitor.report()
    by_role: dict[str, float] = {}
    for trace in monitor.traces.values():
        name = roles.get(trace.pid, "children")
        by_role[name] = by_role.get(name, 0.0) + trace.last_cpu_s - trace.first_cpu_s
    report["cpu_s_by_role"] = by_role
    return done, report, wall


def run_cli(clips: list[Path], out: Path, interval_s: float) -> dict[str, Any]:
    """Every clip through `python -m edge.run` in turn; frames counted from the events files."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    wall, cpu, other, frames = 0.0, 0.0, [], 0
    for clip in clips:
        events = out / f"{clip.stem}.jsonl"
        command = [sys.executable, "-m", "edge.run", "--source", str(clip), "--headless", "--events", str(events),
                   "--summary", str(out / clip.stem)]
        done, resources, seconds = monitored(command, interval_s)
        if done.returncode != 0:
            raise SystemExit(f"error: {' '.join(command)} failed: {done.stderr.strip()[-500:]}")
        wall += seconds
        cpu += resources["total"]["cpu_mean_pct"] / 100.0 * seconds
        other.append(resources["other_cpu_pct"] * seconds)
        frames += len(events.read_text().splitlines())
    return {"frames": frames, "wall_s": wall, "cpu_s": cpu, "other_cpu_pct": sum(other) / wall}


def run_batch(clips: list[Path], out: Path, options: list[str], interval_s: float) -> dict[str, Any]:
    """One `python -m edge.batch` command over every clip (--force: nothing is skipped)."""
    command = [sys.executable, "-m", "edge.batch", *map(str, clips), "--out", str(out), "--quiet", "--force",
               *options]
    done, resources, wall = monitored(command, interval_s)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    report = json.loads((out / "batch.json").read_text())
    inputs = report["inputs"]
    task_s = sum(r["seconds"] for r in inputs)
    return {"frames": report["combined"]["frames_this_run"], "wall_s": wall,
            "cpu_s": resources["total"]["cpu_mean_pct"] / 100.0 * wall, "other_cpu_pct": resources["other_cpu_pct"],
            "ray_startup_s": report.get("ray_startup_s"), "task_s": task_s, "cpu_s_by_role": resources["cpu_s_by_role"],
            "setup_s": sum(r.get("setup_s", 0.0) for r in inputs),
            "per_input": {r["name"]: {"frames": r["frames"], "seconds": r["seconds"], "fps": r["fps"]} for r in inputs}}


def measure(clips: list[Path], workdir: Path, repeats: int, interval_s: float, wait_quiet: float,
            modes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for round_ in range(repeats):
        order = list(modes[round_ % len(modes):]) + list(modes[:round_ % len(modes)])
        for mode in order:
            if wait_quiet > 0:
                busy = wait_until_quiet(wait_quiet, QUIET_CPU_PCT)
                if busy > QUIET_CPU_PCT:
                    progress(f"the CPUs are still {busy:.0f} % busy; measuring anyway")
            load = os.getloadavg()[0]
            progress(f"round {round_ + 1}/{repeats}: {MODES[mode][0]} (load {load:.2f})")
            out = workdir / "out" / mode
            options = MODES[mode][1]
            result = run_cli(clips, out, interval_s) if options is None else run_batch(clips, out, options, interval_s)
            result.update(load_1m=load, round=round_ + 1, fps=result["frames"] / result["wall_s"],
                          cpu_ms_per_frame=1000.0 * result["cpu_s"] / result["frames"])
            if result.get("ray_startup_s"):
                result["fps_after_startup"] = result["frames"] / (result["wall_s"] - result["ray_startup_s"])
            progress(f"  {result['frames']} frames in {result['wall_s']:.1f} s: {result['fps']:.1f} frames/s, "
                     f"{result['cpu_ms_per_frame']:.1f} ms CPU a frame, others {result['other_cpu_pct']:.0f} % CPU")
            runs[mode].append(result)
    return runs


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: r["fps"])
    return ordered[(len(ordered) - 1) // 2]


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    medians = {mode: median_run(mode_runs) for mode, mode_runs in runs.items()}
    summary: dict[str, Any] = {"median": medians}
    if "ray1" in runs and "ray2" in runs:
        summary["scaling"] = medians["ray2"]["fps"] / medians["ray1"]["fps"]
        summary["scaling_after_startup"] = medians["ray2"]["fps_after_startup"] / medians["ray1"]["fps_after_startup"]
        summary["scaling_by_round"] = [b["fps"] / a["fps"] for a, b in zip(runs["ray1"], runs["ray2"])]
        startups = [r["ray_startup_s"] for mode in ("ray1", "ray2") for r in runs[mode]]
        summary["ray_startup_s"] = {"median": statistics.median(startups), "min": min(startups), "max": max(startups)}
    return summary


def clip_rows(clips: list[Path]) -> list[list[Any]]:
    rows = []
    for clip in clips:
        frames, fps, width, height, codec = probe(clip)
        rows.append([clip.stem, f"{width}x{height}", codec, frames])
    return rows


def markdown(results: dict[str, Any]) -> str:
    meta, runs, summary = results["meta"], results["runs"], results["summary"]
    medians = summary["median"]
    rows = []
    for mode, (label, _) in MODES.items():
        if mode not in medians:
            continue
        m = medians[mode]
        rows.append([label, m["frames"], f"{m['wall_s']:.1f}", f"{m['fps']:.1f}",
                     f"{m['fps_after_startup']:.1f}" if "fps_after_startup" in m else "-",
                     f"{m['cpu_ms_per_frame']:.2f}", f"{m['other_cpu_pct']:.0f}",
                     ", ".join(f"{r['fps']:.1f}" for r in runs[mode])])
    lines = [
        SECTION, "",
        f"Written by `benchmarks/batch.py`; {meta['date']}, {meta['cpu_model']}, `nproc` = {meta['cores']}, "
        f"commit {meta['commit']}; shared machine: 1-minute load {meta['load_1m_at_start']:.2f} at start "
        f"(each run's load and the other processes' CPU are in the table and the JSON).",
        "", "```", meta["command"], "```", "",
        f"{len(results['clips'])} clips made from the sample media, {sum(r[3] for r in results['clips'])} frames "
        "in all; each mode writes events (JSON Lines) and the per-track summary (JSON, CSV, timeline PNG) per clip:",
        "", table(["clip", "size", "codec", "frames"], results["clips"], markdown=True), "",
        f"Median of {len(next(iter(runs.values())))} interleaved rounds (frames/s = all frames over the command's "
        "wall time, start-up included; CPU = every process of the command; others = the rest of the machine):",
        "", table(["mode", "frames", "wall s", "frames/s", "frames/s after Ray start", "CPU ms/frame",
                   "others' CPU %", "every round (frames/s)"], rows, markdown=True), "",
    ]
    roles = [(MODES[mode][0], medians[mode]["cpu_s_by_role"]) for mode in medians if "cpu_s_by_role" in medians[mode]]
    if roles:
        lines += ["CPU seconds of the median round by process (the command: the driver, or the inline run; Ray's "
                  "services: GCS, raylet, agents, log monitor):", "",
                  table(["mode", "command", "Ray workers", "Ray services"],
                        [[label, *(f"{cpu.get(k, 0.0):.1f}" for k in ("command", "Ray workers", "Ray services"))]
                         for label, cpu in roles], markdown=True), ""]
    if "scaling" in summary:
        startup = summary["ray_startup_s"]
        lines += [f"- scaling from 1 to 2 Ray workers: **{summary['scaling']:.2f}x** (median rounds; by round "
                  + ", ".join(f"{s:.2f}" for s in summary["scaling_by_round"])
                  + f"), {summary['scaling_after_startup']:.2f}x without Ray's start-up; target >= 1.7x",
                  f"- Ray's start-up (`ray.init` of a local instance): median {startup['median']:.1f} s "
                  f"(min {startup['min']:.1f}, max {startup['max']:.1f})"]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of a Markdown file (or add it at the end); other sections stay."""
    old = path.read_text() if path.is_file() else ""
    parts = sections(old)
    if SECTION in parts:
        parts[SECTION] = section.rstrip("\n")
        text = "\n".join(text for text in parts.values()) + "\n"
    else:
        text = old.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/batch.py", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every mode (default 3)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before each run, wait up to S seconds for the CPUs to be nearly idle")
    parser.add_argument("--interval", type=float, default=0.2, help="process sampling interval, seconds")
    parser.add_argument("--workdir", type=Path, help="keep the clips and outputs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", type=Path, help="replace this section of the file (e.g. BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python", "benchmarks/batch.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "command": command,
            "cores": os.cpu_count(), "cpu_model": cpu_name(), "platform": platform.platform(),
            "load_1m_at_start": os.getloadavg()[0], "commit": git_commit(), "versions": versions()}
    with tempfile.TemporaryDirectory(prefix="fer-batch-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        progress(f"making the clips in {workdir / 'clips'}")
        clips = make_clips(workdir / "clips")
        runs = measure(clips, workdir, args.repeats, args.interval, args.wait_quiet, args.modes)
        results = {"meta": meta, "clips": clip_rows(clips), "runs": runs, "summary": summarize(runs)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    section = markdown(results)
    print(section)
    if args.markdown:
        write_section(args.markdown, section)
        progress(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
