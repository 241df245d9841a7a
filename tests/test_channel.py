"""edge.channel between real spawned processes: order, timeouts, several writers, a reader or writers that are gone."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
import time

import numpy as np
import pytest

from edge.channel import Channel

CTX = mp.get_context("spawn")
BIG = 200_000  # bytes: a message over PIPE_BUF, and over a whole pipe's buffer (64 KB)


def write_numbers(channel: Channel, count: int) -> None:
    channel.writing()
    for i in range(count):
        channel.put((i, np.full(BIG if i % 10 == 0 else 16, i % 256, np.uint8)))
    channel.put(None)


def write_blocks(channel: Channel, writer: int, count: int) -> None:
    channel.writing()
    for i in range(count):
        channel.put((writer, i, np.full(BIG, writer, np.uint8)))


def write_until_broken(channel: Channel, result: Channel) -> None:
    """Writes a message far larger than the pipe to a reader that never reads, then tells how the write ended."""
    channel.writing()
    try:
        channel.put(bytes(10 * BIG))
    except BrokenPipeError:
        result.put("broken pipe")
    else:
        result.put("written")


def read_nothing(channel: Channel, started: Channel) -> None:
    channel.reading()
    started.put("reader started")
    time.sleep(0.5)


def start(target, *args) -> mp.process.BaseProcess:
    process = CTX.Process(target=target, args=args)
    process.start()
    return process


def test_messages_arrive_whole_and_in_order_until_the_end_of_stream():
    channel = Channel(CTX)
    writer = start(write_numbers, channel, 50)
    channel.reading()
    received = []
    while (message := channel.get(timeout=10)) is not None:
        received.append(message)
    writer.join(10)
    assert writer.exitcode == 0
    assert [i for i, _ in received] == list(range(50))
    assert all(block.size == (BIG if i % 10 == 0 else 16) and (block == i % 256).all() for i, block in received)


def test_get_times_out_with_queue_empty():
    channel = Channel(CTX)
    begun = time.perf_counter()
    with pytest.raises(queue.Empty):
        channel.get(timeout=0.1)
    assert time.perf_counter() - begun >= 0.09
    channel.close()


def test_two_writers_never_interleave_their_messages():
    channel = Channel(CTX, writers=2)
    writers = [start(write_blocks, channel, writer, 30) for writer in (1, 2)]
    channel.reading()
    seen: dict[int, list[int]] = {1: [], 2: []}
    for _ in range(60):
        writer, i, block = channel.get(timeout=10)
        assert block.size == BIG and (block == writer).all()
        seen[writer].append(i)
    for process in writers:
        process.join(10)
        assert process.exitcode == 0
    assert seen == {1: list(range(30)), 2: list(range(30))}
    with pytest.raises(EOFError):  # every writer has ended and the reader holds no write end
        channel.get(timeout=1)


def test_a_writer_blocked_on_a_reader_that_is_gone_gets_broken_pipe():
    channel, started, result = Channel(CTX), Channel(CTX), Channel(CTX)
    reader = start(read_nothing, channel, started)
    writer = start(write_until_broken, channel, result)
    channel.close()  # only the two children hold its ends
    started.reading()
    result.reading()
    assert started.get(timeout=10) == "reader started"
    assert result.get(timeout=10) == "broken pipe"  # blocked on the full pipe, until the reader exited
    for process in (reader, writer):
        process.join(10)
        assert process.exitcode == 0


def test_a_killed_writer_reads_as_end_of_file_not_a_hang():
    channel = Channel(CTX)
    writer = start(write_blocks, channel, 1, 1000)
    channel.reading()
    assert channel.get(timeout=10)[1] == 0
    time.sleep(0.3)  # the writer is blocked in the middle of a message on the full pipe
    writer.kill()
    writer.join(10)
    with pytest.raises(EOFError):
        while True:  # what it wrote before it died, then the end
            channel.get(timeout=10)


def test_reaches_other_processes_only_when_spawning_them():
    channel = Channel(CTX)
    with pytest.raises(RuntimeError):
        pickle.dumps(channel)
    channel.close()
