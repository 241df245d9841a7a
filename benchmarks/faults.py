"""Fault suite: the CLI driven through bad inputs and faults; per case its exit code, stderr, seconds to exit,
orphans, shared memory left, and whether the outputs hold every frame the run reports.

    python benchmarks/faults.py                         # every case, the table on stdout
    python benchmarks/faults.py --markdown --out table.md --wait-quiet 60
    python benchmarks/faults.py --only kill-detector stop-detector

tests/test_faults.py runs a fast subset of the same cases (with slack on the seconds).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python benchmarks/faults.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.media import bench_video  # noqa: E402
from benchmarks.procmon import wait_until_quiet  # noqa: E402
from edge.version import cpu_name  # noqa: E402
from edge.video import decodable_frames  # noqa: E402

DATA = REPO_ROOT / "tests" / "data"
SHM = Path("/dev/shm")
STARTUP_TIMEOUT_S = 90.0  # the first frame may be slow on a loaded machine
RUN_TIMEOUT_S = 120.0  # no case may take longer than this: a hang is a failure, not a wait
ORPHAN_WAIT_S = 3.0  # after the exit, processes of the run get this long to be gone
WATCHDOG_S = 2.0  # the watchdog's timeout in the stall cases
LONG_LOOP = 15  # the sample clip this many times: long enough to interrupt (1080 frames)
CRASH_LOSS_FRAMES = 45  # a killed run's fragmented MP4 plays up to its last whole fragment (a second: 30 frames)
ALLOWED_LINES = ("web view on ", "WARNING edge.capture: ")  # besides the one line: --serve's address, a damage warning


@dataclass(frozen=True)
class Fault:
    """What is done to a running CLI, and when: after ``after_frames`` event lines, or ``after_s`` seconds."""

    action: str  # "signal" (to the main process), "group" (to its process group), "kill" / "stop" (a worker)
    signum: int = 0
    worker: str = ""  # "detector" or "classifier"
    after_frames: int | None = None
    after_s: float | None = None
    after_workers: bool = False  # or as soon as both workers exist (they are importing then)
    then: int = 0  # a signal to the main process 1 s after the action ("stop", then SIGTERM)

    def describe(self) -> str:
        if self.action in ("signal", "group"):
            what = signal.Signals(self.signum).name + (" to the group" if self.action == "group" else "")
        else:
            what = f"kill -9 {self.worker}" if self.action == "kill" else f"SIGSTOP {self.worker}"
        when = (f"after {self.after_frames} frames" if self.after_frames is not None else
                "while the workers import" if self.after_workers else f"at {self.after_s} s")
        then = f", then {signal.Signals(self.then).name}" if self.then else ""
        return f"{what} {when}{then}"


@dataclass(frozen=True)
class Case:
    """One run of `python -m edge.run --headless ...` and what it must do."""

    name: str
    args: tuple[str, ...]  # placeholders: {clip} {long} {work} {fifo} {stream} {damaged} {disk} {images}
    expect: int  # exit code
    line: str  # the one line on stderr contains this ("" for none: a SIGKILL)
    fault: Fault | None = None
    outputs: bool = False  # add --output {work}/out.mp4 --events {work}/events.jsonl and check them
    within_s: float = 2.0  # seconds from the fault (or, without one, from the start) to the exit
    needs: str = ""  # "tmpfs" (a small file system to fill), "stream" (a stream that stalls)
    source: str = ""  # the input file that must not change (a placeholder), if any
    warning: str = ""  # a warning line that must be there too
    sweep: bool = False  # rings left behind are freed by the next run (which is started to see it)
    crash: bool = False  # the main process is killed: the video may lack its last fragment (CRASH_LOSS_FRAMES)

    def describe(self) -> str:
        return self.fault.describe() if self.fault else " ".join(self.args)


@dataclass
class Outcome:
    """What one case did."""

    case: Case
    code: int | None = None
    lines: list[str] = field(default_factory=list)
    seconds: float = float("nan")  # from the fault (or the start) to the exit
    orphans: list[str] = field(default_factory=list)
    shm_left: list[str] = field(default_factory=list)
    video_frames: int | None = None
    event_lines: int | None = None
    input_intact: bool | None = None
    swept: int | None = None  # rings the run left (a kill of every process), before the next run freed them
    skipped: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.skipped and not self.problems


def watchdog_config(work: Path) -> str:
    path = work / "watchdog.toml"
    path.write_text(f"[pipeline]\nwatchdog_s = {WATCHDOG_S}\n")
    return str(path)


def cases() -> list[Case]:
    """Every case of the suite, in the table's order."""
    bad = [  # bad input: exit 2, one line, quickly (the worker start-up included for the model's errors)
        Case("missing-source", ("--source", "missing.mp4"), 2, "source not found", within_s=10),
        Case("not-a-video", ("--source", str(DATA / "README.md")), 2, "not a decodable video", within_s=10),
        Case("camera-97", ("--source", "97"), 2, "camera 97 could not be opened", within_s=10),
        Case("camera-superscript", ("--source", "\u00b2"), 2, "source not found", within_s=10),
        Case("camera-huge", ("--source", "99999999999999999999"), 2, "camera index out of range", within_s=10),
        Case("stream-refused", ("--source", "rtsp://127.0.0.1:9/stream"), 2, "stream could not be opened",
             within_s=10),
        Case("serve-superscript", ("--source", "{clip}", "--serve", "127.0.0.1:\u00b2"), 2, "--serve must be",
             within_s=10),
        Case("config-unreadable", ("--source", "{clip}", "--config", "/proc/self/mem"), 2,
             "config file cannot be read", within_s=10),
        Case("config-bad-value", ("--source", "{clip}", "--config", "{work}/bad.toml"), 2,
             "detector.haar.scale_factor must be > 1.0", within_s=10),
        Case("model-corrupt", ("--source", "{clip}", "--model", "{work}/corrupt.tflite"), 2,
             "not a loadable TFLite model", within_s=30),
        Case("output-is-source", ("--source", "{clip}", "--output", "{clip}"), 2, "would overwrite the source",
             within_s=10, source="{clip}"),
        Case("events-is-source", ("--source", "{clip}", "--events", "{clip}"), 2, "would overwrite the source",
             within_s=10, source="{clip}"),
        Case("output-symlink-to-source", ("--source", "{clip}", "--output", "{work}/link.mp4"), 2,
             "would overwrite the source", within_s=10, source="{clip}"),
        Case("events-hardlink-to-source", ("--source", "{clip}", "--events", "{work}/hard.mp4"), 2,
             "would overwrite the source", within_s=10, source="{clip}"),
        Case("output-is-config", ("--source", "{clip}", "--config", "{work}/ok.toml", "--events", "{work}/./ok.toml"),
             2, "would overwrite the config", within_s=10),
        Case("output-into-image-folder", ("--source", "{images}", "--output", "{images}"), 2,
             "would overwrite the source", within_s=10, source="{images}/single_face.jpg"),
        Case("events-is-folder", ("--source", "{clip}", "--events", "{work}"), 2, "is a folder", within_s=10),
        Case("events-in-proc", ("--source", "{clip}", "--events", "/proc/e.jsonl"), 2, "cannot write events file",
             within_s=10),
    ]
    write_errors = [  # an output that fails while running: exit 3 naming the file, everything else closed in order
        Case("events-dev-full", ("--source", "{long}", "--events", "/dev/full"), 3, "cannot write /dev/full",
             within_s=30, source="{long}"),
        Case("disk-full", ("--source", "{long}", "--output", "{disk}/out.mp4", "--events", "{disk}/events.jsonl"), 3,
             "No space left on device", within_s=60, needs="tmpfs", source="{long}"),
        Case("disk-full-video", ("--source", "{long}", "--output", "{disk}/out.mp4", "--events", "{work}/d.jsonl"), 3,
             "out.mp4: No space left on device", within_s=60, needs="tmpfs"),
    ]
    workers = [  # a worker dies or stalls mid-run
        Case("kill-detector", ("--source", "{long}",), 3, "detector process died", Fault("kill", worker="detector",
             after_frames=20), outputs=True, source="{long}"),
        Case("kill-classifier", ("--source", "{long}",), 3, "classifier process died",
             Fault("kill", worker="classifier", after_frames=20), outputs=True),
        Case("stop-detector", ("--source", "{long}", "--config", "{watchdog}"), 3, "detector stalled for 2 s",
             Fault("stop", worker="detector", after_frames=20), outputs=True, within_s=WATCHDOG_S + 2),
        Case("stop-classifier", ("--source", "{long}", "--config", "{watchdog}"), 3, "classifier stalled for 2 s",
             Fault("stop", worker="classifier", after_frames=20), outputs=True, within_s=WATCHDOG_S + 2),
        Case("stop-detector-then-sigterm", ("--source", "{long}",), 143, "frames in",
             Fault("stop", worker="detector", after_frames=20, then=signal.SIGTERM), outputs=True),
        Case("stop-classifier-then-sigint", ("--source", "{long}",), 130, "frames in",
             Fault("stop", worker="classifier", after_frames=20, then=signal.SIGINT), outputs=True),
    ]
    signals = []
    for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)):
        name = signal.Signals(sig).name.lower()
        signals += [
            Case(f"{name}-mid-run", ("--source", "{long}",), code, "frames in", Fault("signal", sig, after_frames=20),
                 outputs=True, source="{long}"),
            Case(f"{name}-group-mid-run", ("--source", "{long}",), code, "frames in",
                 Fault("group", sig, after_frames=20), outputs=True),
            Case(f"{name}-importing", ("--source", "{long}",), code, "stopped before the run began",
                 Fault("group", sig, after_s=0.3), outputs=True),
            Case(f"{name}-workers-starting", ("--source", "{long}",), code, "0 frames in",
                 Fault("group", sig, after_workers=True), outputs=True),
            Case(f"{name}-fifo-no-writer", ("--source", "{fifo}",), code, "0 frames", Fault("signal", sig, after_s=3)),
        ]
    kills = [
        Case("kill-main", ("--source", "{long}",), -9, "", Fault("signal", signal.SIGKILL, after_frames=90),
             outputs=True, within_s=1.0, crash=True),
        Case("kill-everything", ("--source", "{long}",), -9, "", Fault("group", signal.SIGKILL, after_frames=90),
             outputs=True, within_s=1.0, sweep=True, crash=True),
    ]
    sources = [
        Case("sigint-stalled-stream", ("--source", "{stream}", "--config", "{work}/stall20.toml"), 130, "frames in",
             Fault("signal", signal.SIGINT, after_s=6), outputs=True, needs="stream"),
        Case("damaged-clip", ("--source", "{damaged}",), 0, "frames in", outputs=True, within_s=120,
             source="{damaged}", warning="could not be decoded (the file is damaged) and were skipped"),
    ]
    return bad + write_errors + workers + signals + kills + sources


QUICK = ("camera-superscript", "output-symlink-to-source", "events-dev-full", "disk-full", "kill-detector",
         "stop-detector", "stop-classifier-then-sigint", "sighup-mid-run", "sigint-group-mid-run",
         "sigint-workers-starting", "sigterm-fifo-no-writer", "sigint-stalled-stream")  # tests/test_faults.py


# --- media and helpers --------------------------------------------------------------------------------------

def damaged_copy(clip: Path, target: Path) -> Path:
    """The clip with 20 KB of its middle third overwritten: the decoder fails there and recovers later."""
    data = bytearray(clip.read_bytes())
    start = len(data) // 3
    data[start:start + 20_000] = bytes((i * 151 + 7) % 256 for i in range(20_000))
    target.write_bytes(data)
    return target


class StallingStream:
    """An MJPEG stream over HTTP on localhost that sends ``frames`` frames, then nothing, holding the connection."""

    def __init__(self, frames: int = 60) -> None:
        image = cv2.imread(str(DATA / "single_face.jpg"))
        self.jpeg = cv2.imencode(".jpg", image)[1].tobytes()
        self.frames = frames
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/stream.mjpg"
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            client.recv(4096)
            client.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n")
            for _ in range(self.frames):
                client.sendall(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(self.jpeg)
                               + self.jpeg + b"\r\n")
                time.sleep(1 / 30)
            self.closed.wait()  # stalled: connected, sending nothing

    def close(self) -> None:
        self.closed.set()
        self.server.close()


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "1m") -> Iterator[Path | None]:
    """A tmpfs of ``size`` mounted at ``folder`` (None where it cannot be mounted: not root, no permission)."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0 if shutil.which("mount") else False
    try:
        yield folder if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@dataclass
class Media:
    """Everything the cases read, made once in a work folder."""

    work: Path
    values: dict[str, str]

    @classmethod
    @contextlib.contextmanager
    def prepared(cls, work: Path) -> Iterator[Media]:
        clip = work / "clip.mp4"
        shutil.copyfile(DATA / "single_face.mp4", clip)
        long = bench_video(DATA / "single_face.mp4", LONG_LOOP, work).path
        images = work / "images"
        images.mkdir(exist_ok=True)
        for name in ("single_face.jpg", "multi_face.jpg"):
            shutil.copyfile(DATA / name, images / name)
        (work / "link.mp4").unlink(missing_ok=True)
        (work / "link.mp4").symlink_to(clip)
        (work / "hard.mp4").unlink(missing_ok=True)
        os.link(clip, work / "hard.mp4")
        (work / "bad.toml").write_text("[detector.haar]\nscale_factor = 0.9\n")
        (work / "ok.toml").write_text("")
        (work / "stall20.toml").write_text("[capture]\nstall_timeout_s = 20.0\n")
        (work / "corrupt.tflite").write_bytes(b"garbage" * 100)
        shutil.copyfile(REPO_ROOT / "edge/models/fer2013_mini_xception_int8.json", work / "corrupt.json")
        fifo = work / "fifo"
        if not fifo.exists():
            os.mkfifo(fifo)
        damaged = damaged_copy(bench_video(DATA / "single_face.mp4", 7, work).path, work / "damaged.mp4")
        stream = StallingStream()
        with small_disk(work / "disk") as disk:
            values = {"clip": str(clip), "long": str(long), "work": str(work), "fifo": str(fifo),
                      "stream": stream.url, "damaged": str(damaged), "images": str(images),
                      "disk": str(disk) if disk else "", "watchdog": watchdog_config(work)}
            try:
                yield cls(work, values)
            finally:
                stream.close()

    def fill(self, text: str) -> str:
        return text.format(**self.values)


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def event_lines(path: Path) -> int | None:
    """Lines of a JSON Lines file, None if any is not a whole JSON object."""
    lines = path.read_text().splitlines() if path.exists() else []
    try:
        return sum(isinstance(json.loads(line), dict) for line in lines)
    except json.JSONDecodeError:
        return None


def workers_of(process: psutil.Process) -> list[psutil.Process]:
    """The run's worker processes, the detector first (it is started first)."""
    children = []
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "spawn_main" in " ".join(child.cmdline()):
                children.append(child)
    return sorted(children, key=lambda child: child.pid)


def ring_segments(pid: int) -> list[str]:
    return [p.name for p in SHM.glob(f"fer_edge_{pid}_*")] if SHM.is_dir() else []


# --- running a case -----------------------------------------------------------------------------------------

def run_case(case: Case, media: Media) -> Outcome:
    """Run one case in a child process group of its own and check everything the suite checks."""
    outcome = Outcome(case)
    if case.needs == "tmpfs" and not media.values["disk"]:
        outcome.skipped = "cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)"
        return outcome
    if case.needs == "tmpfs":  # empty, whatever the last case left on it
        for path in Path(media.values["disk"]).iterdir():
            path.unlink()
    out, events = media.work / f"{case.name}.mp4", media.work / f"{case.name}.jsonl"
    for path in (out, events):
        path.unlink(missing_ok=True)
    args = [media.fill(a) for a in case.args]
    if case.outputs:
        args += ["--output", str(out), "--events", str(events)]
    watched = Path(media.fill(case.source)) if case.source else None
    before = digest(watched) if watched else None
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    process = subprocess.Popen([sys.executable, "-m", "edge.run", "--headless", *args], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    started = time.monotonic()
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    seen: dict[int, str] = {}  # every process of the run seen, by pid
    try:
        fault_at = apply_fault(case.fault, process, events, seen) if case.fault else started
        end = fault_at + RUN_TIMEOUT_S
        while process.poll() is None and time.monotonic() < end:
            note_processes(process.pid, seen)
            time.sleep(0.01)
        ended = time.monotonic()
        if process.poll() is None:
            outcome.problems.append(f"still running {RUN_TIMEOUT_S:.0f} s after the fault: killed")
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        outcome.seconds = ended - fault_at
    except AssertionError as exc:  # the run never got to the fault
        outcome.problems.append(str(exc))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    reader.join(timeout=5)
    outcome.code = process.returncode
    outcome.lines = [line.rstrip("\n") for line in stderr]
    outcome.orphans = orphans(seen)
    outcome.shm_left = ring_segments(process.pid)
    if case.sweep:
        outcome.swept = len(outcome.shm_left)
        subprocess.run([sys.executable, "-m", "edge.run", "--headless", "--source", str(DATA / "single_face.jpg")],
                       cwd=REPO_ROOT, env=env, capture_output=True, timeout=RUN_TIMEOUT_S)
        outcome.shm_left = ring_segments(process.pid)
    if case.outputs:
        outcome.video_frames = decodable_frames(out) if out.exists() else 0
        outcome.event_lines = event_lines(events)
    if watched is not None:
        outcome.input_intact = digest(watched) == before
    judge(outcome)
    return outcome


def note_processes(pid: int, seen: dict[int, str]) -> None:
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        seen.setdefault(pid, "main")
        for child in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                cmdline = " ".join(child.cmdline())
                seen.setdefault(child.pid, "resource_tracker" if "resource_tracker" in cmdline else "worker")


def apply_fault(fault: Fault, process: subprocess.Popen, events: Path, seen: dict[int, str]) -> float:
    """Wait for the fault's moment, apply it; the monotonic time it was applied."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    started = time.monotonic()
    while True:
        note_processes(process.pid, seen)
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before the fault")
        if fault.after_s is not None and time.monotonic() - started >= fault.after_s:
            break
        if fault.after_frames is not None and events.exists() and \
                events.read_text().count("\n") >= fault.after_frames:
            break
        if fault.after_workers and len(workers_of(psutil.Process(process.pid))) == 2:
            break
        if time.monotonic() > deadline:
            raise AssertionError("the run produced no frames in time for the fault")
        time.sleep(0.01)
    if fault.action == "signal":
        process.send_signal(fault.signum)
    elif fault.action == "group":
        os.killpg(process.pid, fault.signum)
    else:
        workers = workers_of(psutil.Process(process.pid))
        if len(workers) != 2:
            raise AssertionError(f"expected 2 workers, found {len(workers)}")
        worker = workers[0 if fault.worker == "detector" else 1]
        worker.send_signal(signal.SIGKILL if fault.action == "kill" else signal.SIGSTOP)
    applied = time.monotonic()
    if fault.then:
        time.sleep(1.0)
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before the second signal")
        process.send_signal(fault.then)
        applied = time.monotonic()
    return applied


def orphans(seen: dict[int, str]) -> list[str]:
    """Processes of the run still there ORPHAN_WAIT_S after it ended (a SIGSTOP'd one is woken to be seen)."""
    alive = []
    for pid in seen:
        with contextlib.suppress(psutil.Error):
            alive.append(psutil.Process(pid))
    _, left = psutil.wait_procs(alive, timeout=ORPHAN_WAIT_S)
    names = []
    for process in left:
        with contextlib.suppress(psutil.Error):
            if process.status() != psutil.STATUS_ZOMBIE:
                names.append(f"{seen[process.pid]} {process.pid}")
                process.kill()  # the suite leaves nothing behind either
    return names


def judge(outcome: Outcome) -> None:
    case, problems = outcome.case, outcome.problems
    if outcome.code != case.expect:
        problems.append(f"exit {outcome.code}, expected {case.expect}")
    if any("Traceback" in line for line in outcome.lines):
        problems.append("a traceback on stderr")
    lines = [line for line in outcome.lines if line and not line.startswith(ALLOWED_LINES)]
    if case.line and (len(lines) != 1 or case.line not in lines[0]):
        problems.append(f"stderr is not one line with {case.line!r}: {lines[:4]}")
    if not case.line and lines:
        problems.append(f"stderr is not empty: {lines[:4]}")
    if case.warning and not any(case.warning in line for line in outcome.lines):
        problems.append(f"no warning {case.warning!r}")
    if case.sweep and not outcome.swept:
        problems.append("the kill left no ring to sweep (the case shows nothing)")
    if not outcome.seconds <= case.within_s:
        problems.append(f"{outcome.seconds:.2f} s to exit, more than {case.within_s} s")
    if outcome.orphans:
        problems.append(f"left running: {', '.join(outcome.orphans)}")
    if outcome.shm_left:
        problems.append(f"left in /dev/shm: {', '.join(outcome.shm_left)}")
    if case.outputs and outcome.event_lines is None:
        problems.append("an events line is not whole JSON")
    elif case.outputs and case.crash and not (
            outcome.event_lines - CRASH_LOSS_FRAMES <= outcome.video_frames <= outcome.event_lines):
        problems.append(f"video frames {outcome.video_frames}: not the event lines {outcome.event_lines} "
                        f"less at most {CRASH_LOSS_FRAMES}")
    elif case.outputs and not case.crash and outcome.video_frames != outcome.event_lines:
        problems.append(f"video frames {outcome.video_frames} != event lines {outcome.event_lines}")
    if outcome.input_intact is False:
        problems.append("the input file changed")


# --- the table ----------------------------------------------------------------------------------------------

def cell(text: str) -> str:
    return text.replace("|", "\\|")


def table(outcomes: Sequence[Outcome]) -> str:
    rows = ["| case | fault or input | expected | exit | stderr (the one line) | s to exit | orphans | /dev/shm "
            "| video / events | input | ok |",
            "| --- | --- | --: | --: | --- | --: | --- | --- | --: | --- | --- |"]
    for o in outcomes:
        c = o.case
        if o.skipped:
            rows.append(f"| {c.name} | {cell(c.describe())} | {c.expect} | | skipped: {o.skipped} | | | | | | skip |")
            continue
        lines = [line for line in o.lines if line and not line.startswith(ALLOWED_LINES)]
        shown = cell(lines[0][:90] if lines else "")
        video = f"{o.video_frames} / {o.event_lines}" if c.outputs else ""
        intact = "" if o.input_intact is None else ("intact" if o.input_intact else "CHANGED")
        rows.append(f"| {c.name} | {cell(c.describe())} | {c.expect} | {o.code} | {shown} | {o.seconds:.2f} "
                    f"| {', '.join(o.orphans) or 'none'} | {shm_cell(o)} | {video} "
                    f"| {intact} | {'yes' if o.passed else 'NO: ' + cell('; '.join(o.problems))} |")
    return "\n".join(rows)


def shm_cell(outcome: Outcome) -> str:
    if outcome.shm_left:
        return "LEFT " + ", ".join(outcome.shm_left)
    return f"{outcome.swept} left, swept by the next run" if outcome.swept else "clean"


def machine() -> str:
    return (f"{platform.node()}: {cpu_name()}, {os.cpu_count()} cores, "
            f"{psutil.virtual_memory().total / 2**30:.0f} GB, Linux {platform.release()}, Python "
            f"{platform.python_version()}, OpenCV {cv2.__version__}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run only these cases (by name)")
    parser.add_argument("--quick", action="store_true", help="only the cases tests/test_faults.py runs")
    parser.add_argument("--markdown", action="store_true", help="a Markdown table with the command and machine")
    parser.add_argument("--out", type=Path, help="write the table here too")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for the machine's CPUs to be idle")
    args = parser.parse_args(argv)
    chosen = [c for c in cases() if (not args.only or c.name in args.only) and (not args.quick or c.name in QUICK)]
    if args.wait_quiet:
        wait_until_quiet(args.wait_quiet)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fer-faults-") as folder, Media.prepared(Path(folder)) as media:
        outcomes = []
        for case in chosen:
            outcomes.append(run_case(case, media))
            print(f"{case.name}: {'ok' if outcomes[-1].passed else outcomes[-1].skipped or outcomes[-1].problems}",
                  file=sys.stderr, flush=True)
    passed = sum(o.passed for o in outcomes)
    skipped = sum(bool(o.skipped) for o in outcomes)
    text = table(outcomes)
    if args.markdown:
        command = "python benchmarks/faults.py " + " ".join(argv if argv is not None else sys.argv[1:])
        text = (f"`{command.strip()}` on {machine()}; {datetime.date.today()}, load average {load:.1f} at the "
                f"start. {passed} of {len(outcomes)} cases pass, {skipped} skipped.\n\n" + text)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if passed + skipped == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
