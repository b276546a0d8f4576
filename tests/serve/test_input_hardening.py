"""Issue 11, in-process: user images reach only the allowed decoders, the sketch's layers are never
decoded, a sketch's composite is decoded only if its header says it fits the canvas, and images are normalised
by their real range (16-bit, dark ink on grey paper)."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
from pathlib import Path

import gradio as gr
import numpy as np
import PIL.Image
import pytest
from gradio.data_classes import FileData
from PIL import EpsImagePlugin, Image

from serve import app
from serve.components import MAX_SKETCH_PIXELS, SKETCH_CANVAS
from serve.gradio_internals import AcceptBlobs, EditorData
from serve.images import ImageInputError, open_image, to_model_input
from serve.service import InvalidRequest, VAEService

EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n%%EndComments\n"
       b"newpath 4 4 moveto 24 24 lineto 4 setlinewidth stroke showpage\n%%EOF\n")


@pytest.fixture
def fake_gs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `gs` first on PATH that records each run in a marker file (Pillow's EPS plugin calls gs)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "gs-was-run"
    script = bin_dir / "gs"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> '{marker}'\nexit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # re-detect gs with this PATH
    return marker


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every PIL.Image.open call in this process, by the file name of what it opened."""
    calls: list[str] = []
    real_open = PIL.Image.open

    def counting_open(fp, *args, **kwargs):
        calls.append(os.path.basename(str(fp)) if isinstance(fp, (str, Path)) else type(fp).__name__)
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting_open)
    return calls


@pytest.fixture(scope="module")
def components(experiment: Path) -> tuple[gr.File, gr.Sketchpad]:
    """The app's own upload and sketch components, as build_app makes them."""
    demo = app.build_app(VAEService.from_experiment(experiment))
    blocks = list(demo.blocks.values())
    upload = next(b for b in blocks if isinstance(b, gr.File))
    sketch = next(b for b in blocks if isinstance(b, gr.Sketchpad))
    return upload, sketch


@pytest.mark.parametrize("kind", ["EPS", "TIFF", "ICO", "PPM", "TGA"])
def test_disallowed_formats_are_refused_without_running_a_decoder(
    kind: str, tmp_path: Path, fake_gs: Path, experiment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / f"digit.{kind.lower()}"
    if kind == "EPS":
        path.write_bytes(EPS)
    else:
        Image.new("L", (28, 28), 0).save(path, format=kind)
    started: list[object] = []
    import subprocess

    real_popen = subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a) or real_popen(*a, **k))
    service = VAEService.from_experiment(experiment)
    with pytest.raises(InvalidRequest, match=r"not an image this app reads \(PNG, JPEG, WebP, GIF or BMP only\)"):
        service.reconstruct(path)
    assert not fake_gs.exists() and started == []


def test_the_upload_component_passes_the_file_on_unopened(components, tmp_path: Path, fake_gs: Path,
                                                          opened: list[str]) -> None:
    upload, _ = components
    (tmp_path / "digit.eps").write_bytes(EPS)
    payload = FileData(path=str(tmp_path / "digit.eps"), orig_name="digit.eps")
    assert upload.preprocess(payload) == str(tmp_path / "digit.eps")
    assert opened == [] and not fake_gs.exists()


def _png(path: Path, side: int, value: int = 0) -> Path:
    Image.new("L", (side, side), value).save(path)
    return path


def _sketch_payload(tmp_path: Path, layers: int) -> EditorData:
    composite = _png(tmp_path / "composite.png", 280, 255)
    big = _png(tmp_path / "layer.png", 2048)
    return EditorData(background=FileData(path=str(composite)), composite=FileData(path=str(composite)),
                      layers=[FileData(path=str(big)) for _ in range(layers)])


def test_a_many_layer_sketch_decodes_no_more_than_a_one_layer_one(components, tmp_path: Path,
                                                                 opened: list[str]) -> None:
    _, sketch = components
    sketch.preprocess(_sketch_payload(tmp_path, 1))
    one_layer = list(opened)
    opened.clear()
    value = sketch.preprocess(_sketch_payload(tmp_path, 60))
    assert opened == one_layer == ["composite.png"]  # the composite only, once
    assert value["layers"] == [] and value["composite"].size == (280, 280)


def test_sketch_blobs_keep_only_a_bounded_composite(components, opened: list[str]) -> None:
    _, sketch = components
    buffer = io.BytesIO()
    Image.new("L", (280, 280), 255).save(buffer, format="PNG")
    layer = io.BytesIO()
    Image.new("L", (2048, 2048), 0).save(layer, format="PNG")
    for index in range(60):
        sketch.accept_blobs(AcceptBlobs(data={"type": "layer", "index": str(index), "id": "s1", "file": b""},
                                        files=[("file", layer.getvalue())]))
    sketch.accept_blobs(AcceptBlobs(data={"type": "layer", "index": str(10**7), "id": "s1", "file": b""},
                                    files=[("file", b"x")]))
    sketch.accept_blobs(AcceptBlobs(data={"type": "composite", "index": None, "id": "s1", "file": b""},
                                    files=[("file", buffer.getvalue())]))
    assert [len(b.layers) for b in sketch.blob_storage.values()] == [0]
    value = sketch.preprocess(EditorData(id="s1"))
    assert len(opened) == 1 and value["composite"].size == (280, 280)
    assert "s1" not in sketch.blob_storage


def _composite_blob(sketch: gr.Sketchpad, drawing_id: str, png: bytes) -> None:
    sketch.accept_blobs(AcceptBlobs(data={"type": "composite", "index": None, "id": drawing_id, "file": b""},
                                    files=[("file", png)]))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # an earlier app.main() may lower the limit
def test_a_composite_larger_than_the_canvas_allows_is_refused_from_its_header(
    components, opened: list[str], pixelless_png, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 4: 4096x4096 pixels compress to a small PNG (a pixelless header here: decoding it would fail with
    "damaged", so the message shows that only the header was read)."""
    _, sketch = components
    _composite_blob(sketch, "huge", pixelless_png(4096, 4096))
    capsys.readouterr()
    with pytest.raises(gr.Error, match=rf"too large: 4096x4096 pixels \(at most {MAX_SKETCH_PIXELS:,} pixels\)"):
        sketch.preprocess(EditorData(id="huge"))
    assert capsys.readouterr().err.splitlines() == [
        f"refused sketch: the drawing cannot be read: the image is too large: 4096x4096 pixels "
        f"(at most {MAX_SKETCH_PIXELS:,} pixels)"]
    assert opened == ["BytesIO"]


def test_a_composite_at_twice_the_canvas_resolution_is_read(components, tmp_path: Path) -> None:
    """A browser with device pixel ratio 2 exports the 280x280 canvas as 560x560: within the cap."""
    _, sketch = components
    side = 2 * SKETCH_CANVAS[0]
    buffer = io.BytesIO()
    Image.new("L", (side, side), 255).save(buffer, format="PNG")
    _composite_blob(sketch, "retina", buffer.getvalue())
    assert sketch.preprocess(EditorData(id="retina"))["composite"].size == (side, side)
    path = _png(tmp_path / "composite.png", 3 * SKETCH_CANVAS[0])
    with pytest.raises(gr.Error, match="too large: 840x840 pixels"):
        sketch.preprocess(EditorData(composite=FileData(path=str(path))))


def test_a_sketch_in_a_disallowed_format_is_refused(components, tmp_path: Path, fake_gs: Path) -> None:
    _, sketch = components
    (tmp_path / "sketch.png").write_bytes(EPS)  # the name does not decide the decoder
    with pytest.raises(gr.Error, match="not an image this app reads"):
        sketch.preprocess(EditorData(composite=FileData(path=str(tmp_path / "sketch.png"))))
    assert not fake_gs.exists()


def test_a_hostile_checkpoint_makes_the_app_exit_2_with_one_line(experiment: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = Path(shutil.copytree(experiment / "best", tmp_path / "ckpt"))
    meta = json.loads((folder / "checkpoint.json").read_text())
    meta["model_config"]["latent_width"] = 250000  # on main: a 2 GB model was built before the shape check
    (folder / "checkpoint.json").write_text(json.dumps(meta))
    assert app.main(["--checkpoint", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "latent_width must be an integer from 1 to 4096" in err
    assert len(err.splitlines()) == 1


# ---- normalisation by the image's real range ----------------------------------------------------


def _digit(side: int = 28) -> np.ndarray:
    """A light ring on black in [0, 1] (like an MNIST zero), with soft edges."""
    y, x = np.mgrid[:side, :side] / side
    radius = np.hypot(y - 0.5, x - 0.45)
    return np.clip(1.0 - np.abs(radius - 0.25) * side / 2.5, 0.0, 1.0).astype(np.float32)


def _load(tmp_path: Path, name: str, array: np.ndarray) -> np.ndarray:
    path = tmp_path / name
    Image.fromarray(array).save(path)
    return to_model_input(open_image(path))


@pytest.mark.parametrize("side", [28, 84])
def test_a_16_bit_png_gives_the_model_input_of_its_8_bit_version(tmp_path: Path, side: int) -> None:
    digit8 = np.round(_digit(side) * 255).astype(np.uint8)
    digit16 = digit8.astype(np.uint16) * 257  # the same levels on the 16-bit scale
    eight = _load(tmp_path, "d8.png", digit8)
    sixteen = _load(tmp_path, "d16.png", digit16)
    assert Image.open(tmp_path / "d16.png").mode.startswith("I")
    np.testing.assert_allclose(sixteen, eight, atol=1e-6)


@pytest.mark.parametrize("grey", [0.45, 0.6, 0.8])
@pytest.mark.parametrize("side", [28, 84])
def test_a_dark_digit_on_grey_gives_the_model_input_of_its_light_on_dark_version(tmp_path: Path, grey: float,
                                                                                side: int) -> None:
    digit = _digit(side)
    light_on_dark = _load(tmp_path, "light.png", np.round(digit * 65535).astype(np.uint16))
    dark_on_grey = _load(tmp_path, "grey.png", np.round(grey * (1.0 - digit) * 65535).astype(np.uint16))
    np.testing.assert_allclose(dark_on_grey, light_on_dark, atol=2e-3)
    eight = _load(tmp_path, "grey8.png", np.round(grey * (1.0 - digit) * 255).astype(np.uint8))
    np.testing.assert_allclose(eight, light_on_dark, atol=0.02)  # 8-bit rounding of the grey levels


def test_uniform_grey_is_still_blank(tmp_path: Path) -> None:
    with pytest.raises(ImageInputError, match="blank"):
        _load(tmp_path, "grey.png", np.full((40, 40), 150, np.uint8))
