"""Every use of Gradio's non-public surface, in this one module (issue 18's fence).

The rest of serve/ uses Gradio's public API only. What cannot be done with it lives here:

* the sketchpad's composite: Gradio's gr.Sketchpad receives each drawing as separate blobs (background, each
  layer, the composite) through its ``accept_blobs`` server function, keeps all of them in an unbounded dict and
  decodes every one with ``PIL.Image.open``; there is no public way to keep and decode only the composite, so
  ``keep_composite_only`` replaces that server function on the instance and ``take_composite`` reads what it kept;
* ``replace_preprocess``: a component's ``preprocess`` replaced on the instance (not in a subclass: Gradio's
  component metaclass writes a .pyi stub next to the module of every Component subclass at import time), so that
  a refused input becomes a message and one log line instead of a traceback;
* ``dependencies``: the app's events as the queue knows them (fn_index, api_name, visibility, input components),
  which the HTTP edge (serve.edge) checks requests against before Gradio sees them;
* ``upload_folder``: where Gradio keeps uploads (GRADIO_TEMP_DIR or its default).

CHECKED_GRADIO is the range of Gradio versions this was checked with; pyproject.toml pins the same range and
tests/serve/test_gradio_internals.py fails, naming the field, when a release moves any of it.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.components.base import server
from gradio.components.image_editor import AcceptBlobs, EditorData, EditorDataBlobs
from gradio.utils import get_upload_folder

CHECKED_GRADIO = ">=6.31,<6.32"

__all__ = ["CHECKED_GRADIO", "AcceptBlobs", "Dependency", "EditorData", "EditorDataBlobs", "dependencies",
           "keep_composite_only", "replace_preprocess", "take_composite", "upload_folder"]


@dataclass(frozen=True)
class Dependency:
    """One event of the app that runs a Python function, as a client names it."""

    fn_index: int  # what /gradio_api/queue/join's "fn_index" names
    api_name: str | None  # what /gradio_api/call/<api_name> names
    visibility: str  # "public", "undocumented" (callable, not listed) or "private" (the page's own events)
    inputs: tuple[gr.components.Component, ...]


def dependencies(demo: gr.Blocks) -> Iterator[Dependency]:
    """The events of ``demo`` that run a Python function (events that only run JavaScript are left out)."""
    for block_fn in demo.fns.values():
        config = block_fn.get_config()
        if config["backend_fn"]:
            yield Dependency(int(config["id"]), config["api_name"], str(config["api_visibility"]),
                             tuple(c for c in block_fn.inputs if isinstance(c, gr.components.Component)))


def upload_folder() -> Path:
    """The folder Gradio writes uploads to (and serves /gradio_api/file= from), resolved."""
    return Path(get_upload_folder()).resolve()


def replace_preprocess(component: gr.components.Component, preprocess: Callable[[Any], Any]) -> None:
    """Make Gradio call ``preprocess(payload)`` for this component instead of its class's method."""
    component.preprocess = preprocess  # type: ignore[method-assign,assignment]


def keep_composite_only(sketch: gr.Sketchpad, max_bytes: int, max_pending: int) -> None:
    """Make ``sketch`` keep, of the blobs the browser sends, only the composite (at most ``max_bytes``; larger
    ones are dropped unread), for at most ``max_pending`` drawings not yet used by a request (oldest dropped)."""
    storage: OrderedDict[str, EditorDataBlobs] = OrderedDict()
    sketch.blob_storage = storage

    @server
    def accept_blobs(data: AcceptBlobs) -> None:
        blob = data.data
        if blob.get("type") != "composite" or not data.files or blob.get("id") is None:
            return
        file = data.files[0][1]
        if len(file) > max_bytes:
            return  # take_composite then finds nothing for this drawing
        key = str(blob["id"])
        storage[key] = EditorDataBlobs(background=None, layers=[], composite=file)
        storage.move_to_end(key)
        while len(storage) > max_pending:
            storage.popitem(last=False)

    sketch.accept_blobs = accept_blobs


def take_composite(sketch: gr.Sketchpad, payload: EditorData) -> io.BytesIO | Path | None:
    """The composite a request names: the blob kept under ``payload.id`` (removed: each drawing is used once),
    or the uploaded file of ``payload.composite``; None when there is none. Layers and background are never
    read."""
    if payload.id is not None:
        kept = sketch.blob_storage.pop(payload.id, None)
        return io.BytesIO(kept.composite) if kept is not None and kept.composite is not None else None
    if payload.composite is not None and payload.composite.path:
        return Path(payload.composite.path)
    return None
