"""`--output x.mp4` plays in a real headless Chromium: a finished run's video, and one from a run killed mid-way."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import DATA, run_cli
from tests.test_serve_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_video import killed_run  # noqa: F401  (a fixture: the video of a run killed with SIGKILL)

WAIT_MS = 30_000
PLAYER = """<!doctype html><html><body>
<video id="video" src="{name}" muted autoplay playsinline></video>
<script>
  const video = document.getElementById("video");
  window.failure = null;
  video.addEventListener("error", () => {{ window.failure = video.error ? video.error.message || String(video.error.code) : "error"; }});
</script></body></html>"""

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} not found: install Debian's chromium (.ci/run does)")


def play(video: Path, until_s: float) -> dict:
    """Open the video in a page of its own, let it play past ``until_s`` seconds; what the element reports."""
    page_path = video.with_suffix(".html")
    page_path.write_text(PLAYER.format(name=video.name))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                             args=[*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page()
            page.goto(page_path.as_uri())
            page.wait_for_function("() => window.failure !== null || video.readyState >= 2", timeout=WAIT_MS)
            first = page.evaluate("() => video.currentTime")
            page.wait_for_function("(t) => window.failure !== null || video.currentTime >= t", arg=until_s,
                                   timeout=WAIT_MS)
            return page.evaluate("""() => ({failure: window.failure, readyState: video.readyState,
                width: video.videoWidth, height: video.videoHeight, duration: video.duration,
                time: video.currentTime})""") | {"first_time": first}
        finally:
            browser.close()


def test_the_annotated_video_plays_in_chromium(tmp_path):
    out = tmp_path / "annotated.mp4"
    result = run_cli("--source", str(DATA / "single_face.mp4"), "--headless", "--output", str(out))
    assert result.returncode == 0, result.stderr
    state = play(out, until_s=1.5)
    assert state["failure"] is None
    assert state["readyState"] >= 2 and (state["width"], state["height"]) == (640, 360)
    assert state["duration"] == pytest.approx(72 / 30, abs=0.1)
    assert state["time"] >= 1.5 > state["first_time"]  # it played: the time moved on


def test_the_video_of_a_killed_run_plays_in_chromium(killed_run):  # noqa: F811
    out, flushed = killed_run
    state = play(out, until_s=2.0)
    assert state["failure"] is None
    assert (state["width"], state["height"]) == (640, 360)
    assert state["duration"] >= (flushed - 60) / 30  # up to about a second before the kill
