"""Batch throughput: a set of short clips through the CLI one after another, the batch inline, and on Ray.

    python benchmarks/batch.py                         # 8 clips, 3 rounds, BENCHMARKS.md untouched
    python benchmarks/batch.py --repeats 3 --json benchmarks/results/batch.json --markdown BENCHMARKS.md
    python benchmarks/batch.py --length 4              # the same 8 clips, each 4 times as long

The clips are made from the sample media (the sample clip looped, and stress variants of it: half size with
noise, dim, blurred, tilting, close-up; the five-face group clip; the clip with no face). Every mode does
the same work per clip: events (JSON Lines) and the per-track summary (JSON, CSV, timeline PNG):

- *CLI, one after another*: `python -m edge.run --source CLIP --headless --events E --summary D` per clip;
- *batch inline*: `python -m edge.batch CLIPS --out D --workers 1` (no Ray, one process);
- *batch on Ray, 1 worker* and *2 workers*: `--ray auto --workers N` (a local instance started and stopped
  by the command, one task per CPU);
- *batch inline on one OpenCV thread* (`single`) and *two of those at once* (`pair`, each over all the clips):
  no Ray, each process on one thread as a Ray task is (`[detector] threads = 1`); `pair` against `single` is
  what a second process gets from these cores, the ceiling for the Ray batch's scaling on this machine.

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
import shlex
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
    "single": ("batch inline, one OpenCV thread (no Ray)", ["--workers", "1"]),
    "pair": ("two of those at once (no Ray)", ["--workers", "1"]),
}
PAIRED = {"pair"}  # modes that run their batch command twice at the same time
ONE_THREAD = {"single", "pair"}  # modes that run the detector on one OpenCV thread, as a Ray task does
ONE_THREAD_CONFIG = "[detector]\nthreads = 1\n"
SAMPLE_LOOP = 4  # the sample clip (72 frames) x 4 = 288 frames per clip (x --length)
GROUP_FRAMES = 240  # the five-face group clip (x --length)
NO_FACE_LOOP = 3  # the no-face clip (95 frames) x 3 (x --length)
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


def make_clips(folder: Path, length: int = 1) -> list[Path]:
    """The benchmark's clips, made from tests/data (the same clips on every run), ``length`` times the
    default length each."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = [bench_video(DATA / "single_face.mp4", SAMPLE_LOOP * length, folder).path.rename(folder / "sample.mp4")]
    clips.append(degraded_copy(clips[0], 0.5, 12.0, 0, folder / "half_noisy.mp4"))
    clips.append(transformed(clips[0], folder / "dim.mp4", lambda f, i: (f * 0.35).astype(np.uint8)))
    clips.append(transformed(clips[0], folder / "blurred.mp4", lambda f, i: cv2.GaussianBlur(f, (0, 0), 2.5)))
    clips.append(transformed(clips[0], folder / "tilting.mp4", tilt))
    clips.append(transformed(clips[0], folder / "close_up.mp4", close_up))
    clips.append(write_group_clip(folder / "group.mp4", frames=GROUP_FRAMES * length))
    no_face = bench_video(DATA / "no_face.mp4", NO_FACE_LOOP * length, folder).path
    clips.append(no_face.rename(folder / "no_face.mp4"))
    return clips


RAY_SERVICES = {  # a piece of a Ray service's command line or title -> its name in the report
    "gcs_server": "GCS", "raylet/raylet": "raylet", "dashboard/dashboard.py": "API server (dashboard.py)",
    "DashboardAgent": "dashboard agent", "dashboard/agent.py": "dashboard agent",
    "RuntimeEnvAgent": "runtime env agent", "runtime_env/agent": "runtime env agent",
    "log_monitor.py": "log monitor", "autoscaler/_private/monitor.py": "autoscaler monitor",
}


def identify(process: psutil.Process, root_pid: int) -> tuple[str, str]:
    """Which part of a command a process is (the command itself, a Ray worker, Ray's own services, another
    child), and its name within that part."""
    if process.pid == root_pid:
        return "command", "command"
    try:
        title = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        return "other", "other"
    for key, name in RAY_SERVICES.items():  # before the workers: the raylet's command line names default_worker.py
        if key in title:
            return "Ray services", name
    # A worker's title is Ray's ("ray::IDLE", "ray::run_task") only once it has started; before that it is
    # its command line, default_worker.py, which the poll often sees first.
    if title.startswith("ray::") or "workers/default_worker.py" in title:
        return "Ray workers", "worker"
    if "ray" in title.lower():
        return "Ray services", "other Ray process"
    return "children", "children"


def monitored(command: list[str], interval_s: float) -> tuple[subprocess.CompletedProcess, dict, float]:
    """Run a command with every process it starts monitored: its result, the monitor's report (CPU seconds
    by role added), wall seconds."""
    started, own_cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=out, stderr=err, text=True)
        monitor = ProcessMonitor(root_pid=process.pid, interval_s=interval_s)
        roles: dict[int, tuple[str, str]] = {}
        with monitor:
            while process.poll() is None:
                try:
                    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
                except psutil.Error:
                    tree = []
                for child in tree:
                    if child.pid not in roles:
                        roles[child.pid] = identify(child, process.pid)
                time.sleep(ROLE_POLL_S)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())
    report = monitor.report()
    by_role: dict[str, float] = {}
    by_process: dict[str, float] = {}
    for trace in monitor.traces.values():
        part, name = roles.get(trace.pid, ("children", "children"))
        by_role[part] = by_role.get(part, 0.0) + trace.last_cpu_s - trace.first_cpu_s
        by_process[name] = by_process.get(name, 0.0) + trace.last_cpu_s - trace.first_cpu_s
    report["cpu_s_by_role"] = by_role
    report["cpu_s_by_process"] = by_process
    report["monitor_cpu_s"] = time.process_time() - own_cpu  # this benchmark's own sampling, part of "others"
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


def batch_command(clips: list[Path], out: Path, options: list[str]) -> list[str]:
    """`python -m edge.batch` over every clip (--force: nothing is skipped)."""
    return [sys.executable, "-m", "edge.batch", *map(str, clips), "--out", str(out), "--quiet", "--force", *options]


def run_batch(clips: list[Path], out: Path, options: list[str], interval_s: float, copies: int = 1
              ) -> dict[str, Any]:
    """One batch command, or ``copies`` of it at the same time (each into a folder of its own under ``out``)."""
    if copies == 1:
        outs, command = [out], batch_command(clips, out, options)
    else:
        outs = [out / f"copy{i + 1}" for i in range(copies)]
        started = " ".join(f"{shlex.join(batch_command(clips, o, options))} & p{i}=$!" for i, o in enumerate(outs))
        command = ["sh", "-c", started + " " + " && ".join(f"wait $p{i}" for i in range(copies))]
    done, resources, wall = monitored(command, interval_s)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(command)} failed: {done.stderr.strip()[-500:]}")
    reports = [json.loads((o / "batch.json").read_text()) for o in outs]
    inputs = [r for report in reports for r in report["inputs"]]
    return {"frames": sum(report["combined"]["frames_this_run"] for report in reports), "wall_s": wall,
            "cpu_s": resources["total"]["cpu_mean_pct"] / 100.0 * wall, "other_cpu_pct": resources["other_cpu_pct"],
            "ray_startup_s": reports[0].get("ray_startup_s"), "task_s": sum(r["seconds"] for r in inputs),
            "task_cpu_s": sum(r.get("cpu_s", 0.0) for r in inputs),
            "cpu_s_by_role": resources["cpu_s_by_role"], "cpu_s_by_process": resources["cpu_s_by_process"],
            "setup_s": sum(r.get("setup_s", 0.0) for r in inputs), "monitor_cpu_s": resources["monitor_cpu_s"],
            "per_input": {r["name"]: {"frames": r["frames"], "seconds": r["seconds"], "fps": r["fps"],
                                      "cpu_s": r.get("cpu_s")} for r in reports[0]["inputs"]}}


def measure(clips: list[Path], workdir: Path, repeats: int, interval_s: float, wait_quiet: float,
            modes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    one_thread = workdir / "one_thread.toml"
    one_thread.write_text(ONE_THREAD_CONFIG)
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
            if mode in ONE_THREAD:
                options = [*options, "--config", str(one_thread)]
            result = (run_cli(clips, out, interval_s) if options is None
                      else run_batch(clips, out, options, interval_s, copies=2 if mode in PAIRED else 1))
            result.update(load_1m=load, round=round_ + 1, fps=result["frames"] / result["wall_s"],
                          cpu_ms_per_frame=1000.0 * result["cpu_s"] / result["frames"])
            if result.get("ray_startup_s"):
                result["fps_after_startup"] = result["frames"] / (result["wall_s"] - result["ray_startup_s"])
            own = result.get("monitor_cpu_s")
            sampling = "" if own is None else f" (this benchmark's sampling {own:.1f} s)"
            progress(f"  {result['frames']} frames in {result['wall_s']:.1f} s: {result['fps']:.1f} frames/s, "
                     f"{result['cpu_ms_per_frame']:.1f} ms CPU a frame, others {result['other_cpu_pct']:.0f} % CPU"
                     + sampling)
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
    if "pair" in runs and "single" in runs:  # two processes at once against one: what the cores themselves scale
        summary["pair_scaling"] = medians["pair"]["fps"] / medians["single"]["fps"]
        summary["pair_scaling_by_round"] = [b["fps"] / a["fps"] for a, b in zip(runs["single"], runs["pair"])]
    return summary


def section_title(length: int) -> str:
    """The Markdown section a clip length's figures go to: each length keeps its own."""
    return SECTION if length == 1 else f"## Batch analysis, clips x{length} (issue 16)"


SERVICE_ORDER = ("GCS", "raylet", "API server (dashboard.py)", "dashboard agent", "runtime env agent", "log monitor",
                 "autoscaler monitor", "other Ray process")


def clip_rows(clips: list[Path]) -> list[list[Any]]:
    rows = []
    for clip in clips:
        frames, fps, width, height, codec = probe(clip)
        rows.append([clip.stem, f"{width}x{height}", codec, frames])
    return rows


def cpu_columns(median: dict[str, Any]) -> list[float]:
    """A mode's CPU seconds: the command (with its plain children: the pair's two batches), Ray workers, Ray's
    services, all, the tasks' own, and all but the tasks."""
    by_role, tasks = median["cpu_s_by_role"], median.get("task_cpu_s", 0.0)
    return [by_role.get("command", 0.0) + by_role.get("children", 0.0), by_role.get("Ray workers", 0.0),
            by_role.get("Ray services", 0.0), median["cpu_s"], tasks, median["cpu_s"] - tasks]


def markdown(results: dict[str, Any]) -> str:
    meta, runs, summary = results["meta"], results["runs"], results["summary"]
    length = meta.get("length", 1)
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
        section_title(length), "",
        f"Written by `benchmarks/batch.py`; {meta['date']}, {meta['cpu_model']}, `nproc` = {meta['cores']}, "
        f"commit {meta['commit']}; shared machine: 1-minute load {meta['load_1m_at_start']:.2f} at start "
        f"(each run's load and the other processes' CPU are in the table and the JSON).",
        "", "```", meta["command"], "```", "",
        f"{len(results['clips'])} clips made from the sample media"
        + (f" (each {length} times the default length)" if length > 1 else "")
        + f", {sum(r[3] for r in results['clips'])} frames in all; each mode writes events (JSON Lines) and the per-track summary (JSON, CSV, timeline PNG) per clip:",
        "", table(["clip", "size", "codec", "frames"], results["clips"], markdown=True), "",
        f"Median of {len(next(iter(runs.values())))} interleaved rounds (frames/s = all frames over the command's "
        "wall time, start-up included; CPU = every process of the command; others = the rest of the machine):",
        "", table(["mode", "frames", "wall s", "frames/s", "frames/s after Ray start", "CPU ms/frame",
                   "others' CPU %", "every round (frames/s)"], rows, markdown=True), "",
    ]
    roles = [(MODES[mode][0], medians[mode]) for mode in medians if "cpu_s_by_role" in medians[mode]]
    if roles:
        lines += ["CPU seconds of the median round by process (the command: the driver, or the inline run(s); the "
                  "tasks: what the inputs' own analysis used, inside the command or the Ray workers):", "",
                  table(["mode", "command", "Ray workers", "Ray services", "all", "the tasks", "all but the tasks"],
                        [[label, *(f"{cpu:.1f}" for cpu in cpu_columns(m))] for label, m in roles], markdown=True), ""]
    services = [(MODES[mode][0], medians[mode]["cpu_s_by_process"]) for mode in medians
                if medians[mode].get("cpu_s_by_role", {}).get("Ray services")]
    if services:
        names = [name for name in SERVICE_ORDER if any(cpu.get(name) for _, cpu in services)]
        lines += ["Ray's services, CPU seconds of the median round:", "",
                  table(["mode", *names], [[label, *(f"{cpu.get(n, 0.0):.2f}" for n in names)]
                                           for label, cpu in services], markdown=True), ""]
    if "scaling" in summary:
        startup = summary["ray_startup_s"]
        lines += [f"- scaling from 1 to 2 Ray workers: **{summary['scaling']:.2f}x** (median rounds; by round "
                  + ", ".join(f"{s:.2f}" for s in summary["scaling_by_round"])
                  + f"), {summary['scaling_after_startup']:.2f}x without Ray's start-up; target >= 1.7x",
                  f"- Ray's start-up (`ray.init` of a local instance): median {startup['median']:.1f} s "
                  f"(min {startup['min']:.1f}, max {startup['max']:.1f})"]
        two = medians["ray2"]
        if two.get("task_cpu_s"):
            spare = two["cpu_s"] - two["task_cpu_s"]
            lines.append(f"- the 2-worker batch's CPU outside its tasks: {spare:.1f} s, "
                         f"{100 * spare / (two['wall_s'] * meta['cores']):.0f} % of the {meta['cores']} cores over its "
                         f"{two['wall_s']:.1f} s")
    if "pair_scaling" in summary:
        lines.append(f"- two one-thread inline batches at once against one: **{summary['pair_scaling']:.2f}x** the "
                     "frames/s (by round " + ", ".join(f"{s:.2f}" for s in summary["pair_scaling_by_round"])
                     + "): what a second process gets from these cores, without Ray")
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of a Markdown file (or add it at the end); other sections stay."""
    old = path.read_text() if path.is_file() else ""
    parts = sections(old)
    title = section.split("\n", 1)[0]
    if title in parts:
        parts[title] = section.rstrip("\n")
        text = "\n".join(text for text in parts.values()) + "\n"
    else:
        text = old.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/batch.py", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds of every mode (default 3)")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--length", type=int, default=1, metavar="K",
                        help="make every clip K times the default length (default 1: 288 frames a clip)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before each run, wait up to S seconds for the CPUs to be nearly idle")
    # 1 s, not the latency benchmark's 0.1-0.2 s: sampling a local Ray instance's ~15 processes every 0.2 s took
    # 5.7 CPU s of a 61 s 2-worker batch (1.8 s at 1 s), taken from the tasks when both cores are busy, and so
    # from the 2-worker figure more than the 1-worker one; totals over minute-long runs need no finer steps.
    parser.add_argument("--interval", type=float, default=1.0, help="process sampling interval, seconds")
    parser.add_argument("--workdir", type=Path, help="keep the clips and outputs here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--markdown", type=Path, help="replace this section of the file (e.g. BENCHMARKS.md)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.length < 1:
        parser.error("--length must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = " ".join(["python", "benchmarks/batch.py", *(sys.argv[1:] if argv is None else argv)])
    meta = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "command": command,
            "cores": os.cpu_count(), "cpu_model": cpu_name(), "platform": platform.platform(),
            "load_1m_at_start": os.getloadavg()[0], "commit": git_commit(), "versions": versions(),
            "length": args.length}
    with tempfile.TemporaryDirectory(prefix="fer-batch-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        progress(f"making the clips in {workdir / 'clips'}")
        clips = make_clips(workdir / "clips", args.length)
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
