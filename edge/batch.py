"""Batch analysis: many videos and image folders, one single-process task each, inline or on Ray; resumable."""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import glob
import hashlib
import importlib.util
import itertools
import json
import logging
import math
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generator, Iterator, Sequence

from edge.capture import IMAGE_SUFFIXES, STREAM_PREFIXES, open_source
from edge.config import Config, ConfigError, load_config, override
from edge.detect import DetectorError
from edge.model import ModelError
from edge.models import MODELS_DIR, SHIPPED, resolve_model
from edge.native import held_stderr
from edge.render import OutputError, Renderer
from edge.runner import Runner, Stages, model_path
from edge.signals import EXIT_CODES, REASONS
from edge.sinks import Outputs, close_all, make_sinks
from edge.summary import SummarySink

log = logging.getLogger("edge.batch")

EXIT_OK = 0  # every input analysed (now or by an earlier run)
EXIT_BAD_INPUT = 2  # bad arguments, inputs, model, config or output folder: nothing was run
EXIT_FAILED = 3  # some inputs failed (each recorded in batch.json with its error); the others are done
# Ctrl-C, SIGTERM and SIGHUP stop the batch with the shell's exit codes (130, 143, 129: edge.signals.EXIT_CODES)
INSTALL_HINT = "pip install 'fer-edge[batch]'"
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                  ".mts", ".3gp", ".ogv"}  # files a folder contributes as videos
LIST_SUFFIXES = {".txt", ".list"}  # an input file naming one input per line
GLOB_CHARS = re.compile(r"[*?\[]")
RESERVED_NAMES = {"batch.json", "batch.csv"}  # the report files beside the inputs' folders
MARKER = "done.json"  # written last into an input's folder: the input is finished
HEARTBEAT = "worker.json"  # in a running input's partial folder: its worker, attempt and frames done
HEARTBEAT_S = 1.0  # a running task rewrites its heartbeat this often
PROGRESS_S = 0.25  # inline progress refreshes this often
POLL_S = 0.5  # the driver wakes this often to refresh the progress of Ray tasks
MAX_RETRIES = 1  # a task whose worker process died is run once more, then reported
LOCAL_SYSTEM_CONFIG = {"enable_metrics_collection": False}  # a local Ray instance's: no metrics agent work
PROBE_SKIP = 2  # an input's cost is timed on its frames after these (the decoder's and detector's start)
PROBE_FRAMES = 8  # ... over this many frames
PROBE_BUDGET_S = 3.0  # the probe gives up past this: a batch that large has a small tail to shorten
CANCEL_WAIT_S = 10.0  # how long a stopped batch waits for its cancelled tasks' workers to be killed (~0.03 s seen)
JOIN_TIMEOUT_S = 60.0  # ray.init retries a cluster whose GCS does not answer for many minutes
CONNECT_TIMEOUT_S = 5.0  # a cluster address that takes longer to accept a TCP connection is taken as unreachable
# the default ports where an address names none: `ray start --head`'s GCS, and the Ray Client server's
DEFAULT_PORTS = {"": 6379, "ray": 10001}
ADDRESS = re.compile(r"(?:(?P<scheme>\w+)://)?(?:\[(?P<v6>[^]]+)\]|(?P<host>[^:\[\]/]+))(?::(?P<port>\d+))?/?")


class InputError(ValueError):
    """A batch argument names nothing that can be analysed."""


class JoinTimeout(BaseException):
    """Joining a cluster ran past JOIN_TIMEOUT_S (a BaseException: ray.init retries on any Exception)."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a closed terminal or ssh session): stop like Ctrl-C."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # edge.signals' word for the signal: "terminate", "hangup"


@dataclass(frozen=True)
class Task:
    """One input: a video (file or URL) or a folder of images, and the folder its results go to."""

    name: str  # the folder under --out
    source: str  # what edge.capture.open_source opens: an absolute path or a URL


@dataclass(frozen=True)
class Settings:
    """How every task of one batch runs and what it writes."""

    out: str  # the batch's output folder (shared storage on a cluster)
    run_id: str  # this invocation: tells a retry of a task from a leftover of an earlier run
    config: Config
    events: str = "jsonl"  # "jsonl" or "csv"
    output_video: bool = False
    plot: bool = True  # timeline.png where matplotlib is installed (~0.25 s an input)
    threads: int | None = None  # OpenCV threads in a worker (its CPUs); None: leave OpenCV's default


@dataclass(frozen=True)
class ModelFile:
    """The model as it travels to a worker: a shipped model by name (every worker has it in its own
    install), any other by path, with its bytes for a worker that lacks the file."""

    name: str | None = None  # a shipped model
    path: str | None = None
    data: bytes = b""
    sidecar: bytes = b""

    @classmethod
    def of(cls, path: Path) -> ModelFile:
        for name, file in SHIPPED.items():
            if path.resolve() == MODELS_DIR / file:
                return cls(name=name)
        return cls(None, str(path.resolve()), path.read_bytes(), path.with_suffix(".json").read_bytes())

    def local(self) -> Path:
        """A path to the model on this machine: the original where it is readable, else a copy of the bytes."""
        if self.name is not None or self.path is None:
            return resolve_model(self.name)
        original = Path(self.path)
        if original.is_file() and original.stat().st_size == len(self.data):
            return original
        digest = hashlib.sha256(self.data).hexdigest()[:16]
        copy = Path(tempfile.gettempdir()) / "fer-edge-models" / digest / original.name
        if not copy.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.with_suffix(".json").write_bytes(self.sidecar)
            staged = copy.with_name(f".{copy.name}.{os.getpid()}")
            staged.write_bytes(self.data)
            staged.replace(copy)
        return copy


# ---------------------------------------------------------------------------------------------- inputs

def is_url(spec: str) -> bool:
    return spec.startswith(STREAM_PREFIXES)


def folder_inputs(folder: Path, exclude: Path | None) -> list[str]:
    """Every video under a folder, and every folder that holds images (one input each), sorted."""
    found: list[str] = []
    for root, dirs, files in os.walk(folder.resolve()):
        here = Path(root)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (exclude is None or here / d != exclude))
        names = sorted(f for f in files if not f.startswith("."))
        found.extend(str(here / f) for f in names if Path(f).suffix.lower() in VIDEO_SUFFIXES)
        if any(Path(f).suffix.lower() in IMAGE_SUFFIXES for f in names):
            found.append(str(here))
    return found


def list_inputs(path: Path, exclude: Path | None) -> list[str]:
    """The inputs a list file names, one a line (# comments); paths relative to the list's folder.

    An entry that does not exist is kept: it fails as that input, without stopping the others.
    """
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read input list {path} ({exc})") from None
    found: list[str] = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if is_url(entry):
            found.append(entry)
            continue
        target = Path(entry).expanduser()
        target = target if target.is_absolute() else path.parent / target
        try:
            found.extend(expand(str(target), exclude, nested=True))
        except InputError:
            found.append(str(target))
    return found


def expand(spec: str, exclude: Path | None, nested: bool = False) -> list[str]:
    """The inputs one argument names: a URL, a video or image, a list file, a folder, or a glob pattern."""
    if is_url(spec):
        return [spec]
    path = Path(spec).expanduser()
    if path.is_dir():
        return folder_inputs(path, exclude)
    if path.is_file():
        if path.suffix.lower() in LIST_SUFFIXES and not nested:
            return list_inputs(path, exclude)
        return [str(path)]
    if GLOB_CHARS.search(spec):
        matches = sorted(glob.glob(str(path), recursive=True))
        if not matches:
            raise InputError(f"no input matches {spec}")
        return [item for match in matches for item in expand(match, exclude, nested=True)]
    raise InputError(f"input not found: {spec}")


def collect_inputs(specs: Sequence[str], exclude: Path | None = None) -> list[str]:
    """Every input the arguments name, in order, each once: absolute paths, or URLs as given."""
    seen: dict[str, None] = {}
    for spec in specs:
        for item in expand(spec, exclude):
            seen.setdefault(item if is_url(item) else str(Path(item).resolve()), None)
    return list(seen)


def base_name(source: str) -> str:
    """A folder name for an input: its file or folder name without the suffix, safe on every filesystem."""
    if is_url(source):
        tail = source.split("://", 1)[1].split("?", 1)[0].rstrip("/")
        stem = Path(tail.rsplit("/", 1)[-1]).stem or tail.split("/", 1)[0]
    else:
        path = Path(source)
        stem = path.name if path.is_dir() else path.stem
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).lstrip(".")[:80] or "input"
    return f"{name}-input" if name.lower() in RESERVED_NAMES else name


def make_tasks(sources: Sequence[str]) -> list[Task]:
    """One task per input; inputs that share a name get a short hash of their source added, so a rerun
    with the same inputs finds every input's folder again."""
    names = [base_name(source) for source in sources]
    counts: dict[str, int] = {}
    for name in names:
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    tasks = []
    for name, source in zip(names, sources):
        if counts[name.lower()] > 1:
            name = f"{name}-{hashlib.sha1(source.encode()).hexdigest()[:6]}"
        tasks.append(Task(name, source))
    return tasks


# ---------------------------------------------------------------------------------------------- one task

def partial_dir(out: Path, name: str) -> Path:
    """Where a task writes until it is finished (renamed to ``out / name`` then)."""
    return out / f".{name}.partial"


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: Any) -> None:
    """Write whole or not at all: a reader never sees half a file."""
    staged = path.with_name(f".{path.name}.tmp")
    staged.write_text(json.dumps(data, indent=2) + "\n")
    staged.replace(path)


def finished(out: Path, task: Task) -> dict | None:
    """The record of an earlier run that finished this input, if its folder holds one."""
    record = read_json(out / task.name / MARKER)
    return record if record is not None and record.get("source") == task.source else None


class Heartbeat:
    """A running task's ``worker.json``: which worker runs it, which attempt this is, frames done so far."""

    def __init__(self, path: Path, run_id: str, on_frames: Callable[[int], None] | None = None) -> None:
        self.path = path
        earlier = read_json(path)  # left by an attempt of this run whose worker died
        retry = earlier is not None and earlier.get("run_id") == run_id
        self.attempt = int(earlier.get("attempt", 1)) + 1 if retry else 1
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.run_id = run_id
        self.on_frames = on_frames
        self._written = self._told = 0.0
        self.frames = 0

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()

    def beat(self, frames: int) -> None:
        self.frames = frames
        now = time.perf_counter()
        if now - self._written >= HEARTBEAT_S:
            self._write()
        if self.on_frames is not None and now - self._told >= PROGRESS_S:
            self._told = now
            self.on_frames(frames)

    def _write(self) -> None:
        self._written = time.perf_counter()
        write_json(self.path, {"run_id": self.run_id, "attempt": self.attempt, "worker": self.worker,
                               "frames": self.frames})


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its error texts


def one_line(exc: BaseException) -> str:
    """An error as one line: the project's own errors say what is wrong; others get their type."""
    plain = ANSI_ESCAPE.sub("", str(exc)).strip()
    text = plain.splitlines()[0] if plain else ""
    own = isinstance(exc, (ValueError, OSError, RuntimeError)) and text
    return text if own else f"{type(exc).__name__}: {text}".rstrip(": ")


def analyse(task: Task, settings: Settings, stages: Stages, folder: Path, heartbeat: Heartbeat) -> dict[str, Any]:
    """Run one input through the stages into ``folder``: events, summary, annotated video; what it found.

    Its outputs are the CLI's sinks, built by the same ``make_sinks`` (--events, --summary, --output).
    """
    config = settings.config
    source = open_source(task.source, config.capture)
    summaries: list[dict[str, Any]] = []
    try:
        sinks = make_sinks(task_outputs(settings, folder, source.still), config, stages.labels, task.source,
                           report=summaries.append, say=log.info, plot=settings.plot)
    except BaseException:
        source.close()
        raise
    runner = Runner(source, config, stages=stages)
    renderer = Renderer(config.render) if settings.output_video else None
    faces = 0
    try:
        for sink in sinks:
            sink.open(source, paced=False)
        for frame, result in runner:
            if renderer is not None:
                renderer.render(frame, result)
            for sink in sinks:
                sink.write(frame, result)
            faces += len(result.faces)
            heartbeat.beat(runner.frames_done)
    except BaseException:  # a failed or stopped task leaves nothing (run_task removes its folder): release the
        if runner.source is None:  # files, finish no summary; a sink failed to open before the runner began
            source.close()
        for sink in sinks:
            if not isinstance(sink, SummarySink):  # the one sink that writes (and makes its folder) at close
                with contextlib.suppress(Exception):
                    sink.close()
        raise
    close_all(sinks)
    summary = summaries[0]
    tracks = [t for t in summary["tracks"] if t["track_id"] >= 0]
    label_frames: dict[str, int] = {}
    for track in summary["tracks"]:
        for label, share in track["share"].items():
            if share:
                label_frames[label] = label_frames.get(label, 0) + round(share * track["frames"])
    return {"frames": runner.frames_done, "faces": faces, "tracks": len(tracks),
            "dominant": {str(t["track_id"]): t["dominant"] for t in tracks}, "label_frames": label_frames}


def task_outputs(settings: Settings, folder: Path, still: bool) -> Outputs:
    """What a task writes into its folder: events, the summary, and the annotated video (or images) if asked."""
    video = folder / ("annotated" if still else "annotated.mp4") if settings.output_video else None
    return Outputs(events=folder / f"events.{settings.events}", summary_dir=folder, video=video,
                   headless=True, quiet=True)


def publish(partial: Path, final: Path) -> None:
    """Move a finished task's folder into place, replacing an earlier result (e.g. with --force)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        partial.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(final)


_stages: dict[tuple[Config, Path], Stages] = {}  # per worker process: models and cascades load once


def process_stages(config: Config, model: Path) -> Stages:
    key = (config, model)
    if key not in _stages:
        _stages.clear()
        _stages[key] = Stages(config, model)
    return _stages[key]


def run_task(task: Task, settings: Settings, model: ModelFile, stages: Stages | None = None,
             on_frames: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Analyse one input into ``out/<name>/`` and return its record; a failure is recorded, never raised.

    Everything is written to a partial folder first, the marker last, then the folder is renamed:
    an input whose folder has a marker is complete. Runs in a Ray worker or inline.
    """
    started = time.perf_counter()
    out = Path(settings.out)
    partial = partial_dir(out, task.name)
    heartbeat = Heartbeat(partial / HEARTBEAT, settings.run_id, on_frames)
    record: dict[str, Any] = {"name": task.name, "source": task.source, "status": "failed",
                              "attempts": heartbeat.attempt, "worker": heartbeat.worker, "started": now(precise=True)}
    try:
        shutil.rmtree(partial, ignore_errors=True)
        heartbeat.start()
        threads = settings.config.detector.threads or settings.threads  # the config's, else the task's CPUs
        if threads:  # else OpenCV's default, one per core (inline)
            import cv2

            cv2.setNumThreads(threads)
        stages = stages or process_stages(settings.config, model.local())
        begun, cpu_begun = time.perf_counter(), time.process_time()  # after the model and cascades are loaded
        record.update(analyse(task, settings, stages, partial, heartbeat))
        seconds = time.perf_counter() - begun
        record.update(status="ok", seconds=round(seconds, 3), fps=round(record["frames"] / seconds, 1),
                      cpu_s=round(time.process_time() - cpu_begun, 3), setup_s=round(begun - started, 3))
        (partial / HEARTBEAT).unlink()
        write_json(partial / MARKER, record)
        publish(partial, out / task.name)
    except Exception as exc:  # any failure of one input is that input's result, not the batch's end
        log.debug("%s failed", task.source, exc_info=True)
        shutil.rmtree(partial, ignore_errors=True)
        record.update(error=one_line(exc), seconds=round(time.perf_counter() - started, 3))
    except BaseException:  # Ctrl-C (inline) or a cancelled Ray task: leave nothing half-written
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return record


# ---------------------------------------------------------------------------------------------- progress

def terminal_sized() -> bool:
    """Whether stderr's terminal says how large it is (a pseudo-terminal nobody sized says 0 x 0)."""
    try:
        return min(os.get_terminal_size(sys.stderr.fileno())) > 0
    except (OSError, ValueError):
        return False


class Progress:
    """One bar for the batch (inputs done / total, frames/s over every worker, ETA) and a line per input."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.quiet = quiet
        self.done = 0
        self.frames_finished = 0  # frames of the inputs finished in this run
        self.running: dict[str, int] = {}  # frames done so far by the inputs still running
        self.started = time.perf_counter()
        self.bar = None
        if not quiet and sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None:
            from tqdm import tqdm

            size = {"dynamic_ncols": True} if terminal_sized() else {"ncols": 80, "nrows": 24}  # tqdm draws nothing on 0 x 0
            self.bar = tqdm(total=total, unit="input", file=sys.stderr, smoothing=0.1, **size)

    def frames(self, name: str, frames: int) -> None:
        self.running[name] = frames
        self._refresh()

    def finished(self, record: dict[str, Any]) -> None:
        self.done += 1
        self.running.pop(record["name"], None)
        if record["status"] == "ok":
            self.frames_finished += record["frames"]
        self.say(f"[{self.done}/{self.total}] {input_line(record)}")
        if self.bar is not None:
            self.bar.update(1)
        self._refresh()

    def say(self, line: str) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def _refresh(self) -> None:
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self.started
        frames = self.frames_finished + sum(self.running.values())
        self.bar.set_postfix_str(f"{frames / elapsed if elapsed > 0 else 0:.0f} frames/s", refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def input_line(record: dict[str, Any]) -> str:
    """What one input came to, in a line."""
    name = record["name"]
    if record["status"] == "failed":
        return f"{name}: failed: {record.get('error', '')}"
    if record["status"] == "not run":
        return f"{name}: not run"
    tracks = record.get("dominant") or {}
    found = ", ".join(f"#{i} {label}" for i, label in tracks.items()) or plural(record.get("faces", 0), "face")
    retried = f" (attempt {record['attempts']}: its first worker died)" if record.get("attempts", 1) > 1 else ""
    return (f"{name}: {record['frames']} frames in {record['seconds']:.1f} s ({record['fps']:.0f} frames/s); "
            f"{found}{retried}")


# ---------------------------------------------------------------------------------------------- runners

def not_run(task: Task) -> dict[str, Any]:
    return {"name": task.name, "source": task.source, "status": "not run"}


def run_inline(tasks: list[Task], settings: Settings, model: ModelFile, stages: Stages,
               progress: Progress) -> Iterator[dict[str, Any]]:
    """Every task in this process, one after another (``--workers 1``)."""
    for task in tasks:
        yield run_task(task, settings, model, stages, lambda frames, name=task.name: progress.frames(name, frames))


@contextlib.contextmanager
def join_deadline(seconds: float) -> Iterator[None]:
    """Raise JoinTimeout in the block once ``seconds`` have passed (SIGALRM: on the main thread only; Ray's
    blocking calls take it when they next return to Python, within ~40 s)."""
    def expire(signum: int, frame: Any) -> None:
        raise JoinTimeout()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class RayBatch:
    """Tasks on Ray: a local instance started here (and shut down at the end), or an existing cluster."""

    def __init__(self, address: str, workers: int | None, cpus: float, quiet: bool) -> None:
        import ray

        self.ray = ray
        self.local = address == "auto"
        self.workers = workers
        self.cpus = cpus
        started = time.perf_counter()
        options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": not quiet}
        if self.local:  # a cluster keeps its own settings
            options.update(include_dashboard=False, num_cpus=max(1, int(round(workers * cpus))) if workers else None)
            # A throwaway instance with no dashboard: nobody reads its metrics or its usage report, and their
            # collection takes CPU from the tasks on the same cores (RAY_USAGE_STATS_ENABLED=1 still turns it on).
            options["_system_config"] = LOCAL_SYSTEM_CONFIG
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if self.local:
            ray.init(address="local", **options)
        else:
            self.join(address, options)
        self.startup_s = time.perf_counter() - started
        self.cluster_cpus = float(ray.cluster_resources().get("CPU", 1.0))

    def join(self, address: str, options: dict[str, Any]) -> None:
        """ray.init on a cluster, bounded in time; Ray's own lines about failed attempts are shown only if it
        joins in the end (a failure is our one line, their lines at --log-level DEBUG)."""
        ray = self.ray
        with held_stderr() as held:
            try:
                with join_deadline(JOIN_TIMEOUT_S):
                    ray.init(address=address, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                failure = one_line(exc)
            except JoinTimeout:
                ray.shutdown()
                failure = (f"no answer from its GCS within {JOIN_TIMEOUT_S:g} s: is it the head node's address, "
                           "and its port open from here?")
            else:
                failure = None
        if failure is None:
            sys.stderr.write("".join(line + "\n" for line in held))
            return
        for line in held:
            log.debug("ray: %s", line)
        raise InputError(f"cannot join the Ray cluster at {address} ({failure})")

    @property
    def parallelism(self) -> int:
        """How many tasks run at once: --workers, else as many as the cluster's CPUs hold."""
        return self.workers or max(1, int(self.cluster_cpus // self.cpus))

    @property
    def description(self) -> str:
        where = "local Ray instance" if self.local else "Ray cluster"
        return f"{where} with {self.cluster_cpus:g} CPUs, {self.cpus:g} per task"

    def run(self, tasks: list[Task], settings: Settings, model: ModelFile,
            progress: Progress) -> Iterator[dict[str, Any]]:
        """Records as tasks finish; at most ``workers`` tasks in flight. Stopping the iteration cancels the rest."""
        ray = self.ray
        remote = ray.remote(run_task)
        options = {"num_cpus": self.cpus, "max_retries": MAX_RETRIES, "retry_exceptions": False}
        if self.local:  # task events feed the dashboard and the state API, which a local instance's user never sees
            options["enable_task_events"] = False
        model_ref = ray.put(model)  # one copy in the object store for every task
        pending = deque(tasks)
        running: dict[Any, Task] = {}
        window = self.workers or len(tasks)
        out = Path(settings.out)
        try:
            while pending or running:
                while pending and len(running) < window:
                    task = pending.popleft()
                    running[remote.options(name=f"edge.batch:{task.name}", **options).remote(task, settings, model_ref)] = task
                done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
                for ref in done:
                    task = running.pop(ref)
                    yield self.result(ref, task, out)
                for task in running.values():
                    beat = read_json(partial_dir(out, task.name) / HEARTBEAT)
                    if beat is not None and beat.get("run_id") == settings.run_id:
                        progress.frames(task.name, int(beat.get("frames", 0)))
        finally:
            for ref in running:
                ray.cancel(ref, force=True)
            if running:  # the workers are killed a moment later, and until then still write their partial folders
                with contextlib.suppress(Exception):
                    ray.wait(list(running), num_returns=len(running), timeout=CANCEL_WAIT_S)
            for task in running.values():
                shutil.rmtree(partial_dir(out, task.name), ignore_errors=True)

    def result(self, ref: Any, task: Task, out: Path) -> dict[str, Any]:
        """A task's record; a task whose worker died on every attempt, or could not run it, is reported as failed."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            shutil.rmtree(partial_dir(out, task.name), ignore_errors=True)
            record = {"name": task.name, "source": task.source, "status": "failed"}
            if isinstance(exc, (self.ray.exceptions.WorkerCrashedError, self.ray.exceptions.OutOfMemoryError)):
                why = f"its worker process died on all {MAX_RETRIES + 1} attempts (killed, or out of memory)"
                record["attempts"] = MAX_RETRIES + 1
            elif "No module named 'edge'" in str(exc):
                why = f"fer-edge is not installed where the Ray worker runs: {INSTALL_HINT} on every node"
            else:
                why = one_line(exc)
            return {**record, "error": why}

    def close(self) -> None:
        self.ray.shutdown()  # a local instance's processes end with it; a cluster keeps running


# ---------------------------------------------------------------------------------------------- order

def estimated_seconds(task: Task, config: Config, stages: Stages) -> float:
    """The CPU seconds ``task`` would take: its frame count times the CPU time of a few of its frames here.

    CPU time of this thread, not wall time: the probe runs while Ray starts on the same cores, and
    wall times would say more of what Ray was doing then than of the input. An input of unknown
    length (a stream) counts as endless, one that cannot be read as nothing: its task fails at once.
    """
    try:
        source = open_source(task.source, config.capture)
    except Exception:
        return 0.0
    try:
        if not source.frame_count:
            return math.inf
        frames = iter(Runner(source, config, stages=stages, track=False))
        for _ in itertools.islice(frames, PROBE_SKIP):
            pass
        begun = time.thread_time()
        timed = sum(1 for _ in itertools.islice(frames, PROBE_FRAMES))
        elapsed = time.thread_time() - begun
        frames.close()
    except Exception:
        return 0.0
    finally:
        source.close()
    return source.frame_count * elapsed / timed if timed else 0.0


class CostProbe(threading.Thread):
    """Estimates every input's cost on a thread of the driver while Ray starts (which takes seconds anyway)."""

    def __init__(self, tasks: list[Task], config: Config, stages: Stages) -> None:
        super().__init__(name="edge.batch.probe", daemon=True)
        self.tasks, self.config, self.stages = tasks, config, stages
        self.estimates: dict[str, float] = {}
        self.stopping = threading.Event()

    def run(self) -> None:
        import cv2

        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # all of a frame's CPU time on this thread, where thread_time sees it, as in a task
        try:
            deadline = time.perf_counter() + PROBE_BUDGET_S
            for task in self.tasks:
                if self.stopping.is_set() or time.perf_counter() > deadline:
                    return
                self.estimates[task.name] = estimated_seconds(task, self.config, self.stages)
        finally:
            cv2.setNumThreads(threads)

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def longest_first(tasks: list[Task], estimates: dict[str, float]) -> list[Task] | None:
    """The tasks, costliest first, so that no long input starts last and runs alone; None unless all were estimated."""
    if any(task.name not in estimates for task in tasks):
        return None
    return sorted(tasks, key=lambda task: -estimates[task.name])  # stable: equal estimates keep their order


# ---------------------------------------------------------------------------------------------- report

CSV_FIELDS = ("name", "source", "status", "frames", "seconds", "fps", "faces", "tracks", "dominant", "attempts",
              "error")


def combined(records: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """Totals over every input, and the emotions over every track of every input."""
    analysed = [r for r in records if r["status"] in ("ok", "skipped")]
    statuses = ("ok", "skipped", "failed", "not run")
    counts = {status: sum(r["status"] == status for r in records) for status in statuses}
    new_frames = sum(r["frames"] for r in records if r["status"] == "ok")
    label_frames: dict[str, int] = {}
    dominant: dict[str, int] = {}
    for record in analysed:
        for label, n in record.get("label_frames", {}).items():
            label_frames[label] = label_frames.get(label, 0) + n
        for label in record.get("dominant", {}).values():
            dominant[label] = dominant.get(label, 0) + 1
    face_frames = sum(label_frames.values())
    return {
        "inputs": len(records), **{status.replace(" ", "_"): n for status, n in counts.items()},
        "frames": sum(r["frames"] for r in analysed), "faces": sum(r.get("faces", 0) for r in analysed),
        "tracks": sum(r.get("tracks", 0) for r in analysed),
        "frames_this_run": new_frames, "wall_s": round(wall_s, 3),
        "fps_this_run": round(new_frames / wall_s, 1) if wall_s > 0 else 0.0,
        "dominant_tracks": dict(sorted(dominant.items(), key=lambda kv: -kv[1])),
        "label_share": {label: round(n / face_frames, 4)
                        for label, n in sorted(label_frames.items(), key=lambda kv: -kv[1])} if face_frames else {},
    }


def write_report(out: Path, records: list[dict[str, Any]], meta: dict[str, Any], wall_s: float) -> dict[str, Any]:
    """batch.json (every input's record, and the combined summary) and batch.csv (one row per input)."""
    total = combined(records, wall_s)
    write_json(out / "batch.json", {**meta, "combined": total, "inputs": records})
    staged = out / ".batch.csv.tmp"
    with staged.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_FIELDS)
        for r in records:
            dominant = "; ".join(f"#{i} {label}" for i, label in r.get("dominant", {}).items())
            writer.writerow([r["name"], r["source"], r["status"], r.get("frames", ""), r.get("seconds", ""),
                             r.get("fps", ""), r.get("faces", ""), r.get("tracks", ""), dominant,
                             r.get("attempts", ""), r.get("error", "")])
    staged.replace(out / "batch.csv")
    return total


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def final_line(total: dict[str, Any], out: Path) -> str:
    parts = [f"{total['ok']} done"]
    if total["skipped"]:
        parts.append(f"{total['skipped']} finished earlier")
    if total["failed"]:
        parts.append(f"{total['failed']} failed")
    if total["not_run"]:
        parts.append(f"{total['not_run']} not run")
    shares = ", ".join(f"{label} {share:.0%}" for label, share in list(total["label_share"].items())[:4])
    return (f"{total['inputs']} inputs: {', '.join(parts)}; {total['frames_this_run']} frames in "
            f"{total['wall_s']:.1f} s ({total['fps_this_run']:.1f} frames/s); {plural(total['tracks'], 'track')}"
            + (f" ({shares} of face time)" if shares else "") + f"; wrote {out / 'batch.json'}, {out / 'batch.csv'}")


# ---------------------------------------------------------------------------------------------- command line

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m edge.batch",
        description="Analyse many videos and image folders: one task per input, on Ray or inline; "
                    "rerun the same command to resume.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="video, image, folder (its videos, and each folder of images), glob pattern, URL, "
                             "or a .txt file listing one of those a line")
    parser.add_argument("--out", type=Path, required=True, help="folder for the results: OUT/<input>/, batch.json")
    parser.add_argument("--events", choices=("jsonl", "csv"), default="jsonl", help="events format (default jsonl)")
    parser.add_argument("--output-video", action="store_true", help="also write each input's annotated video")
    parser.add_argument("--no-plot", action="store_true",
                        help="no timeline.png (summary JSON and CSV only; saves ~0.25 s an input)")
    parser.add_argument("--ray", metavar="auto|ADDRESS",
                        help="auto: start a local Ray instance (the default where Ray is installed); "
                             "ADDRESS: join that cluster (e.g. ray://head:10001, or head:6379 on a node)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="at most N inputs at once; 1 without --ray runs inline, without Ray")
    parser.add_argument("--num-cpus", type=float, default=1.0, metavar="C",
                        help="CPUs Ray reserves for each task (default 1: one input per core)")
    parser.add_argument("--force", action="store_true", help="redo inputs an earlier run finished")
    parser.add_argument("--config", type=Path, help="TOML config (see config.toml)")
    parser.add_argument("--model", type=Path, help="TFLite model with its .json sidecar (default: shipped model)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar and no line per input")
    parser.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be >= 1, got {args.workers}")
    if args.num_cpus <= 0:
        parser.error(f"--num-cpus must be > 0, got {args.num_cpus:g}")
    return args


def ray_address(args: argparse.Namespace) -> str | None:
    """Where the tasks run: None inline, else 'auto' (a local instance) or a cluster's address."""
    if args.ray is None and args.workers == 1:
        return None
    try:
        import ray  # noqa: F401
    except ImportError:
        raise InputError(f"batch runs on Ray, which is not installed: {INSTALL_HINT} "
                         "(or --workers 1 to run inline without it)") from None
    address = args.ray or "auto"
    if address != "auto":
        check_reachable(address)
    return address


def check_reachable(address: str) -> None:
    """Fail fast where nothing listens at a cluster's address: ray.init would retry it for minutes."""
    match = ADDRESS.fullmatch(address)
    if match is None or (match["scheme"] or "") not in DEFAULT_PORTS:
        raise InputError(f"not a Ray cluster address: {address} (expected HOST:PORT or ray://HOST:PORT)")
    host, port = match["v6"] or match["host"], int(match["port"] or DEFAULT_PORTS[match["scheme"] or ""])
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except socket.gaierror:
        raise InputError(f"cannot join the Ray cluster at {address} (unknown host {host})") from None
    except OSError as exc:
        reason = exc.strerror or f"no answer within {CONNECT_TIMEOUT_S:g} s"
        raise InputError(f"cannot join the Ray cluster at {address} (nothing answers at {host}:{port}: {reason})"
                         ) from None


def prepare_out(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output folder {out} ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise OutputError(f"output folder is not writable: {out}")
    return out.resolve()


STOPPED = {"interrupt": "interrupted", "terminate": "terminated", "hangup": "hung up"}  # the final line's word
CAUGHT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # SIGINT is Python's KeyboardInterrupt already


class StopSignals:
    """While installed, SIGTERM and SIGHUP raise ``Stopped``; the last one is remembered, because Ray's
    ``ray.wait`` turns any exception its own signal check meets into a plain KeyboardInterrupt."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in CAUGHT_SIGNALS:
            self.previous.setdefault(signum, signal.signal(signum, self.handle))

    def handle(self, signum: int, frame: object) -> None:
        self.received = REASONS[signal.Signals(signum)]
        raise Stopped(self.received)

    def stop(self, interrupt: KeyboardInterrupt) -> KeyboardInterrupt:
        """What stopped the batch: the signal received, whatever exception brought it here."""
        return interrupt if isinstance(interrupt, Stopped) or self.received is None else Stopped(self.received)

    def restore(self) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


@dataclass
class Plan:
    """A batch checked before anything runs: where it runs, what each task writes, its inputs and model."""

    address: str | None  # None: inline
    out: Path
    tasks: list[Task]
    settings: Settings
    stages: Stages  # built here: a bad model or detector setting fails once, not in every task
    model: ModelFile


def make_plan(args: argparse.Namespace) -> Plan:
    """Check every argument; the user errors (exit 2) are raised here, before any work."""
    address = ray_address(args)
    config = load_config(args.config)
    if config.capture.live == "auto":  # a URL too is read whole, every frame, at the source's timestamps
        config = override(config, "capture", live="no")
    out = prepare_out(args.out)
    tasks = make_tasks(collect_inputs(args.inputs, exclude=out))
    if not tasks:
        raise InputError(f"no videos or images in {' '.join(args.inputs)}")
    path = model_path(config, args.model)
    settings = Settings(str(out), uuid.uuid4().hex, config, args.events, args.output_video, not args.no_plot)
    return Plan(address, out, tasks, settings, Stages(config, path), ModelFile.of(path))


def on_ray(settings: Settings, cpus: float) -> Settings:
    """A Ray task's OpenCV and x264 threads: the CPUs Ray reserves for it (unless the config says)."""
    threads = max(1, int(cpus))
    config = settings.config
    if config.render.encoder_threads == 0:
        config = override(config, "render", encoder_threads=threads)
    return dataclasses.replace(settings, config=config, threads=threads)


def ordered(todo: list[Task], probe: CostProbe, parallelism: int, meta: dict[str, Any]) -> list[Task]:
    """The inputs longest first where more than can run at once and the probe estimated them all."""
    probe.join()  # within its budget
    longest = longest_first(todo, probe.estimates) if len(todo) > parallelism else None
    meta["order"] = "longest first" if longest is not None else "as given"
    meta["estimated_s"] = {name: round(s, 2) if math.isfinite(s) else None for name, s in probe.estimates.items()}
    return longest or todo


def run_todo(plan: Plan, todo: list[Task], args: argparse.Namespace, progress: Progress, meta: dict[str, Any],
             records: dict[str, dict[str, Any]]) -> KeyboardInterrupt | None:
    """Run the inputs not finished yet, inline or on Ray, into ``records``; the stop that ended it early, if any.

    Whatever happens, nothing is left running: Ray tasks are cancelled and a local instance stopped.
    """
    signals = StopSignals()
    signals.install()
    batch: RayBatch | None = None
    probe: CostProbe | None = None
    results: Generator[dict[str, Any], None, None] = (record for record in ())
    try:
        if plan.address is None or not todo:
            meta["mode"] = "inline"
            results = run_inline(todo, plan.settings, plan.model, plan.stages, progress)
        else:
            if len(todo) > 1 and args.workers != 1:  # the order matters where inputs wait for a worker
                probe = CostProbe(todo, plan.settings.config, plan.stages)
                probe.start()
            batch = RayBatch(plan.address, args.workers, args.num_cpus, args.quiet)
            signals.install()  # again: ray.init puts its own on SIGTERM (a stack dump and exit 1, no report)
            meta.update(mode=batch.description, ray_startup_s=round(batch.startup_s, 3))
            if probe is not None:
                todo = ordered(todo, probe, batch.parallelism, meta)
            progress.say(f"running {len(todo)} inputs on a {batch.description}")
            results = batch.run(todo, on_ray(plan.settings, args.num_cpus), plan.model, progress)
        for record in results:
            records[record["name"]] = record
            progress.finished(record)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: finished inputs stay; the report says what is left
        return signals.stop(exc)
    finally:
        results.close()  # a Ray batch cancels what is still running
        progress.close()
        if probe is not None:
            probe.stop()
        if batch is not None:
            batch.close()
        signals.restore()
    return None


def reason(stop: KeyboardInterrupt) -> str:
    return stop.reason if isinstance(stop, Stopped) else "interrupt"


def now(precise: bool = False) -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="milliseconds" if precise else "seconds")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    meta: dict[str, Any] = {"command": " ".join(["python -m edge.batch", *(argv or sys.argv[1:])]), "started": now()}
    try:
        plan = make_plan(args)
        earlier = {task.name: finished(plan.out, task) for task in plan.tasks} if not args.force else {}
        records = {name: {**record, "status": "skipped"} for name, record in earlier.items() if record is not None}
        todo = [task for task in plan.tasks if task.name not in records]
        progress = Progress(len(todo), args.quiet)
        if records:
            progress.say(f"{len(records)} of {len(plan.tasks)} inputs finished earlier: skipped (--force redoes them)")
        stopped = run_todo(plan, todo, args, progress, meta, records)
    except (InputError, ConfigError, ModelError, OutputError, DetectorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    meta["finished"] = now()
    ordered = [records.get(task.name) or not_run(task) for task in plan.tasks]
    total = write_report(plan.out, ordered, meta, time.perf_counter() - started)
    with contextlib.suppress(OSError):  # stderr may be gone (the terminal closed: SIGHUP); the report is written
        print(final_line(total, plan.out), file=sys.stderr)
        if stopped is not None:
            print(f"{STOPPED[reason(stopped)]}: {total['not_run']} inputs not run; run the same command again to "
                  "resume (finished inputs are skipped)", file=sys.stderr)
    if stopped is not None:
        return EXIT_CODES[reason(stopped)]
    return EXIT_FAILED if total["failed"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
