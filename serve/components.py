"""The app's two image inputs, hardened, and one log line for every input a component refuses.

Neither input decodes anything itself; images are opened by serve.images only (ALLOWED_FORMATS, size checked
from the header before any pixel is decoded):

* digit_upload is Gradio's public gr.File: it passes the uploaded file's path on unopened (gr.Image would open it
  with ``PIL.Image.open`` and every installed decoder). serve.edge refuses, before the queue, a file value that is
  not an upload of this server (another path, a URL, a data URL).
* digit_sketchpad keeps only the composite of a drawing (serve.gradio_internals), at most MAX_SKETCH_BYTES of it,
  and decodes it only if its header says it fits the canvas: at most MAX_SKETCH_PIXELS.

A refused input becomes a gr.Error with ``print_exception=False``: a message for the user and one line in the
server log, no traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from serve.gradio_internals import (
    EditorData,
    dependencies,
    keep_composite_only,
    replace_preprocess,
    take_composite,
)
from serve.images import ImageInputError, open_image
from serve.server_log import log_refusal

SKETCH_CANVAS = (280, 280)  # the Reconstruct view's drawing canvas, in pixels
# A browser exports the canvas at its device pixel ratio (2 on most phones and laptops): 4x the area covers that.
MAX_SKETCH_PIXELS = 4 * SKETCH_CANVAS[0] * SKETCH_CANVAS[1]
MAX_SKETCH_BYTES = 2 * 1024 * 1024  # the 280x280 canvas exports well under 100 KB
MAX_PENDING_SKETCHES = 64  # composites received by accept_blobs and not yet used by a request


def user_error(message: str, where: str = "upload") -> gr.Error:
    """A gr.Error for the user, logged as one line in the server log (no traceback)."""
    log_refusal(where, message)
    return gr.Error(message, print_exception=False)


def digit_upload(**kwargs: Any) -> gr.File:
    """gr.File(type="filepath", file_count="single", **kwargs): the handler gets the uploaded file's path,
    unopened."""
    return gr.File(type="filepath", file_count="single", **kwargs)


def digit_sketchpad(**kwargs: Any) -> gr.Sketchpad:
    """gr.Sketchpad(canvas_size=SKETCH_CANVAS, **kwargs) that keeps and decodes only its composite, capped in
    bytes (MAX_SKETCH_BYTES) and pixels (MAX_SKETCH_PIXELS); the handler gets {"composite": PIL image or None}."""
    sketch = gr.Sketchpad(type="pil", canvas_size=SKETCH_CANVAS, **kwargs)
    keep_composite_only(sketch, MAX_SKETCH_BYTES, MAX_PENDING_SKETCHES)
    replace_preprocess(sketch, lambda payload: _sketch_value(sketch, payload))
    return sketch


def _sketch_value(sketch: gr.Sketchpad, payload: EditorData | None) -> dict[str, Any] | None:
    """The drawing's composite, decoded by serve.images within the sketch caps (layers and background unread)."""
    if payload is None:
        return None
    source = take_composite(sketch, payload)
    if source is None:
        return {"background": None, "layers": [], "composite": None}
    try:
        composite = open_image(source, max_pixels=MAX_SKETCH_PIXELS, max_bytes=MAX_SKETCH_BYTES)
    except ImageInputError as exc:
        raise user_error(f"the drawing cannot be read: {exc}", "sketch") from exc
    return {"background": None, "layers": [], "composite": composite}


def quiet_refusals(demo: gr.Blocks) -> None:
    """Make every input component of ``demo``'s events log one line, not a traceback, for a value it refuses:
    Gradio raises its own validation errors (a slider's bounds, a dropdown's choices) as gr.Error with
    print_exception=True, and any other exception of a preprocess (a value of the wrong kind) as an error with a
    traceback. Both become a gr.Error for the user with print_exception=False and one line in the log."""
    seen: set[int] = set()
    for dependency in dependencies(demo):
        for component in dependency.inputs:
            if id(component) not in seen:
                seen.add(id(component))
                replace_preprocess(component, _quiet(component, component.preprocess))


def _quiet(component: gr.components.Component, preprocess: Callable[[Any], Any]) -> Callable[[Any], Any]:
    where = getattr(component, "label", None) or type(component).__name__

    def quiet_preprocess(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except gr.Error as exc:
            if exc.print_exception:
                log_refusal(str(where), str(exc.message))
                exc.print_exception = False
            raise
        except Exception as exc:  # noqa: BLE001 - a value the component cannot read: refused, not a server error
            raise user_error(f"{where}: this value cannot be used ({type(exc).__name__})", str(where)) from exc

    return quiet_preprocess
