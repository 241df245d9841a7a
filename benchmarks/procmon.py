"""Process monitor: CPU% and memory (PSS where the OS has it, else RSS) of a process tree, sampled on a thread."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import psutil

from benchmarks.stats import summarize

log = logging.getLogger(__name__)

MB = 1024 * 1024  # bytes
TREE_REFRESH_SAMPLES = 5  # look for new child processes every this many samples (scanning /proc is costly)
MEMORY_EVERY_SAMPLES = 3  # PSS every this many samples: the kernel walks page tables for it (~1 ms a process)


@dataclass
class ProcessTrace:
    """What was seen of one process: CPU% and memory samples, and CPU time at first and last sight."""

    pid: int
    name: str
    cpu_pct: list[float] = field(default_factory=list)  # % of one core, per sample interval
    mem_bytes: list[int] = field(default_factory=list)
    first_seen: float = 0.0  # perf_counter
    last_seen: float = 0.0
    first_cpu_s: float = 0.0  # user + system CPU seconds
    last_cpu_s: float = 0.0

    def report(self) -> dict:
        span = self.last_seen - self.first_seen
        mem = summarize([m / MB for m in self.mem_bytes])
        return {
            "pid": self.pid,
            "name": self.name,
            "samples": len(self.mem_bytes),
            "cpu_mean_pct": 100.0 * (self.last_cpu_s - self.first_cpu_s) / span if span > 0 else float("nan"),
            "cpu_peak_pct": max(self.cpu_pct, default=float("nan")),
            "mem_peak_mb": mem["max"],
            "mem_median_mb": mem["p50"],
        }


def memory_bytes(process: psutil.Process) -> tuple[int, str]:
    """Proportional set size where the OS reports it (Linux), else resident set size."""
    try:
        return int(process.memory_full_info().pss), "pss"
    except (AttributeError, psutil.AccessDenied):
        return int(process.memory_info().rss), "rss"


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def system_busy_s() -> float:
    """CPU seconds every process on the machine has used (all cores), from boot."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def default_name(process: psutil.Process, root_pid: int) -> str:
    if process.pid == root_pid:
        return "main"
    try:
        cmdline = " ".join(process.cmdline())
    except (psutil.Error, OSError):
        cmdline = ""
    if "resource_tracker" in cmdline:
        return "resource_tracker"
    return f"child {process.pid}"


class ProcessMonitor:
    """Samples a process and all its descendants every ``interval_s`` (memory every few samples) until stopped.

    Children that start later are picked up at the next sample; ``names`` maps pids to
    the names to report (e.g. the pipeline's worker names), filled in at any time.
    """

    def __init__(self, root_pid: int | None = None, interval_s: float = 0.1) -> None:
        self.root_pid = root_pid or os.getpid()
        self.interval_s = interval_s
        self.names: dict[int, str] = {}
        self.traces: dict[int, ProcessTrace] = {}
        self.total_mem_bytes: list[int] = []  # all processes together, per sample
        self.total_cpu_pct: list[float] = []
        self.memory_kind = "pss"
        self._handles: dict[int, psutil.Process] = {}
        self._tree: list[psutil.Process] = []
        self._last_refresh: float | None = None  # perf_counter of the latest look for children
        self._previous_refresh: float | None = None  # ... and of the one before
        self._samples_taken = 0
        self.overhead_cpu_s = 0.0  # CPU time the sampling itself took, in the measured process
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="procmon", daemon=True)
        self._last_sample: float | None = None
        self.started = 0.0
        self.stopped = 0.0
        self._system_busy_start = self._system_busy_stop = 0.0

    def __enter__(self) -> ProcessMonitor:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.started = time.perf_counter()
        self._system_busy_start = system_busy_s()
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample(final=True)
        self.stopped = time.perf_counter()
        self._system_busy_stop = system_busy_s()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def processes(self) -> list[psutil.Process]:
        """The root and its descendants, reusing handles so cpu_percent measures since the last sample."""
        if self._samples_taken % TREE_REFRESH_SAMPLES == 0:
            self._previous_refresh, self._last_refresh = self._last_refresh, time.perf_counter()
            try:
                root = self._handles.setdefault(self.root_pid, psutil.Process(self.root_pid))
                found = [root] + root.children(recursive=True)
            except psutil.Error:
                found = []
            self._tree = [self._handles.setdefault(p.pid, p) for p in found]
        self._samples_taken += 1
        return self._tree

    def sample(self, final: bool = False) -> None:
        cpu_start = time.thread_time()
        now = time.perf_counter()
        # CPU% over a short interval (the final sample at stop) is mostly clock-tick quantization.
        full_interval = self._last_sample is not None and now - self._last_sample >= self.interval_s / 2
        measure_memory = final or self._samples_taken % MEMORY_EVERY_SAMPLES == 0
        total_mem, total_cpu = 0, 0.0
        for process in self.processes():
            try:
                with process.oneshot():
                    cpu_pct = process.cpu_percent(interval=None)
                    cpu_s = cpu_seconds(process)
                mem, kind = memory_bytes(process) if measure_memory else (0, self.memory_kind)
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                continue
            self.memory_kind = kind
            trace = self.traces.get(process.pid)
            if trace is None:
                # A process first seen after the first sample was born since the previous look
                # for children: count all of its CPU time, from that look on.
                born_here = self._previous_refresh is not None
                trace = ProcessTrace(process.pid, default_name(process, self.root_pid),
                                     first_seen=self._previous_refresh if born_here else now,
                                     first_cpu_s=0.0 if born_here else cpu_s)
                self.traces[process.pid] = trace
            elif full_interval:  # (a handle's first cpu_percent is always 0: it has no interval yet)
                trace.cpu_pct.append(cpu_pct)
            if measure_memory:
                trace.mem_bytes.append(mem)
            trace.last_seen, trace.last_cpu_s = now, cpu_s
            total_mem += mem
            total_cpu += cpu_pct
        if measure_memory:
            self.total_mem_bytes.append(total_mem)
        if full_interval:
            self.total_cpu_pct.append(total_cpu)
        self._last_sample = now
        self.overhead_cpu_s += time.thread_time() - cpu_start

    def report(self) -> dict:
        """Per process and all together: mean and peak CPU% (of one core), peak and median memory in MB."""
        processes = []
        for trace in self.traces.values():
            trace.name = self.names.get(trace.pid, trace.name)
            processes.append(trace.report())
        span = self.stopped - self.started
        cpu_s = sum(t.last_cpu_s - t.first_cpu_s for t in self.traces.values())
        other_s = max(0.0, self._system_busy_stop - self._system_busy_start - cpu_s)
        return {
            "interval_s": self.interval_s,
            "samples": self._samples_taken,
            "memory_samples": len(self.total_mem_bytes),
            "memory_kind": self.memory_kind,
            "cores": psutil.cpu_count(logical=True),
            "overhead_cpu_pct": 100.0 * self.overhead_cpu_s / span if span > 0 else float("nan"),
            # CPU the rest of the machine used meanwhile: anything well above 0 skews the figures
            "other_cpu_pct": 100.0 * other_s / span if span > 0 else float("nan"),
            "processes": processes,
            "total": {
                "cpu_mean_pct": 100.0 * cpu_s / span if span > 0 else float("nan"),
                "cpu_peak_pct": max(self.total_cpu_pct, default=float("nan")),
                "mem_peak_mb": max(self.total_mem_bytes, default=0) / MB,
                "process_mem_peak_mb": max((p["mem_peak_mb"] for p in processes), default=float("nan")),
            },
        }


class CpuCheckpoints:
    """CPU seconds of this process and its children, read every ``every`` frames: the steady cost of a frame,
    start-up left out (a pipeline's workers spend about a second importing before the first frame)."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.marks: list[tuple[int, float]] = []  # (frames done, CPU seconds of the whole tree)
        self._tree: list[psutil.Process] | None = None

    def __call__(self, frames_done: int) -> None:
        if frames_done % self.every:
            return
        if self._tree is None:  # the workers are running by the first frame; the tree is read once
            root = psutil.Process()
            self._tree = [root] + root.children(recursive=True)
        total = 0.0
        for process in self._tree:
            try:
                total += cpu_seconds(process)
            except psutil.Error:
                continue
        self.marks.append((frames_done, total))


def wait_until_quiet(max_wait_s: float, busy_pct: float = 10.0, window_s: float = 3.0) -> float:
    """Wait (at most ``max_wait_s``) for a ``window_s`` window in which the machine's CPUs are below ``busy_pct``
    busy on average; returns the last window's busy % (of all cores)."""
    deadline = time.perf_counter() + max_wait_s
    busy = psutil.cpu_percent(interval=window_s)
    while busy > busy_pct and time.perf_counter() + window_s <= deadline:
        busy = psutil.cpu_percent(interval=window_s)
    return busy
