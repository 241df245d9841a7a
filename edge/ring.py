"""The shared-memory frame ring: frame slots that every process maps, so queues carry slot numbers, never pixels."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

from edge.capture import frame_view
from edge.signals import held_back

log = logging.getLogger(__name__)

SHM_PREFIX = "fer_edge_"
SHM_FOLDER = Path("/dev/shm")  # where Linux keeps POSIX shared memory (macOS has no such folder)
RING_NAME = re.compile(re.escape(SHM_PREFIX) + r"(\d+)_[0-9a-f]+")
TRACKER_WARNINGS = "ignore::UserWarning:multiprocessing.resource_tracker"  # its "leaked objects" lines


class FrameRing:
    """Frame slots in one shared-memory block; processes pass slot numbers, never pixels."""

    def __init__(self, slots: int, capacity: int, name: str | None = None) -> None:
        self.slots = slots
        self.capacity = capacity  # bytes per slot
        create = name is None
        if create:  # the owner's pid in the name: a leak can be traced to its run
            name = f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
        # Workers are spawned children sharing the owner's resource tracker, so attaching
        # needs no tracking fix-up; only the owner unlinks.
        self.shm = shared_memory.SharedMemory(name=name, create=create, size=slots * capacity)
        self.owner = create
        array = np.ndarray((slots, capacity), dtype=np.uint8, buffer=self.shm.buf)
        self.buffers = [array[i] for i in range(slots)]

    @property
    def name(self) -> str:
        return self.shm.name

    def frame(self, slot: int, shape: tuple[int, ...]) -> np.ndarray:
        return frame_view(self.buffers[slot], shape)

    def close(self) -> None:
        self.buffers = []
        try:
            self.shm.close()
        except BufferError:  # a frame view is still alive somewhere; unlink anyway
            log.debug("shared memory %s still referenced at close", self.name)
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale_rings(folder: Path = SHM_FOLDER) -> list[str]:
    """Free the frame rings of runs whose main process is gone; their names.

    A run frees its ring on every path it can see; a SIGKILL of every process at once (the
    multiprocessing resource tracker included) leaves it in shared memory, and only the pid in
    its name says whose it was.
    """
    freed = []
    for path in folder.glob(f"{SHM_PREFIX}*") if folder.is_dir() else ():
        match = RING_NAME.fullmatch(path.name)
        if match is None or pid_alive(int(match[1])):
            continue
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            path.unlink()
            freed.append(path.name)
    if freed:
        log.info("freed %d frame ring(s) left by runs that were killed: %s", len(freed), ", ".join(freed))
    return freed


def start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (it frees the ring if this process is killed) with SIGHUP blocked.

    It ignores SIGINT and SIGTERM itself, but a closed terminal's SIGHUP would kill it, and the
    run would then print its "process died unexpectedly" warnings. When it frees what a killed
    run left, it does so without its "leaked objects" warnings: freeing them is its job. (Starting
    it unblocks SIGINT and SIGTERM in this thread, so it is started before the workers, not while.)
    """
    previous = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, (previous, TRACKER_WARNINGS)))
    try:
        with held_back():
            resource_tracker.ensure_running()
    finally:
        if previous is None:
            del os.environ["PYTHONWARNINGS"]
        else:
            os.environ["PYTHONWARNINGS"] = previous
