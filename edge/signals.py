"""Stop signals: SIGINT, SIGTERM and SIGHUP end a run in order with the shell's exit code; workers leave them to it."""

from __future__ import annotations

import contextlib
import enum
import signal
import sys
from typing import Callable, Iterator


class StopReason(str, enum.Enum):
    """Why a run ended; each has its exit code (a stop signal's is the one a shell reports: 128 + its number)."""

    END = "end"  # the source ended
    USER = "user"  # q or Esc, or the window closed
    INTERRUPT = "interrupt"  # SIGINT: Ctrl-C
    TERMINATE = "terminate"  # SIGTERM
    HANGUP = "hangup"  # SIGHUP: the terminal or ssh session closed

    def __str__(self) -> str:
        return self.value

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self]


EXIT_CODES = {StopReason.END: 0, StopReason.USER: 0, StopReason.INTERRUPT: 130, StopReason.TERMINATE: 143,
              StopReason.HANGUP: 129}
REASONS = {signal.SIGINT: StopReason.INTERRUPT, signal.SIGTERM: StopReason.TERMINATE, signal.SIGHUP: StopReason.HANGUP}
STOP_SIGNALS = frozenset(REASONS)


def stopped_early(reason: StopReason) -> str:
    """The line a stop before the run began prints."""
    return f"stopped before the run began ({reason})"


class StopSignals:
    """Turns stop signals into calls of ``listener(reason)``: the pipeline, then the web view's linger.

    The first signal's reason is kept (it decides the exit code); every signal is passed on, so a
    second Ctrl-C can cut a stop short. A signal that arrives before anything listens (while the
    program still imports or parses its arguments) is remembered and passed to the first listener.
    """

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self._listener: Callable[[StopReason], None] | None = None
        self._previous: dict[int, object] = {}
        self._exit_at_once = False

    def install(self, exit_at_once: bool = False) -> None:
        """Handle the stop signals from now on (main thread only).

        ``exit_at_once``: while the program still imports, with nothing open yet, a stop signal ends
        it then and there (SystemExit with the signal's exit code, which prints nothing).
        """
        self._exit_at_once = exit_at_once
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self._on_signal)
            if previous is not self._on_signal:
                self._previous.setdefault(signum, previous)

    def uninstall(self) -> None:
        """Restore the handlers that were there before ``install``."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def listen(self, listener: Callable[[StopReason], None] | None) -> None:
        """Signals now go to ``listener`` (None: only remembered); one already received goes at once."""
        self._listener = listener
        if listener is not None and self.reason is not None:
            listener(self.reason)

    @property
    def exit_code(self) -> int | None:
        return self.reason.exit_code if self.reason else None

    def _on_signal(self, signum: int, frame: object) -> None:
        reason = REASONS[signal.Signals(signum)]
        if self._exit_at_once:
            with contextlib.suppress(OSError, ValueError):  # stderr may be gone (a closed terminal)
                print(stopped_early(reason), file=sys.stderr, flush=True)
            raise SystemExit(reason.exit_code)
        if self.reason is None:
            self.reason = reason
        if self._listener is not None:
            self._listener(reason)


@contextlib.contextmanager
def held_back(signals: frozenset[int] = STOP_SIGNALS) -> Iterator[None]:
    """Block the stop signals in this thread for the block, delivering any that came in at its end.

    Processes started inside inherit the blocked mask, so a stop signal sent to the whole process
    group (a terminal's Ctrl-C) cannot interrupt a worker while it still imports: it stays pending
    until the worker ignores it (``ignore_stop_signals``).
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals() -> None:
    """In a worker: the main process alone stops the run, so the stop signals are ignored, pending ones dropped.

    The signals often reach the whole process group (a terminal, `timeout`, systemd, a closed ssh
    session); a worker that died of one would turn an orderly stop into a failure. The main process
    ends its workers with the end-of-stream message and kills any that do not stop; a worker whose
    parent is gone ends by itself.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)  # a pending signal that is ignored is discarded
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


stop_signals = StopSignals()  # the process's one set of handlers (installed by the CLI)
