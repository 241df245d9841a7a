"""Stop signals: each gives its reason and exit code, reaches whoever listens, and never kills a worker."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from edge.signals import EXIT_CODES, STOP_SIGNALS, StopSignals, held_back, ignore_stop_signals
from tests.conftest import ROOT


@pytest.fixture
def stops():
    handlers = StopSignals()
    handlers.install()
    yield handlers
    handlers.uninstall()


def deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # Python runs the handler between bytecodes of the main thread


@pytest.mark.parametrize("signum, reason, code", [(signal.SIGINT, "interrupt", 130),
                                                  (signal.SIGTERM, "terminate", 143),
                                                  (signal.SIGHUP, "hangup", 129)])
def test_each_stop_signal_reaches_the_listener_with_its_reason_and_code(stops, signum, reason, code):
    heard = []
    stops.listen(heard.append)
    deliver(signum)
    assert heard == [reason] and stops.reason == reason and stops.exit_code == code == EXIT_CODES[reason]


def test_the_first_signal_decides_the_code_and_every_one_is_passed_on(stops):
    heard = []
    stops.listen(heard.append)
    deliver(signal.SIGTERM)
    deliver(signal.SIGINT)  # a second signal: the listener may cut its stop short
    assert heard == ["terminate", "interrupt"] and stops.exit_code == 143


def test_a_signal_before_anyone_listens_is_remembered_and_passed_to_the_first_listener(stops):
    deliver(signal.SIGINT)
    heard = []
    stops.listen(heard.append)
    assert heard == ["interrupt"]


def test_uninstall_restores_the_previous_handlers():
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    handlers = StopSignals()
    handlers.install()
    assert signal.getsignal(signal.SIGTERM) == handlers._on_signal
    handlers.uninstall()
    assert {signum: signal.getsignal(signum) for signum in STOP_SIGNALS} == previous


def test_held_back_signals_arrive_at_the_end_of_the_block(stops):
    heard = []
    stops.listen(heard.append)
    with held_back():  # (sent to this thread: one sent to the process may go to another thread that takes it)
        signal.pthread_kill(threading.get_ident(), signal.SIGHUP)
        time.sleep(0.05)
        assert heard == []
    time.sleep(0.05)
    assert heard == ["hangup"]


def report_signals(out) -> None:
    """In a spawned child: its stop signals blocked at start, then ignored and unblocked."""
    blocked = set(signal.pthread_sigmask(signal.SIG_BLOCK, []))
    os.kill(os.getpid(), signal.SIGINT)  # pending while blocked: dropped once ignored
    ignore_stop_signals()
    os.kill(os.getpid(), signal.SIGTERM)  # ignored
    out.send((sorted(blocked & STOP_SIGNALS), set(signal.pthread_sigmask(signal.SIG_BLOCK, [])) & STOP_SIGNALS,
              [signal.getsignal(s) == signal.SIG_IGN for s in sorted(STOP_SIGNALS)]))


def test_a_worker_started_while_held_back_starts_with_them_blocked_then_ignores_them():
    ctx = mp.get_context("spawn")
    ours, theirs = ctx.Pipe()
    from multiprocessing import resource_tracker  # started first, as the pipeline does (it unblocks SIGINT/SIGTERM)

    with held_back():
        resource_tracker.ensure_running()
    with held_back():
        child = ctx.Process(target=report_signals, args=(theirs,))
        child.start()
    assert ours.poll(60)
    blocked_at_start, blocked_after, ignored = ours.recv()
    child.join(10)
    assert child.exitcode == 0  # neither pending SIGINT nor SIGTERM killed it
    assert blocked_at_start == sorted(STOP_SIGNALS) and blocked_after == set() and all(ignored)


def test_a_stop_signal_while_the_program_imports_exits_at_once_with_one_line():
    code = ("import os, signal, time\n"
            "from edge.signals import stop_signals\n"
            "stop_signals.install(exit_at_once=True)\n"
            "os.kill(os.getpid(), signal.SIGTERM)\n"
            "time.sleep(10)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 143
    assert result.stderr.splitlines() == ["stopped before the run began (terminate)"]
