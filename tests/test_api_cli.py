"""The CLI's conventions: --version, --set overrides, the progress bar on a terminal (and nowhere else), --quiet."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from edge.config import Config, ConfigError, load_config, parse_setting, set_key, tomllib  # tomli on 3.10
from edge.progress import PlainBar, Progress, duration, expected_frames
from tests.conftest import DATA, ROOT, run_cli, shm_segments

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
REPORT = re.compile(r"^\d+ frames in [\d.]+ s \([\d.]+ frames/s\)")


# --- --version ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["-m", "edge.run"], ["-m", "edge"]])
def test_version(command):
    done = subprocess.run([sys.executable, *command, "--version"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"fer-edge {VERSION}", done


# --- --set ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("detector.haar.min_neighbors=5", ("detector.haar.min_neighbors", 5)),
    ("detector.haar.min_face = 0.1", ("detector.haar.min_face", 0.1)),
    ("render.probabilities=true", ("render.probabilities", True)),
    ("classifier.model=fer2013-mini-xception", ("classifier.model", "fer2013-mini-xception")),  # a bare word
    ('detector.haar.cascade="my cascade.xml"', ("detector.haar.cascade", "my cascade.xml")),
    ("detector.haar.verify_cascade=", ("detector.haar.verify_cascade", "")),
    ("render.codec=h264", ("render.codec", "h264")),
    ("detector.haar.min_face", ConfigError),
    ("=5", ConfigError),
    ("detector..min_face=0.1", ConfigError),
])
def test_parse_setting(text, expected):
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="--set takes section.key=value"):
            parse_setting(text)
    else:
        assert parse_setting(text) == expected


def test_set_key_sets_what_the_file_would(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text("[detector]\nkind = 'haar'\n[detector.haar]\nmin_neighbors = 5\nmin_face = 0.1\n"
                    "[smoothing]\nenabled = false\n")
    by_keys = set_key(set_key(set_key(Config(), "detector.haar.min_neighbors", 5), "detector.haar.min_face", 0.1),
                      "smoothing.enabled", False)
    by_table = set_key(set_key(Config(), "detector", {"kind": "haar", "haar": {"min_neighbors": 5, "min_face": 0.1}}),
                       "smoothing", {"enabled": False})
    assert by_keys == by_table == load_config(toml)


@pytest.mark.parametrize("setting, toml, message", [
    ("detector.haar.min_face=2", "[detector.haar]\nmin_face = 2", "config key detector.haar.min_face must be <= 1.0, got 2.0"),
    ("detector.haar.nope=1", "[detector.haar]\nnope = 1", "unknown config key detector.haar.nope (known: cascade,"),
    ("tracker.max_missed=1.5", "[tracker]\nmax_missed = 1.5", "config key tracker.max_missed must be int, got float 1.5"),
    ("render.probabilities=yes", "[render]\nprobabilities = 'yes'", "config key render.probabilities must be bool"),
    ("smoothing.method=median", "[smoothing]\nmethod = 'median'", "config key smoothing.method must be one of"),
    ("nope.key=1", "[nope]\nkey = 1", "unknown config key nope (known: capture, detector,"),
])
def test_a_bad_setting_is_the_config_file_s_one_line_error(tmp_path, setting, toml, message):
    config = tmp_path / "bad.toml"
    config.write_text(toml + "\n")
    by_file = run_cli("--config", str(config), "--validate-config", timeout=60)
    by_set = run_cli("--set", setting, "--validate-config", timeout=60)
    for done in (by_file, by_set):
        assert done.returncode == 2 and "Traceback" not in done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("error: ") and message in line, line
    assert by_set.stderr == by_file.stderr


@pytest.mark.parametrize("setting, message", [
    ("detector=haar", "config key detector is a table, not a value: set its keys, e.g. detector.kind"),
    ("detector.kind.x=1", "config key detector.kind is a value, not a table"),
    ("min_face", "--set takes section.key=value"),
])
def test_a_setting_at_the_wrong_place_says_where(setting, message):
    done = run_cli("--set", setting, "--validate-config", timeout=60)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: ") and message in line


def test_settings_apply_over_the_config_file_in_order(tmp_path):
    config = tmp_path / "small.toml"
    config.write_text("[detector.haar]\nmin_face = 0.4\n")  # no face of multi_face.jpg is that large
    events = tmp_path / "faces.jsonl"
    common = ("--source", str(DATA / "multi_face.jpg"), "--headless", "--events", str(events))
    done = run_cli(*common, "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert '"faces": []' in events.read_text()
    done = run_cli(*common, "--config", str(config), "--set", "detector.haar.min_face=0.3",
                   "--set", "detector.haar.min_face=0.05", "--set", "detector.haar.min_neighbors=4")
    assert done.returncode == 0, done.stderr
    assert events.read_text().count('"box"') == 5
    done = run_cli("--config", str(config), "--set", "detector.haar.min_neighbors=5", "--validate-config")
    assert done.returncode == 0 and "config OK" in done.stdout


# --- the progress bar -------------------------------------------------------------------------------------------

def run_on_terminal(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, str]:
    """`python -m edge.run ARGS` with stderr on a pseudo-terminal (80 x 24) and stdout a pipe: exit code,
    what the terminal got, what stdout got."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    environment = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    process = subprocess.Popen([sys.executable, "-m", "edge.run", *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=slave, env={**environment, **(env or {})})
    os.close(slave)
    terminal = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                raise AssertionError(f"no output for {timeout} s: {terminal!r}")
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has closed it
                break
            if not chunk:
                break
            terminal += chunk
        stdout = process.stdout.read()
        process.wait(timeout=timeout)
    finally:
        process.kill()
        os.close(master)
    assert shm_segments(process.pid) == []
    return process.returncode, terminal.decode(), stdout.decode()


def final_lines(terminal: str) -> list[str]:
    """What the terminal shows at the end: each line as its last carriage return left it."""
    return [line.rsplit("\r", 1)[-1] for line in terminal.replace("\r\n", "\n").split("\n") if line.rsplit("\r", 1)[-1].strip()]


@pytest.fixture(scope="module")
def no_tqdm(tmp_path_factory) -> dict[str, str]:
    """An environment in which `import tqdm` fails, as on an install without it."""
    folder = tmp_path_factory.mktemp("no_tqdm")
    (folder / "tqdm").mkdir()
    (folder / "tqdm" / "__init__.py").write_text("raise ImportError('tqdm is blocked for this test')\n")
    return {"PYTHONPATH": str(folder)}


@pytest.mark.parametrize("bar", ["tqdm", "plain"])
def test_a_file_shows_its_progress_on_a_terminal_and_ends_with_the_report_line(tmp_path, bar, no_tqdm):
    summary = tmp_path / "summary"
    code, terminal, stdout = run_on_terminal("--source", str(DATA / "single_face.mp4"), "--headless",
                                             "--summary", str(summary), env=no_tqdm if bar == "plain" else None)
    assert code == 0, terminal
    assert re.search(r"single_face\.mp4: .*\b\d+/72\b", terminal), terminal  # frames done of the container's count
    assert "frames/s" in terminal.split("72 frames in")[0]  # the bar's rate, before the report
    if bar == "plain":
        assert "single_face.mp4: 72/72 frames (100%)" in terminal and "ETA 0:00" in terminal
    else:
        assert "%|" in terminal  # tqdm's bar
    shown = final_lines(terminal)
    assert REPORT.match(shown[-1]), shown  # the bar is gone: the report is the last line, alone
    assert not any("/72" in line for line in shown)
    assert "\r" not in stdout and "/72" not in stdout  # stdout (the summary's table) has none of it
    assert "track" in stdout and (summary / "summary.json").is_file()


def test_quiet_and_live_sources_have_no_bar(tmp_path):
    code, terminal, _ = run_on_terminal("--source", str(DATA / "single_face.mp4"), "--headless", "--quiet")
    assert code == 0 and "/72" not in terminal and "\r" not in terminal.replace("\r\n", "\n"), terminal
    assert REPORT.match(final_lines(terminal)[-1])
    code, terminal, _ = run_on_terminal("--source", str(DATA / "single_face.mp4"), "--headless", "--live", "yes")
    assert code == 0 and "/72" not in terminal, terminal
    shown = final_lines(terminal)
    assert shown and REPORT.match(shown[-1]), terminal  # the run's report reached the terminal, and no bar


def test_no_bar_when_stderr_is_not_a_terminal():
    done = run_cli("--source", str(DATA / "single_face.mp4"), "--headless")
    assert done.returncode == 0
    (line,) = done.stderr.splitlines()
    assert REPORT.match(line) and "\r" not in done.stderr


def test_a_folder_counts_its_images(tmp_path):
    for name in ("multi_face.jpg", "single_face.jpg"):
        (tmp_path / name).write_bytes((DATA / name).read_bytes())
    code, terminal, _ = run_on_terminal("--source", str(tmp_path), "--headless")
    # the bar counts the folder's 2 images (how far it got before the end depends on tqdm's redraw interval)
    assert code == 0 and re.search(r"\b[0-2]/2\b", terminal), terminal
    assert REPORT.match(final_lines(terminal)[-1])


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeSource:
    name = "/videos/clip.mp4"
    live = False
    still = False
    frame_count = 10


@pytest.mark.parametrize("bar", ["tqdm", "plain"])
def test_a_log_line_never_shares_the_bar_s_line(monkeypatch, bar):
    if bar == "plain":
        monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm raises ImportError
    terminal = Terminal()
    handler = logging.StreamHandler(terminal)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        progress = Progress(stream=terminal)
        progress.open(FakeSource())
        assert isinstance(progress.bar, PlainBar) == (bar == "plain")
        for _ in range(5):
            progress.write(None, None)
        logging.getLogger("edge.test").warning("a warning mid-run")
        for _ in range(5):
            progress.write(None, None)
        progress.close()
        assert handler.filters == []  # the bar's hook is gone with it
    finally:
        root.removeHandler(handler)
    text = terminal.getvalue()
    before, after = text.split("a warning mid-run\n")
    assert "clip.mp4" in before and before.rsplit("\r", 1)[-1] == ""  # the bar was cleared back to column 0
    assert text.rsplit("\r", 1)[-1] == ""  # and cleared at the end


def test_progress_is_off_unless_asked_and_on_a_terminal():
    assert not Progress(stream=io.StringIO()).enabled
    assert not Progress(quiet=True, stream=Terminal()).enabled
    progress = Progress(stream=Terminal())
    live = FakeSource()
    live.live = True
    progress.open(live)
    assert progress.bar is None


def test_plain_bar_text():
    bar = PlainBar(io.StringIO(), "clip.mp4", 100)
    bar.n, bar.first = 51, 10.0
    assert bar.text(now=12.0) == "clip.mp4: 51/100 frames (51%), 25.0 frames/s, ETA 0:02"
    bar.total = None
    assert bar.text(now=12.0) == "clip.mp4: 51 frames, 25.0 frames/s"
    bar.total = 40  # a container's count that was short
    assert bar.text(now=12.0).startswith("clip.mp4: 51/51 frames (100%)")
    assert duration(3725) == "1:02:05" and duration(65) == "1:05"


def test_expected_frames():
    source = FakeSource()
    assert expected_frames(source) == 10
    source.frame_count = 0
    assert expected_frames(source) is None
    source.still, source.frame_count = True, 2  # a folder of two images
    assert expected_frames(source) == 2
