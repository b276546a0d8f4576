"""Issue 18's fence: serve/gradio_internals.py is the one module that uses Gradio's non-public surface, and it was
checked with CHECKED_GRADIO. These tests fail, naming the field, when the installed Gradio leaves that range or
moves any of what the fence relies on; no other module of serve/ imports Gradio's internals."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
import pytest
from gradio.components import base, image_editor
from gradio.utils import get_upload_folder
from packaging.specifiers import SpecifierSet

from serve import gradio_internals
from serve.gradio_internals import CHECKED_GRADIO, dependencies, replace_preprocess, upload_folder

SERVE = Path(__file__).resolve().parents[2] / "serve"
INTERNAL_IMPORT = re.compile(r"^\s*(from|import) gradio\.")  # `import gradio as gr` and `from gradio import` are public


def test_the_installed_gradio_is_the_range_the_fence_was_checked_with() -> None:
    assert gr.__version__ in SpecifierSet(CHECKED_GRADIO), (
        f"gradio {gr.__version__} is outside {CHECKED_GRADIO}, the range serve/gradio_internals.py was checked with: "
        "check every field these tests name, then move CHECKED_GRADIO and pyproject.toml's pin together")


@pytest.mark.parametrize(("model", "fields"), [
    (image_editor.AcceptBlobs, {"data", "files"}),
    (image_editor.EditorData, {"background", "layers", "composite", "id"}),
    (image_editor.EditorDataBlobs, {"background", "layers", "composite"}),
])
def test_the_sketchpad_models_have_the_fields_the_fence_reads(model: type, fields: set[str]) -> None:
    missing = fields - set(model.model_fields)
    assert not missing, f"gradio.components.image_editor.{model.__name__} lost the field(s) {sorted(missing)}"


def test_the_sketchpad_receives_its_blobs_through_a_server_function_named_accept_blobs() -> None:
    sketch = gr.Sketchpad()
    assert callable(getattr(sketch, "accept_blobs", None)), "gr.Sketchpad has no accept_blobs any more"
    assert "accept_blobs" in sketch.get_config().get("server_fns", []), "accept_blobs is not a server function"
    assert getattr(base.server(lambda: None), "_is_server_fn", False), (
        "gradio.components.base.server no longer marks a function with _is_server_fn")


def test_keep_composite_only_replaces_the_server_function_gradio_calls() -> None:
    sketch = gr.Sketchpad()
    gradio_internals.keep_composite_only(sketch, max_bytes=10, max_pending=2)
    assert getattr(sketch.accept_blobs, "_is_server_fn", False)
    sketch.accept_blobs(gradio_internals.AcceptBlobs(data={"type": "composite", "index": None, "id": "a", "file": b""},
                                                     files=[("file", b"png")]))
    composite = gradio_internals.take_composite(sketch, gradio_internals.EditorData(id="a"))
    assert composite is not None and composite.read() == b"png"


def test_dependencies_reads_each_event_of_a_blocks() -> None:
    with gr.Blocks() as demo:
        number = gr.Number()
        text = gr.Textbox()
        gr.Button().click(lambda n: str(n), number, text, api_name="shown")
        text.change(lambda t: t, text, text, api_visibility="private")
        gr.Button().click(None, None, None, js="() => 1")  # JavaScript only: not a dependency a client can run
    found = list(dependencies(demo))
    assert [(d.api_name, d.visibility, d.inputs) for d in found] == [("shown", "public", (number,)),
                                                                     (found[1].api_name, "private", (text,))]
    assert len({d.fn_index for d in found}) == 2 and all(isinstance(d.fn_index, int) for d in found)


def test_gradio_calls_a_preprocess_replaced_on_the_instance() -> None:
    with gr.Blocks() as demo:
        number = gr.Number()
        text = gr.Textbox()
        gr.Button().click(lambda n: f"got {n}", number, text, api_name="shown")
    replace_preprocess(number, lambda payload: f"{payload} preprocessed")
    assert demo(4, api_name="shown") == "got 4 preprocessed", "Gradio no longer calls the instance's preprocess"


def test_upload_folder_is_gradios(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    assert upload_folder() == Path(get_upload_folder()).resolve() == tmp_path.resolve()


def test_no_other_serve_module_imports_gradio_internals() -> None:
    outside = {
        f"{path.name}: {line.strip()}"
        for path in SERVE.glob("*.py") if path.name != "gradio_internals.py"
        for line in path.read_text().splitlines()
        if INTERNAL_IMPORT.match(line)
    }
    assert not outside, f"Gradio internals imported outside serve/gradio_internals.py: {sorted(outside)}"
