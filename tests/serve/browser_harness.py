"""Debian's chromium driven by Playwright for the browser tests (Playwright cannot download its own
browsers here): one page on the app, closed with the browser whatever the test does. A test that ends well
lets the page's requests finish first (an upload cut off by the closing browser makes Gradio log a
ClientDisconnect traceback, which the tests that read the server's log would count against the app)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 60_000
IDLE_MS = 10_000  # at most this long for the page's requests to finish before the browser closes


@contextmanager
def chromium_page(url: str, *, height: int = 720, failure_shot: Path | None = None) -> Iterator[Any]:
    """A 1280 x ``height`` page opened at ``url``; on an exception, a screenshot to ``failure_shot``."""
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium (CI does, in .ci/run)"
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": height})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(url)
            try:
                yield page
            except Exception:
                if failure_shot is not None:
                    page.screenshot(path=str(failure_shot), full_page=True)
                raise
            try:
                page.wait_for_load_state("networkidle", timeout=IDLE_MS)
            except PlaywrightTimeout:
                pass  # a page that polls (the Search view's timer) may never be idle for long: close it anyway
        finally:
            browser.close()
