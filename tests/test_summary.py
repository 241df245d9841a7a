"""The video summary: from a hand-written events file, the CSV sink, the CLI, and end to end on the sample clip."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.render import EventSink
from edge.results import UNCERTAIN, Faces, FrameResult
from edge.summary import SummaryError, main, no_plot_note, plot_available, read_events, summarize
from tests.conftest import DATA, ROOT, run_cli

LABELS = ("a", "b", "c")
# track 0 in frames 0-9; track 4 in frames 5, 6, 8, 9; nobody in frames 10-11; 10 frames a second
TRACK_0 = {i: (shown, raw) for i, (shown, raw) in enumerate(zip("aaaaaabbbb", "abaaaababb"))}
TRACK_4 = {5: (UNCERTAIN, "c"), 6: (UNCERTAIN, "b"), 8: ("c", "c"), 9: ("c", "c")}


def face(track_id: int, shown: str, raw: str) -> dict:
    probs = {name: 0.8 if name == raw else 0.1 for name in LABELS}
    return {"box": [0, 0, 10, 10], "track_id": track_id, "label": shown, "score": 0.8, "raw_label": raw,
            "probs": probs, "smoothed": probs}


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "faces.jsonl"
    lines = []
    for i in range(12):
        faces = [face(track, *labels[i]) for track, labels in ((0, TRACK_0), (4, TRACK_4)) if i in labels]
        lines.append(json.dumps({"frame": i, "seq": i, "t": round(i * 0.1, 4), "faces": faces}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_summary_by_hand(events):
    summary = summarize(read_events(events))
    assert summary["frames"] == 12 and summary["duration_s"] == pytest.approx(1.2)
    assert summary["labels"] == ["a", "b", "c", UNCERTAIN]
    first, second = summary["tracks"]
    assert first["track_id"] == 0 and first["frames"] == 10 and first["seconds"] == pytest.approx(1.0)
    assert first["share"] == {"a": 0.6, "b": 0.4, "c": 0.0, UNCERTAIN: 0.0} and first["dominant"] == "a"
    assert first["label_changes"] == {"raw": 5, "shown": 1}
    assert first["changes_per_s"] == {"raw": pytest.approx(5.0), "shown": pytest.approx(1.0)}  # over 1.0 s
    assert second["track_id"] == 4 and second["frames"] == 4 and second["span_s"] == pytest.approx(0.5)
    assert second["share"][UNCERTAIN] == 0.5 and second["dominant"] == "c"  # uncertain is never dominant
    assert second["changes_per_s"] == {"raw": pytest.approx(4.0), "shown": pytest.approx(2.0)}
    assert summary["changes_per_s"] == {"raw": pytest.approx(7 / 1.5, abs=1e-4),
                                        "shown": pytest.approx(2 / 1.5, abs=1e-4)}


def frame_results(events: Path) -> list[FrameResult]:
    """The hand-written events as the renderer's results."""
    results = []
    for line in events.read_text().splitlines():
        record = json.loads(line)
        faces = record["faces"]
        results.append(FrameResult(
            seq=record["seq"], index=record["frame"], timestamp=record["t"], faces=Faces(
                np.array([f["box"] for f in faces]).reshape(-1, 4),
                np.array([[f["probs"][n] for n in LABELS] for f in faces]).reshape(-1, 3), LABELS,
                track_id=np.array([f["track_id"] for f in faces]),
                smoothed=np.array([[f["smoothed"][n] for n in LABELS] for f in faces]).reshape(-1, 3),
                display_label=[f["label"] for f in faces])))
    return results


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_events_written_by_the_sink_give_the_same_summary(events, tmp_path, suffix):
    path = tmp_path / f"sink{suffix}"
    sink = EventSink(path, LABELS)
    for result in frame_results(events):
        sink.write(None, result)
    sink.close()
    expected = summarize(read_events(events))
    assert summarize(read_events(path))["tracks"] == expected["tracks"]
    if suffix == ".csv":
        row = next(csv.DictReader(path.open()))
        assert row["raw_label"] == "a" and float(row["smoothed_a"]) == pytest.approx(0.8)


def test_cli_writes_json_csv_and_timeline(events, tmp_path):
    out = tmp_path / "summary"
    result = subprocess.run([sys.executable, "-m", "edge.summary", str(events), str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "raw 4.67, shown 1.33" in result.stdout
    assert json.loads((out / "summary.json").read_text())["tracks"][1]["dominant"] == "c"
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [row["track_id"] for row in rows] == ["0", "4"] and rows[0]["share_a"] == "0.6"
    image = cv2.imread(str(out / "timeline.png"))
    assert image is not None and image.shape[0] > 100


@pytest.mark.parametrize("content, message", [
    (None, "events file not found"),
    ('{"frame": 0, "t": 0.0, "faces": []}\nnot json\n', "line 2 is not JSON"),
    ('{"frame": 0}\n', "line 1 is not a frame event"),
    ("", "no frames in events file"),
])
def test_bad_events_files_give_one_line_errors(tmp_path, capsys, content, message):
    path = tmp_path / "faces.jsonl"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SummaryError, match=message):
        read_events(path)
    assert main([str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_without_matplotlib_the_json_csv_and_table_are_written_and_a_note_names_the_install(
        monkeypatch, events, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    assert not plot_available()
    out = tmp_path / "out"
    assert main([str(events), str(out)]) == 0
    captured = capsys.readouterr()
    assert "raw 4.67, shown 1.33" in captured.out  # the table
    assert captured.err == no_plot_note() + "\n" and "pip install '.[plot]'" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.json"]
    assert json.loads((out / "summary.json").read_text())["tracks"][1]["dominant"] == "c"


def test_sample_clip_one_track_fewer_changes_smoothed_and_a_summary(tmp_path):
    events, out = tmp_path / "faces.jsonl", tmp_path / "summary"
    result = run_cli("--source", str(DATA / "single_face.mp4"), "--headless", "--events", str(events),
                     "--summary", str(out))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    table = result.stdout.splitlines()  # the summary's table, as python -m edge.summary prints it
    assert table[0].split()[:3] == ["track", "from_s", "to_s"] and "label changes per second" in table[-1]
    records = [json.loads(line) for line in events.read_text().splitlines()]
    faces = [face for record in records for face in record["faces"]]
    ids = [face["track_id"] for face in faces]
    main_id = max(set(ids), key=ids.count)
    assert main_id >= 0 and ids.count(main_id) >= 0.9 * len(records)  # one id across nearly all frames
    shown = [face["label"] for face in faces if face["track_id"] == main_id]
    raw = [face["raw_label"] for face in faces if face["track_id"] == main_id]
    changes = lambda labels: sum(a != b for a, b in zip(labels, labels[1:]))  # noqa: E731
    assert changes(shown) < changes(raw)
    assert all(face["label"] in (*face["smoothed"], UNCERTAIN) for face in faces)
    summary = json.loads((out / "summary.json").read_text())
    track = next(t for t in summary["tracks"] if t["track_id"] == main_id)
    assert track["frames"] == ids.count(main_id) and sum(track["share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert track["changes_per_s"]["shown"] < track["changes_per_s"]["raw"]
    assert len(list(csv.DictReader((out / "summary.csv").open()))) == len(summary["tracks"])
    assert cv2.imread(str(out / "timeline.png")) is not None


def test_images_are_not_tracked_or_smoothed(tmp_path):
    events = tmp_path / "faces.jsonl"
    result = run_cli("--source", str(DATA / "single_face.jpg"), "--headless", "--events", str(events))
    assert result.returncode == 0, result.stderr
    (face,) = json.loads(events.read_text())["faces"]
    assert face["track_id"] == -1 and "smoothed" not in face


def test_unwritable_summary_folder_is_a_bad_input(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("")
    result = run_cli("--source", str(DATA / "single_face.jpg"), "--summary", str(blocker / "summary"), timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot create summary folder") and result.stderr.count("\n") == 1


def test_the_device_install_without_matplotlib_still_writes_the_summary(tmp_path):
    """`edge.run --summary` where matplotlib is not installed (as `pip install .` leaves it)."""
    out = tmp_path / "summary"
    code = ("import runpy, sys\n"
            "sys.modules['matplotlib'] = None  # as if not installed\n"
            f"sys.argv = ['edge.run', '--source', {str(DATA / 'single_face.mp4')!r}, '--headless', "
            f"'--summary', {str(out)!r}]\n"
            "runpy.run_module('edge.run', run_name='__main__')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["summary.csv", "summary.json"]
    assert "label changes per second" in result.stdout
    assert no_plot_note() in result.stderr.splitlines()
