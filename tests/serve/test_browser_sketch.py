"""Issue 11: the hardened sketchpad (serve.components: only the composite is kept and decoded) still
works with Gradio's real frontend: draw a stroke in chromium, reconstruct it, see the ink."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browser_harness import chromium_page
from PIL import Image
from serve_harness import Server, running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_app(["--experiment", str(experiment)], tmp_path_factory.mktemp("sketch-app")) as running:
        yield running


def test_draw_a_stroke_and_reconstruct_it(server: Server) -> None:
    with chromium_page(server.url, height=900) as page:
        page.get_by_role("tab", name="Reconstruct").click()
        sketch = page.locator("#reconstruct-sketch")
        assert "PNG, JPEG, WebP, GIF or BMP only" in page.content()  # the limits, where users see them
        sketch.get_by_role("button", name="Brush").click()
        box = sketch.locator("canvas").first.bounding_box()
        x, y = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.2
        page.mouse.move(x, y)
        page.mouse.down()
        for step in range(30):
            page.mouse.move(x, y + step * box["height"] * 0.02, steps=2)
        page.mouse.up()
        page.locator("#reconstruct-button").click()
        seen = page.locator("#reconstruct-input img")
        seen.wait_for(state="visible")
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=seen.element_handle())
        pixels = np.asarray(Image.open(io.BytesIO(page.request.get(seen.get_attribute("src")).body())).convert("L"))
    assert pixels.shape == (28, 28)
    assert pixels.max() > 200 and pixels[:, :4].max() < 30  # a light vertical stroke on black, centred
    assert "Traceback" not in server.output()
