"""Throughput, latency, resources and recall: the pipeline side by side with decode-only and sequential baselines.

    python benchmarks/fps.py --source tests/data/single_face.mp4 --loop 10 --live --json out.json --plot out.png
    python benchmarks/fps.py --stress stress/ --detector haar blazeface    # recall and cost on the stress set
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/fps.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.classifier import classifier_bench  # noqa: E402
from benchmarks.floatmodel import cached_float_model  # noqa: E402
from benchmarks.markdown import benchmarks_markdown, merge_markdown  # noqa: E402
from benchmarks.media import BenchVideo, bench_video, reference_faces  # noqa: E402
from benchmarks.procmon import ProcessMonitor, wait_until_quiet  # noqa: E402
from benchmarks.report import BUSY_OTHER_CPU_PCT, text_report, variant_report  # noqa: E402
from benchmarks.startup import measure_startup  # noqa: E402
from benchmarks.stats import median_index, ratio, steady_fps  # noqa: E402
from benchmarks.targets import evaluate  # noqa: E402
from benchmarks.variants import FrameLog, decode_only, pipelined, sequential  # noqa: E402
from edge import models  # noqa: E402
from edge.config import DETECTOR_KINDS, Config, load_config, override  # noqa: E402
from edge.model import ModelError  # noqa: E402
from edge.version import cpu_name  # noqa: E402

log = logging.getLogger("benchmarks.fps")

BUSY_LOAD = 0.5  # 1-minute load average above which the machine is not quiet enough to measure
BUSY_CPU_PCT = 10.0  # % of all cores busy: --wait-quiet waits for less than this
QUIET_WAIT_S = 120.0  # the longest wait for quiet between two tries of a variant


@dataclass(frozen=True)
class Settings:
    """How the benchmark measures; every figure it reports depends on these and nothing else."""

    loop: int = 1  # copies of the clip played back to back
    warmup_frames: int = 10  # left out of steady-state frames/s and latency percentiles
    decode_repeats: int = 3  # decode-only passes; the median is reported
    pipeline_repeats: int = 3  # pipeline passes; the median (by frames/s) is reported, with every pass's figure
    startup_repeats: int = 3  # fresh CLI processes timed to their first frame; the median is reported
    sample_interval_s: float = 0.1  # CPU sampling period (memory every few samples)
    tries: int = 1  # runs of a variant while other processes disturb it; the least disturbed is kept
    recall_scale_factor: float = 1.1  # full-resolution Haar reference
    recall_min_neighbors: int = 4  # ... detectMultiScale(gray, 1.1, 4), every size from the cascade's 24 px window
    classifier_threads: tuple[int, ...] = (1, 2, 4)
    classifier_crops: int = 64  # real face crops timed, one per call
    classifier_warmup: int = 20  # untimed calls per model and thread count
    classifier_repeats: int = 5  # timed passes over the crops


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python benchmarks/fps.py", description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="video file to measure")
    parser.add_argument("--stress", type=Path, metavar="DIR",
                        help="instead: recall and cost on every clip of a stress set (benchmarks/stress.py; "
                             "written there first if DIR has none)")
    parser.add_argument("--detector", nargs="+", choices=DETECTOR_KINDS, default=["haar"],
                        help="detector.kind to measure (--stress: several, side by side)")
    parser.add_argument("--crops", type=Path, metavar="DIR",
                        help="with --stress: contact sheets of the faces one detector finds and another misses")
    parser.add_argument("--loop", type=int, default=Settings.loop, help="play the clip N times back to back")
    parser.add_argument("--model", type=Path, help="TFLite model (default: config, then the shipped model)")
    parser.add_argument("--config", type=Path, help="TOML config, as for edge.run")
    parser.add_argument("--live", action="store_true", help="also replay the file as a live camera at its frame rate")
    parser.add_argument("--live-fps", type=float, help="camera rate for --live (default: the file's)")
    parser.add_argument("--classifier", action="store_true", help="also time the classifier alone, float vs quantized")
    parser.add_argument("--float-model", type=Path, help="float TFLite model for --classifier")
    parser.add_argument("--keras-model", type=Path,
                        help="Keras model to convert to the float TFLite (needs TensorFlow)")
    parser.add_argument("--threads", type=int, nargs="+", default=list(Settings.classifier_threads),
                        help="classifier thread counts for --classifier")
    parser.add_argument("--warmup", type=int, default=Settings.warmup_frames, help="warm-up frames left out")
    parser.add_argument("--startup-repeats", type=int, default=Settings.startup_repeats,
                        help="fresh CLI runs timed to the first frame (0 = skip)")
    parser.add_argument("--json", type=Path, help="write every figure as JSON")
    parser.add_argument("--plot", type=Path, help="write latency histogram and timelines as PNG")
    parser.add_argument("--markdown", type=Path, help="write the figures as Markdown (BENCHMARKS.md)")
    parser.add_argument("--workdir", type=Path, help="keep the looped clip and the outputs here (default: temporary)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for the machine's CPUs to be idle (shared machines)")
    parser.add_argument("--repeats", type=int, default=Settings.pipeline_repeats,
                        help="pipeline passes: the median is reported, every pass listed (the host's speed drifts)")
    parser.add_argument("--tries", type=int, default=Settings.tries,
                        help="measure a variant up to N times while other processes disturb it; keep the quietest")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    if args.stress is None and args.source is None:
        parser.error("--source or --stress is required")
    if args.source is not None and not args.source.is_file():
        parser.error(f"source not found: {args.source}")
    if args.stress is None and len(args.detector) > 1:
        parser.error("several --detector kinds need --stress")
    if args.loop < 1:
        parser.error(f"--loop must be >= 1, got {args.loop}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


def settings_from(args: argparse.Namespace) -> Settings:
    return dataclasses.replace(Settings(), loop=args.loop, warmup_frames=args.warmup,
                               startup_repeats=args.startup_repeats, classifier_threads=tuple(args.threads),
                               tries=max(1, args.tries), pipeline_repeats=args.repeats)


def progress(message: str) -> None:
    print(f"[fps] {message}", file=sys.stderr, flush=True)


def git_commit() -> str:
    """HEAD's short hash, with '+dirty' when the runtime's files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "edge"], cwd=REPO_ROOT, capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def versions() -> dict[str, str]:
    import cv2
    import numpy

    found = {"python": platform.python_version(), "opencv": cv2.__version__, "numpy": numpy.__version__}
    try:
        from importlib.metadata import version

        found["ai-edge-litert"] = version("ai-edge-litert")
    except Exception:  # not installed: another interpreter backend is in use
        found["ai-edge-litert"] = "absent"
    return found


def meta(argv: Sequence[str] | None) -> dict[str, Any]:
    command = " ".join(["python", "benchmarks/fps.py", *(sys.argv[1:] if argv is None else argv)])
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "command": command,
            "cores": os.cpu_count(), "cpu_model": cpu_name(), "platform": platform.platform(),
            "load_1m_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "commit": git_commit(), "versions": versions()}


def resolve_model(args: argparse.Namespace, config: Config) -> Path:
    try:
        model = models.resolve_model(args.model or config.classifier.model)
    except ModelError as exc:
        raise SystemExit(f"error: {exc}") from None
    if not model.is_file():
        raise SystemExit(f"error: model not found: {model} (pass --model PATH or a shipped model's name)")
    return model


def measure_startup_runs(video: BenchVideo, model: Path, args: argparse.Namespace, workdir: Path,
                         repeats: int) -> dict[str, Any] | None:
    """Fresh `python -m edge.run` processes, each timed from launch to its first rendered frame."""
    if repeats <= 0:
        return None
    cli = ["--source", str(video.path), "--headless", "--output", str(workdir / "startup.mp4"),
           "--events", str(workdir / "startup.jsonl"), "--model", str(model)]
    if args.config:
        cli += ["--config", str(args.config)]
    runs = [measure_startup(cli) for _ in range(repeats)]
    return {"command": "python -m edge.run " + " ".join(cli), "runs_s": runs, "median_s": statistics.median(runs),
            "max_s": max(runs)}


Measured = tuple[FrameLog, dict]  # a variant's frame log and its process monitor report


def least_disturbed(measure: Callable[[], Measured], name: str, tries: int) -> Measured:
    """Measure; while other processes took more than a little CPU meanwhile, wait for quiet and measure again.

    Keeps the run the rest of the machine disturbed least (on shared machines the difference
    is large: a busy neighbour halves a sequential baseline).
    """
    best: Measured | None = None
    for attempt in range(max(1, tries)):
        frame_log, resources = measure()
        resources["attempt"] = attempt + 1
        if best is None or resources["other_cpu_pct"] < best[1]["other_cpu_pct"]:
            best = (frame_log, resources)
        if resources["other_cpu_pct"] <= BUSY_OTHER_CPU_PCT or attempt + 1 >= tries:
            break
        progress(f"{name}: other processes used {resources['other_cpu_pct']:.0f} % CPU meanwhile; "
                 f"waiting up to {QUIET_WAIT_S:.0f} s for quiet to measure again")
        wait_until_quiet(QUIET_WAIT_S, BUSY_CPU_PCT)
    return best


def monitored_decode(video: BenchVideo, config: Config, interval_s: float) -> Measured:
    monitor = ProcessMonitor(interval_s=interval_s)
    with monitor:
        frame_log = decode_only(video.path, config)
    return frame_log, monitor.report()


def monitored_pipeline(video: BenchVideo, config: Config, model: Path, workdir: Path, name: str,
                       interval_s: float, paced_fps: float | None = None) -> tuple[FrameLog, dict]:
    monitor = ProcessMonitor(interval_s=interval_s)
    with monitor:
        frame_log = pipelined(video.path, config, model, workdir, name, monitor, paced_fps)
    return frame_log, monitor.report()


def monitored_sequential(video: BenchVideo, config: Config, model: Path, workdir: Path, name: str,
                         detector: str, interval_s: float) -> tuple[FrameLog, dict]:
    monitor = ProcessMonitor(interval_s=interval_s)
    with monitor:
        frame_log = sequential(video.path, config, model, workdir, name, detector)
    return frame_log, monitor.report()


def decode_report(video: BenchVideo, config: Config, settings: Settings) -> dict[str, Any]:
    runs = []
    for _ in range(max(1, settings.decode_repeats)):
        frame_log, resources = least_disturbed(lambda: monitored_decode(video, config, settings.sample_interval_s),
                                               "decode", settings.tries)
        runs.append({**variant_report(frame_log, settings.warmup_frames), "resources": resources})
    fps = [r["fps"] for r in runs]
    return {**runs[median_index(fps)], "runs_fps": fps}


def live_report(frame_log: FrameLog, resources: dict, fps_target: float, warmup: int,
                reference: list[np.ndarray]) -> dict[str, Any]:
    report = variant_report(frame_log, warmup, reference)
    skipped = report.get("source_skipped", 0)
    offered = report["frames_read"] + skipped
    report.update(fps_target=fps_target, resources=resources, drops=report["dropped"] + skipped,
                  drop_rate=(report["dropped"] + skipped) / offered if offered else math.nan)
    return report


def classifier_report(args: argparse.Namespace, model: Path, video: BenchVideo, config: Config,
                      settings: Settings) -> dict[str, Any]:
    models: dict[str, Path] = {}
    note = ""
    if args.float_model:
        models["float"] = args.float_model
    elif args.keras_model:
        progress(f"float reference: {args.keras_model} through python -m convert --quant none (cached after once)")
        models["float"] = cached_float_model(args.keras_model, model)
    else:
        note = "no float model: pass --float-model PATH or --keras-model PATH"
    models["quantized"] = model
    bench = classifier_bench(models, video.original, config, settings.classifier_threads, settings.classifier_crops,
                             settings.classifier_warmup, settings.classifier_repeats)
    return {**bench, "note": note} if note else bench


def header(argv: Sequence[str] | None, settings: Settings, model: Path, video: BenchVideo) -> dict[str, Any]:
    return {"meta": meta(argv), "settings": dataclasses.asdict(settings), "model": str(model),
            "video": {**dataclasses.asdict(video), "path": str(video.path), "original": str(video.original),
                      "frames": video.frames}}


def measure_runs(args: argparse.Namespace, settings: Settings, video: BenchVideo, config: Config, model: Path,
                 workdir: Path) -> tuple[dict[str, FrameLog], dict[str, dict]]:
    """The pipeline (and live) runs, then the sequential baselines; frame logs and resources by variant.

    The pipeline goes before anything loads the classifier into this process, so the main
    process holds what a real run's main process holds.
    """
    interval, tries = settings.sample_interval_s, settings.tries
    logs: dict[str, FrameLog] = {}
    resources: dict[str, dict] = {}
    passes = []
    for repeat in range(settings.pipeline_repeats):
        progress(f"pipeline: {video.frames} frames (pass {repeat + 1} of {settings.pipeline_repeats})")
        passes.append(least_disturbed(
            lambda: monitored_pipeline(video, config, model, workdir, "pipeline", interval), "pipeline", tries))
    logs["pipeline"], resources["pipeline"] = median_pass(passes, settings.warmup_frames)
    if args.live:
        fps = live_rate(args, video)
        progress(f"live: {video.frames} frames paced at {fps:.1f} fps ({video.frames / fps:.0f} s)")
        logs["live"], resources["live"] = least_disturbed(
            lambda: monitored_pipeline(video, config, model, workdir, "live", interval, fps), "live", tries)
    for name, detector in (("seeds", "seeds"), ("sequential", "pipeline")):
        progress(f"sequential baseline: {name}")
        logs[name], resources[name] = least_disturbed(
            lambda: monitored_sequential(video, config, model, workdir, name, detector, interval), name, tries)
    return logs, resources


def median_pass(passes: list[Measured], warmup: int) -> Measured:
    """The pass with the median frames/s, its log noting every pass's frames/s."""
    fps = [steady_fps(frame_log.done, warmup) for frame_log, _ in passes]
    frame_log, resources = passes[median_index(fps)]
    frame_log.extra["runs_fps"] = fps
    return frame_log, resources


def live_rate(args: argparse.Namespace, video: BenchVideo) -> float:
    return args.live_fps or video.fps


def compare(logs: dict[str, FrameLog], resources: dict[str, dict], decode: dict[str, Any], reference: list[np.ndarray],
            warmup: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Per-variant reports, and the pipeline's throughput relative to each baseline."""
    variants = {"decode": decode}
    for name in ("seeds", "sequential", "pipeline"):
        variants[name] = {**variant_report(logs[name], warmup, reference), "resources": resources[name]}
    fps = variants["pipeline"]["fps"]
    ratios = {"pipeline_over_seeds": ratio(fps, variants["seeds"]["fps"]),
              "pipeline_over_sequential": ratio(fps, variants["sequential"]["fps"]),
              "pipeline_over_decode": ratio(fps, decode["fps"])}
    return variants, ratios


def run(args: argparse.Namespace, settings: Settings, workdir: Path, argv: Sequence[str] | None) -> dict[str, Any]:
    config = override(load_config(args.config), "detector", kind=args.detector[0])
    model = resolve_model(args, config)
    video = bench_video(args.source, settings.loop, workdir)
    results = header(argv, settings, model, video)
    # Fresh-process runs first: they also warm the disk cache for everything after them.
    progress(f"start-up: {settings.startup_repeats} fresh CLI runs")
    results["startup"] = measure_startup_runs(video, model, args, workdir, settings.startup_repeats)
    logs, resources = measure_runs(args, settings, video, config, model, workdir)
    progress("decode only")
    decode = decode_report(video, config, settings)
    progress("full-resolution Haar reference for recall")
    reference = reference_faces(video, config.detector, settings.recall_scale_factor,
                                 settings.recall_min_neighbors)
    results["variants"], results["ratios"] = compare(logs, resources, decode, reference, settings.warmup_frames)
    if args.live:
        results["live"] = live_report(logs["live"], resources["live"], live_rate(args, video),
                                      settings.warmup_frames, reference)
    if args.classifier:
        progress("classifier micro-benchmark")
        results["classifier"] = classifier_report(args, model, video, config, settings)
    results["targets"] = evaluate(results)
    if args.plot:
        from benchmarks.plot import save_plot

        save_plot(logs, args.plot, settings.warmup_frames)
    return results


def json_safe(value: Any) -> Any:
    """NaN and infinity become null, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    settings = settings_from(args)
    if args.wait_quiet > 0:
        progress(f"waiting up to {args.wait_quiet:.0f} s for the CPUs to be idle")
        busy = wait_until_quiet(args.wait_quiet, BUSY_CPU_PCT)
        if busy > BUSY_CPU_PCT:
            progress(f"warning: the CPUs are still {busy:.0f} % busy; measuring anyway")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > BUSY_LOAD:
        progress(f"warning: load average {load:.2f} at start; other work on this machine will skew the figures")
    with tempfile.TemporaryDirectory(prefix="fer-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.stress is not None:
            return stress_main(args, settings, workdir, argv)
        results = run(args, settings, workdir, argv)
    print(text_report(results))
    if args.json:
        args.json.write_text(json.dumps(json_safe(results), indent=2) + "\n")
    if args.markdown:  # sections other tools wrote (e.g. label stability) are kept
        old = args.markdown.read_text() if args.markdown.is_file() else ""
        args.markdown.write_text(merge_markdown(benchmarks_markdown(results), old) + "\n")
    return 0


def stress_main(args: argparse.Namespace, settings: Settings, workdir: Path, argv: Sequence[str] | None) -> int:
    """--stress: every clip of the set with every --detector; the report, JSON and BENCHMARKS.md section."""
    from benchmarks.stress_bench import replace_section, stress_markdown, stress_results, stress_text

    config = load_config(args.config)
    results = stress_results(args, config, resolve_model(args, config), workdir, settings.warmup_frames,
                             settings.sample_interval_s, argv)
    print(stress_text(results))
    if args.json:
        args.json.write_text(json.dumps(json_safe(results), indent=2) + "\n")
    if args.markdown:  # only the stress section is replaced
        old = args.markdown.read_text() if args.markdown.is_file() else ""
        args.markdown.write_text(replace_section(old, stress_markdown(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
