"""The web view in a real headless Chromium: the video plays, a face's label appears, the chart draws."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import looped_video
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
