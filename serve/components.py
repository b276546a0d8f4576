"""The app's two input components, hardened: Gradio's own gr.Image and gr.Sketchpad open every image
they receive with ``PIL.Image.open`` (any installed decoder, before the handler runs) and the Sketchpad
decodes each of its layers although the app uses only the composite. These subclasses decode nothing
themselves except through serve.images (ALLOWED_FORMATS, MAX_INPUT_PIXELS):

* digit_upload passes the uploaded file's path on unopened (the handler opens it with serve.images).
* digit_sketchpad keeps and decodes only the composite, at most MAX_SKETCH_BYTES of it; layers and the
  background are never stored or read.

A refused input becomes a gr.Error with ``print_exception=False``: a message for the user and no
traceback in the server log.
"""

from __future__ import annotations

import io
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components.base import server
from gradio.components.image_editor import AcceptBlobs, EditorData, EditorDataBlobs
from gradio.data_classes import ImageData

from serve.images import FORMAT_NAMES, ImageInputError, open_image

MAX_SKETCH_BYTES = 2 * 1024 * 1024  # the 280x280 canvas exports well under 100 KB
MAX_PENDING_SKETCHES = 64  # composites received by accept_blobs and not yet used by a request


def user_error(message: str, where: str = "upload") -> gr.Error:
    """A gr.Error for the user, logged as one line in the server log (no traceback)."""
    log_refusal(where, message)
    return gr.Error(message, print_exception=False)


def log_refusal(where: str, message: str) -> None:
    print(f"refused {where}: {message}", file=sys.stderr, flush=True)


def digit_upload(**kwargs: Any) -> gr.Image:
    """gr.Image(type="filepath", **kwargs) whose preprocess passes the uploaded path on unopened (Gradio's
    own calls ``PIL.Image.open`` on it without ``formats=``).

    The hardened methods are bound to the instance rather than defined in a subclass: Gradio's component
    metaclass writes a .pyi stub next to the module of every Component subclass at import time."""
    component = gr.Image(type="filepath", **kwargs)
    component.preprocess = types.MethodType(_upload_preprocess, component)  # type: ignore[method-assign]
    return component


def digit_sketchpad(**kwargs: Any) -> gr.Sketchpad:
    """gr.Sketchpad(type="pil", **kwargs) that stores and decodes only its composite, capped in bytes and
    pixels (see digit_upload for why the methods are bound to the instance)."""
    component = gr.Sketchpad(type="pil", **kwargs)
    component.blob_storage = OrderedDict()
    component.accept_blobs = types.MethodType(_sketch_accept_blobs, component)  # type: ignore[method-assign]
    component.preprocess = types.MethodType(_sketch_preprocess, component)  # type: ignore[method-assign]
    return component


def _upload_preprocess(self: gr.Image, payload: ImageData | None) -> str | None:
    if payload is None:
        return None
    if payload.url and payload.url.startswith("data:"):
        raise user_error(f"send the image as an uploaded {FORMAT_NAMES} file, not as a data URL")
    if payload.path is None:
        raise user_error("no image file was received")
    return str(payload.path)


@server
def _sketch_accept_blobs(self: gr.Sketchpad, data: AcceptBlobs) -> None:
    """Keep the composite the browser sends (bounded); drop layers and background unread."""
    if data.data.get("type") != "composite":
        return
    file = data.files[0][1]
    if len(file) > MAX_SKETCH_BYTES:
        return  # preprocess then finds no composite and says so
    key = str(data.data["id"])
    self.blob_storage[key] = EditorDataBlobs(background=None, layers=[], composite=file)
    self.blob_storage.move_to_end(key)
    while len(self.blob_storage) > MAX_PENDING_SKETCHES:
        self.blob_storage.popitem(last=False)


def _sketch_preprocess(self: gr.Sketchpad, payload: EditorData | None) -> dict[str, Any] | None:
    if payload is None:
        return None
    source: io.BytesIO | Path | None = None
    if payload.id is not None:
        cached = self.blob_storage.pop(payload.id, None)
        if cached is not None and cached.composite is not None:
            source = io.BytesIO(cached.composite)
    elif payload.composite is not None and payload.composite.path:
        source = Path(payload.composite.path)
        if source.stat().st_size > MAX_SKETCH_BYTES:
            raise user_error(f"the drawing is too large (at most {MAX_SKETCH_BYTES // 1024} KB)", "sketch")
    if source is None:
        return {"background": None, "layers": [], "composite": None}
    try:
        composite = open_image(source)
    except ImageInputError as exc:
        raise user_error(f"the drawing cannot be read: {exc}", "sketch") from exc
    return {"background": None, "layers": [], "composite": composite}


def quiet_refusals(demo: gr.Blocks) -> None:
    """Make every input component's own validation errors (a slider's bounds, a dropdown's choices) log one
    line instead of a traceback: Gradio raises those as gr.Error with print_exception=True."""
    for block in demo.blocks.values():
        if isinstance(block, gr.components.Component) and "preprocess" not in vars(block):
            block.preprocess = types.MethodType(_quiet(type(block).preprocess), block)  # type: ignore[method-assign]


def _quiet(preprocess: Any) -> Any:
    def wrapper(self: gr.components.Component, payload: Any) -> Any:
        try:
            return preprocess(self, payload)
        except gr.Error as exc:
            if exc.print_exception:
                log_refusal(getattr(self, "label", None) or type(self).__name__, str(exc.message))
                exc.print_exception = False
            raise

    return wrapper
