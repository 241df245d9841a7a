"""Sinks: built from the outputs in one place, opened once with the source, each frame written in order, closed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edge.capture import Source
from edge.config import Config
from edge.progress import Progress
from edge.render import EventSink, ImageSink, OutputError, VideoSink, frame_sink
from edge.results import Faces, FrameResult
from edge.run import Presenter
from edge.serve import ServeError
from edge.sinks import Outputs, make_sinks
from edge.summary import SummarySink
from tests.conftest import DATA, ROOT, shm_segments

LABELS = ("happy", "sad")


class FakeSource(Source):
    name = "fake.mp4"
    fps = 25.0


class FakeRun:
    """What a Presenter reads of a run: labels, the open source, what --source said, whether it is paced."""

    labels = LABELS
    source_spec = "fake.mp4"
    paced = False

    def __init__(self, still: bool = False) -> None:
        self.source = FakeSource()
        self.source.still = still


class Recorder:
    """A sink that records what it is handed; ``stop_at``: the frame whose write asks the run to stop."""

    def __init__(self, stop_at: int | None = None, fail_close: bool = False) -> None:
        self.calls: list[tuple] = []
        self.track_ids: list[int] = []  # of each frame's first face
        self.stop_at = stop_at
        self.fail_close = fail_close

    def open(self, source: Source, paced: bool) -> None:
        self.calls.append(("open", source.name, paced))

    def write(self, frame: np.ndarray, result: FrameResult) -> bool | None:
        self.calls.append(("write", result.seq))
        self.track_ids.append(int(result.faces.track_id[0]))
        return False if result.seq == self.stop_at else None

    def close(self) -> None:
        self.calls.append(("close",))
        if self.fail_close:
            raise OSError(28, "No space left on device", "/out/x.bin")


def result(seq: int, boxes: int = 1) -> FrameResult:
    faces = Faces(np.tile([[10, 10, 60, 60]], (boxes, 1)), np.tile([[0.9, 0.1]], (boxes, 1)), LABELS)
    return FrameResult(seq=seq, index=seq, timestamp=seq / 25, faces=faces)


def frame() -> np.ndarray:
    return np.zeros((120, 160, 3), np.uint8)


def test_the_outputs_name_the_sinks_in_the_order_they_write(tmp_path):
    outputs = Outputs(video=tmp_path / "a.mp4", events=tmp_path / "e.jsonl", summary_dir=tmp_path / "s",
                      headless=True, quiet=True)
    sinks = make_sinks(outputs, Config(), LABELS, "clip.mp4", report=lambda summary: None, say=print)
    try:
        assert [type(sink) for sink in sinks] == [Progress, SummarySink, VideoSink, EventSink]
    finally:
        for sink in sinks:
            sink.close()
    assert [type(sink) for sink in make_sinks(Outputs(headless=True), Config(), LABELS, "", print, print)] == [Progress]


def test_a_sink_that_cannot_be_built_closes_those_built_before_it(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        outputs = Outputs(summary_dir=tmp_path / "s", serve=f"127.0.0.1:{port}", events=tmp_path / "e.jsonl",
                          headless=True)
        with pytest.raises(ServeError):
            make_sinks(outputs, Config(), LABELS, "", print, print)
    finally:
        taken.close()
    assert not (tmp_path / "e.jsonl").exists()  # never reached: the events file is not truncated
    assert (tmp_path / "s").is_dir() and not list((tmp_path / "s").iterdir())  # the summary of no frame: no file


def test_the_presenter_opens_once_writes_every_frame_in_order_and_stops_when_a_sink_asks(tmp_path):
    presenter = Presenter(FakeRun(), Outputs(headless=True, quiet=True), Config())
    first, stopper = Recorder(), Recorder(stop_at=2)
    presenter.sinks += [first, stopper]
    keep = [presenter(frame(), result(seq), presenter.run) for seq in range(4)]
    assert keep == [True, True, False, True]  # the run stops at the first False (the pipeline's on_result)
    assert presenter.close() is None
    expected = [("open", "fake.mp4", False), *(("write", seq) for seq in range(4)), ("close",)]
    assert first.calls == stopper.calls == expected


def test_closing_goes_on_past_a_failed_sink_and_names_its_file():
    presenter = Presenter(FakeRun(), Outputs(headless=True, quiet=True), Config())
    failing, after = Recorder(fail_close=True), Recorder()
    presenter.sinks += [failing, after]
    presenter(frame(), result(0), presenter.run)
    assert presenter.close() == "cannot write /out/x.bin: No space left on device"
    assert after.calls[-1] == ("close",)


def test_video_faces_are_tracked_before_the_sinks_see_them_and_images_are_not():
    for still, expected in ((False, [0, 0, 0]), (True, [-1, -1, -1])):
        presenter = Presenter(FakeRun(still=still), Outputs(headless=True, quiet=True), Config())
        recorder = Recorder()
        presenter.sinks.append(recorder)
        for seq in range(3):
            presenter(frame(), result(seq), presenter.run)
        presenter.close()
        assert recorder.track_ids == expected


def test_every_sink_writes_the_same_event_built_once(tmp_path):
    presenter = Presenter(FakeRun(), Outputs(events=tmp_path / "e.jsonl", summary_dir=tmp_path / "s",
                                             headless=True, quiet=True), Config())
    presenter.sinks[1].report = lambda summary: None
    results = [result(seq) for seq in range(3)]
    for r in results:
        presenter(frame(), r, presenter.run)
        assert r.record() is r.record()  # one dict per frame, whoever asks
    assert presenter.close() is None
    written = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert written == [r.record() for r in results]
    assert written[2]["faces"][0]["track_id"] == 0 and "smoothed" in written[2]["faces"][0]
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["frames"] == 3 and summary["tracks"][0]["frames"] == 3


def test_a_new_result_for_new_faces_gets_a_new_event():
    r = result(0, boxes=1)
    one = r.record()
    r.faces = result(0, boxes=2).faces
    assert len(one["faces"]) == 1 and len(r.record()["faces"]) == 2


def test_frame_outputs_are_a_video_for_a_video_path_else_images_of_an_image_source(tmp_path):
    assert isinstance(frame_sink(tmp_path / "a.mp4", Config().render), VideoSink)
    images = frame_sink(tmp_path / "out", Config().render)
    assert isinstance(images, ImageSink)
    with pytest.raises(OutputError, match="output video must end in one of"):
        images.open(FakeSource(), paced=False)
    still = FakeSource()
    still.still = True
    images.open(still, paced=False)
    assert (tmp_path / "out").is_dir() and not images.single
    images.write(frame(), result(0))
    assert (tmp_path / "out" / "frame_000000.jpg").is_file()


def test_one_image_is_written_to_an_image_path(tmp_path):
    class OneImage(FakeSource):
        still = True
        frame_count = 1  # one image

    sink = frame_sink(tmp_path / "one.png", Config().render)
    sink.open(OneImage(), paced=False)
    sink.write(frame(), result(0))
    assert sink.single and (tmp_path / "one.png").is_file()


NEW_SINK = textwrap.dedent('''
    """A sink a newcomer adds, in a module of its own: --tally FILE, what it was handed, as JSON at the end."""
    import json
    from pathlib import Path

    from edge.outputs import Option


    class Tally:
        options = (Option("--tally", "tally", "what the sink saw, into FILE", type=Path,
                          writes=lambda path, source: [path]),)

        @classmethod
        def build(cls, outputs, context):
            return cls(outputs.tally) if outputs.tally else None

        def __init__(self, path):
            self.path = path
            self.calls = []

        def open(self, source, paced):
            self.calls.append(["open", source.name])

        def write(self, frame, result):
            self.calls.append(["write", result.seq, len(result.faces)])

        def close(self):
            self.calls.append(["close"])
            self.path.write_text(json.dumps(self.calls))
''')

WITH_NEW_SINK = textwrap.dedent('''
    import sys

    import edge.run
    import edge.sinks
    from tally import Tally

    edge.sinks.SINKS.append(Tally)  # the one line where sinks are listed

    if __name__ == "__main__":
        sys.exit(edge.run.main(sys.argv[1:]))
''')


def test_a_new_sink_is_its_module_and_its_line_in_the_list(tmp_path):
    (tmp_path / "tally.py").write_text(NEW_SINK)
    (tmp_path / "run.py").write_text(WITH_NEW_SINK)
    environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    environment["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])

    def run(*args: str) -> subprocess.CompletedProcess:
        process = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), *args], cwd=ROOT, env=environment,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            stdout, stderr = process.communicate(timeout=120)
        finally:
            process.kill()
        assert shm_segments(process.pid) == []
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    shown = run("--help")
    assert shown.returncode == 0 and "--tally TALLY" in shown.stdout and "what the sink saw, into FILE" in shown.stdout

    tally, events = tmp_path / "tally.json", tmp_path / "events.jsonl"
    done = run("--source", str(DATA / "single_face.mp4"), "--headless", "--quiet", "--tally", str(tally),
               "--events", str(events))
    assert done.returncode == 0, done.stderr
    calls = json.loads(tally.read_text())
    assert calls[0] == ["open", str(DATA / "single_face.mp4")] and calls[-1] == ["close"]
    assert [call[1] for call in calls[1:-1]] == list(range(72))  # every frame, in order
    records = [json.loads(line) for line in events.read_text().splitlines()]
    assert [call[2] for call in calls[1:-1]] == [len(r["faces"]) for r in records]  # with its faces
    assert str(tally) in done.stderr.strip().splitlines()[-1]  # the report names what it wrote

    clip = tmp_path / "clip.mp4"
    shutil.copy(DATA / "single_face.mp4", clip)
    refused = run("--source", str(clip), "--headless", "--tally", str(clip))
    assert refused.returncode == 2
    assert refused.stderr.strip() == f"error: --tally {clip} would overwrite the source {clip}: choose another path"
    assert clip.read_bytes() == (DATA / "single_face.mp4").read_bytes()


def test_an_output_no_sink_declares_is_refused():
    with pytest.raises(ValueError, match="no sink has the option 'vidoe'"):
        make_sinks(Outputs(vidoe=Path("a.mp4"), headless=True), Config(), LABELS, "", print, print)
