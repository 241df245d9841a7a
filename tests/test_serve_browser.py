"""The web view in a real headless Chromium: the video plays, a face's label appears, the chart draws."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import DATA, looped_video
from tests.test_serve import Served

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright's own browser builds cannot be downloaded here
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "uncertain")
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} not found: install Debian's chromium (.ci/run does)")


def screenshot_path(tmp_path: Path) -> Path:
    """Where the page's screenshot goes: $FER_SCREENSHOT_DIR if set, else the test's temporary folder."""
    folder = Path(os.environ.get("FER_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "web_view.png"


def test_page_shows_the_live_video_labels_and_chart(tmp_path):
    errors: list[str] = []
    with Served(tmp_path, "--source", str(looped_video(tmp_path, 6))) as run:  # about 14 s at 30 fps
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("console", lambda message: message.type == "error" and errors.append(message.text))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(run.url + "/")  # Playwright's predicates below are functions: the page's policy forbids eval

            page.wait_for_function("() => document.getElementById('stream').naturalWidth === 640",
                                   timeout=WAIT_MS)
            before = page.locator("#stream").screenshot()
            page.wait_for_selector(".face .title", timeout=WAIT_MS)
            title = page.inner_text(".face .title")
            assert any(label in title for label in LABELS), title
            page.wait_for_function("() => samples.filter((s) => s[1]).length >= 4", timeout=WAIT_MS)  # chart
            page.wait_for_timeout(500)
            after = page.locator("#stream").screenshot()
            assert before != after  # the video updates
            assert page.inner_text("#state") == "live"
            assert float(page.inner_text("#fps")) > 0  # the pipeline's rate, shown (its value is the machine's)
            assert "detect" in page.inner_text("#latency")
            path = screenshot_path(tmp_path)
            page.screenshot(path=str(path))
            print(f"\nscreenshot: {path}")

            assert run.stop(signal.SIGINT) == 130
            page.wait_for_function("() => document.getElementById('state').textContent === 'stream closed'",
                                   timeout=WAIT_MS)
            browser.close()
    assert errors == []  # no script error, no blocked request (the page's security policy allows only itself)
    assert "Traceback" not in run.stderr()


def colored_columns(png: bytes, bgr: tuple[int, int, int] | None = None) -> np.ndarray:
    """The x positions (0..1 of the width) of a chart screenshot's columns that have line pixels: saturated
    colours (the grid and the labels are grey), or only those near ``bgr``."""
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
        lines = (hsv[..., 1] > 100) & (hsv[..., 2] > 100)
    else:
        lines = np.abs(image.astype(int) - bgr).max(axis=2) < 40
    return np.flatnonzero(lines.any(axis=0)) / image.shape[1]


def test_the_chart_fits_a_short_file_and_scrolls_a_long_run(tmp_path):
    with Served(tmp_path, "--source", str(DATA / "single_face.mp4"), "--serve-linger") as run:  # 2.4 s at 30 fps
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(run.url + "/")
            page.wait_for_function("() => document.getElementById('state').textContent === 'source ended'",
                                   timeout=WAIT_MS)
            page.wait_for_function("() => samples.filter((s) => s[1]).length >= 4", timeout=WAIT_MS)
            start, end = page.evaluate("() => chartAxis()")
            first, last = page.evaluate("() => [samples[0][0], samples[samples.length - 1][0]]")
            assert start == first and 0 <= end - last <= 0.25  # the run (to its last event), not a fixed minute
            assert 1 <= end - start < 10
            columns = colored_columns(page.locator("#chart").screenshot())
            assert columns.min() < 0.1 and columns.max() > 0.9, (columns.min(), columns.max())  # it fills the chart

            # A run of two minutes (here drawn from made-up samples): angry for the first, happy for the second.
            axis = page.evaluate("""() => {
                samples = [];
                for (let t = 0; t <= 120; t += 0.25) samples.push([t, labels.map((name) =>
                    name === (t < 60 ? "angry" : "happy") ? 0.9 : 0.01)]);
                latest = 120; drawChart(); return chartAxis();
            }""")
            assert axis == [60, 120]  # the last minute only
            png = page.locator("#chart").screenshot()
            assert colored_columns(png, bgr=(10, 217, 245)).size and colored_columns(png, bgr=(77, 72, 229)).size == 0
            browser.close()
        assert run.stop(signal.SIGINT) == 130
