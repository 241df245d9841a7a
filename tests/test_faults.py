"""The fault suite's fast subset: the CLI through bad inputs, dying and stalled workers, signals at start-up and
mid-run, a blocking open, a stalled stream and a full disk (the whole suite: benchmarks/faults.py).

Each case checks the exit code, the one line on stderr, the seconds from the fault to the exit (with slack
here: the machine is loaded; the real figures are in RELIABILITY.md), processes left behind, shared memory
left behind, the input untouched, and the video holding exactly the frames of the events.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from benchmarks.faults import QUICK, Media, cases, run_case, small_disk
from tests.conftest import ROOT, looped_video

SLACK_S = 15.0  # added to every bound on the seconds to exit


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    with Media.prepared(tmp_path_factory.mktemp("faults")) as prepared:
        yield prepared


@pytest.mark.parametrize("case", [c for c in cases() if c.name in QUICK], ids=lambda c: c.name)
def test_fault(case, media):
    outcome = run_case(dataclasses.replace(case, within_s=case.within_s + SLACK_S), media)
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.passed, (outcome.problems, outcome.lines)


def test_the_quick_cases_exist():
    assert set(QUICK) <= {c.name for c in cases()}


def test_a_full_disk_leaves_whole_events_and_exits_3_naming_the_file(tmp_path):
    with small_disk(tmp_path / "disk", "100k") as disk:
        if disk is None:
            pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN)")
        events = disk / "events.jsonl"
        result = subprocess.run([sys.executable, "-m", "edge.run", "--headless", "--source",
                                 str(looped_video(tmp_path, 5)), "--events", str(events)],
                                cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 3, result.stderr
        assert result.stderr.splitlines() == [f"error: cannot write {events}: No space left on device"]
        lines = events.read_text().splitlines()
        assert len(lines) > 50 and all(isinstance(json.loads(line), dict) for line in lines)  # every one whole
        assert [json.loads(line)["frame"] for line in lines] == list(range(len(lines)))


def test_the_suite_writes_its_table(media, capsys):
    from benchmarks.faults import main

    assert main(["--only", "camera-superscript", "events-is-source", "--markdown"]) == 0
    table = capsys.readouterr().out
    assert "2 of 2 cases pass" in table and "| camera-superscript |" in table and "| events-is-source |" in table
