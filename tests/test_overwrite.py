"""Output paths: an output that is an input (by inode or by resolved path) or another output is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.overwrite import check_outputs, source_files
from edge.render import OutputError, frame_outputs
from edge.sinks import Outputs, written_files


@pytest.fixture
def files(tmp_path):
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"video")
    (tmp_path / "link.mp4").symlink_to(source)
    os.link(source, tmp_path / "hard.mp4")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder_link").symlink_to(tmp_path)
    return tmp_path


@pytest.mark.parametrize("output", ["clip.mp4", "./clip.mp4", "folder/../clip.mp4", "link.mp4", "hard.mp4",
                                    "folder_link/clip.mp4"])
def test_an_output_that_is_the_source_by_any_name_is_refused(files, output, monkeypatch):
    monkeypatch.chdir(files)
    with pytest.raises(OutputError, match="would overwrite the source"):
        check_outputs({"--events": [Path(output)]}, {"source": [files / "clip.mp4"]})


def test_two_outputs_on_one_file_are_refused_even_before_it_exists(files, monkeypatch):
    monkeypatch.chdir(files)
    with pytest.raises(OutputError, match="--output and --events both write"):
        check_outputs({"--output": [Path("new.mp4")], "--events": [Path("./new.mp4")]}, {})


def test_other_paths_pass(files):
    check_outputs({"--output": [files / "out.mp4"], "--events": [files / "faces.jsonl"]},
                  {"source": [files / "clip.mp4"], "config": [files / "missing.toml"]})


def test_a_folder_output_for_an_image_folder_names_one_file_per_image(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.png", "notes.txt"):
        (photos / name).write_bytes(b"x")
    images = source_files(str(photos))
    assert [p.name for p in images] == ["a.jpg", "b.png"]
    assert frame_outputs(photos, images) == [photos / "a.jpg", photos / "b.png"]
    with pytest.raises(OutputError, match="would overwrite the source"):
        check_outputs(written_files(Outputs(video=photos), images), {"source": images})
    check_outputs(written_files(Outputs(video=tmp_path / "annotated"), images), {"source": images})
    assert frame_outputs(tmp_path / "one.jpg", images[:1]) == [tmp_path / "one.jpg"]  # one image: one file
    assert frame_outputs(tmp_path / "out.mp4", images) == [tmp_path / "out.mp4"]


def test_summary_files_count_as_outputs(tmp_path):
    outputs = written_files(Outputs(events=tmp_path / "s" / "summary.csv", summary_dir=tmp_path / "s"), [])
    with pytest.raises(OutputError, match="--events and --summary both write"):
        check_outputs(outputs, {})
