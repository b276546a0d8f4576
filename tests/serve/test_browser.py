"""The Generate view in a real browser: Debian's chromium driven by playwright.

CI installs chromium (.ci/run); without /usr/bin/chromium this test fails rather than skips.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_harness import chromium_page
from PIL import Image
from serve_harness import Server, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_app(["--experiment", str(experiment)], tmp_path_factory.mktemp("browser-app")) as running:
        yield running


def test_pick_a_digit_and_generate(server: Server, tmp_path: Path) -> None:
    with chromium_page(server.url) as page:
        page.get_by_role("combobox", name="Class").click()
        page.get_by_role("option", name="7", exact=True).click()
        assert page.get_by_role("combobox", name="Class").input_value() == "7"
        page.locator("#generate-button").click()
        samples = page.locator("#generate-samples img")
        samples.wait_for(state="visible")
        page.locator("#generate-examples img").wait_for(state="visible")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=samples.element_handle())
        assert samples.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [242, 62]  # 16 samples, 8 a row
        grid = Image.open(io.BytesIO(page.request.get(samples.get_attribute("src")).body()))
        assert grid.size == (242, 62) and grid.convert("L").getextrema()[1] > 100  # white-ish ink drawn
        shot = page.screenshot(path=str(tmp_path / "generate.png"), full_page=False)
    assert Image.open(io.BytesIO(shot)).size == (1280, 720)
