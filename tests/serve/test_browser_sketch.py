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


def test_upload_a_digit_and_reconstruct_it(server: Server, tmp_path: Path) -> None:
    """The upload is Gradio's public gr.File; what the browser sends for it passes serve.edge's checks."""
    digit = Image.new("L", (84, 84), 255)
    digit.paste(0, (38, 14, 46, 70))  # a dark vertical bar on white paper, as a photographed "1"
    digit.save(tmp_path / "one.png")
    with chromium_page(server.url, height=900) as page:
        page.get_by_role("tab", name="Reconstruct").click()
        seen = page.locator("#reconstruct-input img")
        seen.wait_for(state="visible")  # the view opens with a real example (a 0) reconstructed
        example = seen.get_attribute("src")
        page.locator("#reconstruct-upload input[type=file]").set_input_files(str(tmp_path / "one.png"))
        page.locator("#reconstruct-upload").get_by_text("one.png").wait_for()
        page.locator("#reconstruct-button").click()
        page.wait_for_function("([img, before]) => img.complete && img.naturalWidth > 0 && img.src !== before",
                               arg=[seen.element_handle(), example])
        pixels = np.asarray(Image.open(io.BytesIO(page.request.get(seen.get_attribute("src")).body())).convert("L"))
    middle = pixels[6:22]
    assert pixels.shape == (28, 28) and middle[:, 12:16].max(axis=1).min() > 150  # light ink down the middle
    assert middle[:, :9].max() < 30 and middle[:, 19:].max() < 30  # and none to the sides: a 1, not the 0
    assert "refused" not in server.output() and "Traceback" not in server.output()
