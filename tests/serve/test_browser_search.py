"""The Search view in a real browser while a small search runs (Debian's chromium driven by playwright).

The page opens with images already drawn; the Search tab's leaderboard and plots fill in and keep
refreshing (gr.Timer) while trials run; the served-model line says it follows the search; when the search
ends, the view says so and the app serves best/. With
VAESEARCH_UPDATE_SCREENSHOTS=1 the screenshot is also written to docs/screenshot-search.png.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
from browser_harness import chromium_page
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from search_harness import running_search
from serve_harness import REPO, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOT = REPO / "docs" / "screenshot-search.png"
ROUNDS = 8


def trial_rounds(page) -> int:
    match = re.search(r"(\d+) trial-rounds", page.locator("#search-status").inner_text())
    return int(match.group(1)) if match else 0


# In the page: as many lines drawn in the curves plot and points in the space plot as the leaderboard has trials
# (at least two), also for the trials and statuses that appeared after the plots' first drawing.
DRAWN = """([board, curves, space]) => {
  const trials = new Set(document.querySelector(board).innerText.match(/\\b[0-9a-f]{8}\\b/g) || []).size;
  const drawn = (sel) => [...document.querySelectorAll(sel)].filter(p => (p.getAttribute("d") || "").length > 0).length;
  const lines = drawn(curves + " g.mark-line.role-mark path"), points = drawn(space + " g.mark-symbol.role-mark path");
  return trials >= 2 && lines === trials && points === trials;
}"""


def test_search_view_refreshes_while_a_search_runs(tmp_path: Path) -> None:
    with running_search(tmp_path / "search", trials=3, rounds=ROUNDS) as search, \
            running_app(["--experiment", str(search.experiment), "--wait", "240"], tmp_path / "app") as server, \
            chromium_page(server.url, height=900, failure_shot=tmp_path / "failure.png") as page:
        # Every event the page sends (the timer's ticks among them), for the failure message.
        joins: list[float] = []
        page.on("request", lambda r: joins.append(time.monotonic()) if "/queue/join" in r.url else None)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # Every view renders once when the page opens: Generate shows samples without a click.
        samples = page.locator("#generate-samples img")
        samples.wait_for(state="visible")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=samples.element_handle())
        page.get_by_text("Following the running search").wait_for()

        page.get_by_role("tab", name="Search").click()
        page.wait_for_function("() => /RUNNING|FINISHED/.test(document.querySelector('#search-leaderboard')"
                               ".innerText)")
        for plot in ("#search-best-rounds", "#search-best-time", "#search-curves"):
            page.locator(f"{plot} canvas, {plot} svg.marks").first.wait_for()
        first = trial_rounds(page)
        deadline = time.monotonic() + 120
        # The timer redraws the view; for the screenshot, wait until a second trial is under way.
        while trial_rounds(page) <= max(first, ROUNDS + 1) and search.process.poll() is None:
            assert time.monotonic() < deadline, "the Search view did not refresh"
            page.wait_for_timeout(500)
        assert trial_rounds(page) > first or search.process.poll() is not None
        page.wait_for_timeout(1000)
        # Every trial of the leaderboard is drawn in the curves plot (its legend names them), and every status
        # in the space plot, also those that appeared after the plots' first drawing.
        page.wait_for_function(DRAWN, arg=["#search-leaderboard", "#search-curves", "#search-space"],
                               timeout=15_000)
        shot = tmp_path / "search.png"
        page.screenshot(path=str(shot), full_page=True)
        # When the search ends, the timer picks up its export: the view says so and best/ is served.
        assert search.wait() == 0, search.output()[-3000:]
        ended = time.monotonic()
        try:
            page.locator("#search-status").get_by_text("ended and exported").wait_for()
        except PlaywrightTimeout:
            pytest.fail(f"the Search view did not show the export: {sum(t > ended for t in joins)} event(s) sent "
                        f"since the search ended ({len(joins)} in all); status: "
                        f"{page.locator('#search-status').inner_text()!r}; page errors: {errors[-5:]}\n"
                        f"app log:\n{server.output()[-3000:]}")
        page.get_by_text("Serving best").wait_for()
        # The export's hyperparameter importances are drawn, one bar per searched hyperparameter (lr among them).
        page.locator("#search-importance text", has_text=re.compile(r"^lr$")).first.wait_for()
    assert shot.stat().st_size > 10_000
    if os.environ.get("VAESEARCH_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, SCREENSHOT)
