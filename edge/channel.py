"""A one-way message channel between processes on a pipe, for the pipeline's small per-frame messages."""

from __future__ import annotations

import pickle
import queue
from multiprocessing import context
from typing import Any


class Channel:
    """A pipe that carries pickled objects from one or more writer processes to one reader.

    Why not ``multiprocessing.Queue``: its ``put`` hands the pickled message to a feeder
    thread that writes the pipe, and that thread hand-off costs more CPU per message than
    the pipeline's small messages do to pickle. ``put`` here pickles and writes the pipe in
    the calling thread.

    Limits, which the pipeline is built around:

    - One reader: ``get`` takes no lock, so two processes reading at once would split messages.
    - Several writers need ``writers > 1``: a lock then keeps each message whole in the pipe
      (a message over PIPE_BUF, e.g. face crops, is written in parts).
    - ``put`` blocks while the pipe is full (about 64 KB) until the reader reads: nothing queues
      in between. So a writer must not hold, while it writes, a lock that the reader's side needs
      to go on reading (see FrameReader._offer).
    - Each process keeps only the end it uses (``reading``/``writing``, ``close`` for neither)
      right after the processes are spawned. Then the kernel tells when the other side is gone:
      ``get`` raises EOFError once every writer has ended, and ``put`` raises BrokenPipeError
      once the reader has (also when it was blocked on a full pipe), instead of waiting forever.
    - A writer killed in the middle of a message larger than PIPE_BUF leaves part of it in the
      pipe. A sole writer's reader then gets EOFError; with ``writers > 1`` the lock stays taken
      and the other writers block (in the pipeline only a result of some 150 faces is that
      large, and a killed worker ends the run, which kills the other).
    - Like a ``multiprocessing.Queue`` it reaches other processes only as an argument of a
      spawned ``Process``.
    """

    def __init__(self, ctx: context.BaseContext, writers: int = 1) -> None:
        self._reader, self._writer = ctx.Pipe(duplex=False)
        self._lock = ctx.Lock() if writers > 1 else None

    def __getstate__(self) -> dict[str, Any]:
        context.assert_spawning(self)  # pipe ends and locks can only be inherited
        return self.__dict__.copy()

    def put(self, obj: Any) -> None:
        """Send one object; blocks while the pipe is full. BrokenPipeError: the reader is gone."""
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL)
        if self._lock is None:
            self._writer.send_bytes(data)
        else:
            with self._lock:
                self._writer.send_bytes(data)

    def get(self, timeout: float) -> Any:
        """The next object; queue.Empty after ``timeout`` seconds without one, EOFError once every writer has ended."""
        if not self._reader.poll(timeout):
            raise queue.Empty
        try:
            data = self._reader.recv_bytes()
        except OSError as exc:  # "got end of file during message": the last writer died while writing
            raise EOFError(str(exc)) from exc
        return pickle.loads(data)

    def reading(self) -> None:
        """This process only reads: close its write end."""
        self._writer.close()

    def writing(self) -> None:
        """This process only writes: close its read end."""
        self._reader.close()

    def close(self) -> None:
        self._reader.close()
        self._writer.close()
