"""What a request to the app's queue may name and carry, checked before Gradio sees it.

A client runs an event of the app through the queue: the browser and gradio_client with POST
/gradio_api/queue/join {"fn_index": N, "data": [...], "session_hash": ...}, curl with POST
/gradio_api/call/<api_name> {"data": [...]}. Gradio answers a request that names no event with a 500 and a
traceback, and a value of the wrong kind (too few inputs, a string for a slider, a file path outside its upload
folder) with a traceback from inside the queue. EndpointTable refuses all of those up front with a 4xx status
and a message (serve.edge answers and logs them): 404 when the request names no endpoint, 422 when its inputs do
not fit the endpoint. Values that pass are of the kind each component reads; their range (a slider's bounds, a
dropdown's choices) is still checked by the component and the service.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from serve.gradio_internals import dependencies

SESSION_HASH = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the browser's random base-36 ids, gradio_client's uuid4s
MAX_DRAWING_ID_CHARS = 64
MAX_DRAWING_LAYERS = 4  # the sketchpad sends at most its one layer; layers are never read, only bounded here
FILE_DATA_META = {"_type": "gradio.FileData"}
OPTIONAL_FILE_FIELDS = {"url": str, "orig_name": str, "mime_type": str}  # each may also be null


class Refusal(Exception):
    """A request the app does not serve: ``status`` (4xx) and a message for the client and the log."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---- the kinds of input values ------------------------------------------------------------------


@dataclass(frozen=True)
class InputKind:
    """A kind of input value: ``problem(value, upload_folder)`` says what is wrong with a value, or None."""

    name: str
    problem: Callable[[Any, Path], str | None]


def _number_problem(value: Any, _folder: Path) -> str | None:
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)):
        return None
    return f"must be a finite number, got {_shown(value)}"


def _choice_problem(value: Any, _folder: Path) -> str | None:
    if value is None or (isinstance(value, (str, int, float)) and not isinstance(value, bool)):
        return None
    return f"must be one of its choices (a string or a number), got {_shown(value)}"


def _flag_problem(value: Any, _folder: Path) -> str | None:
    return None if value is None or isinstance(value, bool) else f"must be true or false, got {_shown(value)}"


def _file_problem(value: Any, folder: Path) -> str | None:
    """None or a FileData object naming a file uploaded to this server (POST /gradio_api/upload)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"must be an uploaded file or null, got {_shown(value)}"
    if isinstance(value.get("url"), str) and value["url"].startswith("data:"):
        return "is a data URL: send the image as an uploaded file (POST /gradio_api/upload)"
    if value.get("meta") != FILE_DATA_META:
        return f'must be an uploaded file with "meta": {{"_type": "gradio.FileData"}}, got {_shown(value)}'
    for field, kind in OPTIONAL_FILE_FIELDS.items():
        if value.get(field) is not None and not isinstance(value[field], kind):
            return f"has a {field} that is not a string: {_shown(value[field])}"
    size = value.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int)):
        return f"has a size that is not a whole number: {_shown(size)}"
    if value.get("is_stream"):
        return "must be an uploaded file, not a stream"
    return _upload_path_problem(value.get("path"), folder)


def _upload_path_problem(path: Any, folder: Path) -> str | None:
    if not isinstance(path, str) or not path or "\x00" in path:
        return "names no uploaded file (its path is missing)"
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(folder):
        return "is not a file uploaded to this server (POST /gradio_api/upload first)"
    if not real.is_file():
        return "is no longer on the server (uploads are kept for a while only): upload it again"
    return None


def _drawing_problem(value: Any, folder: Path) -> str | None:
    """None or the sketchpad's value: {"id": ...} naming the drawing its blobs were sent under, or files."""
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"must be a drawing or null, got {_shown(value)}"
    drawing_id = value.get("id")
    if drawing_id is not None and (not isinstance(drawing_id, str) or len(drawing_id) > MAX_DRAWING_ID_CHARS):
        return f"has an id that is not a string of at most {MAX_DRAWING_ID_CHARS} characters"
    layers = value.get("layers", [])
    if not isinstance(layers, list) or len(layers) > MAX_DRAWING_LAYERS:
        return f"has layers that are not a list of at most {MAX_DRAWING_LAYERS} files"
    for part in ("background", "composite"):
        problem = _file_problem(value.get(part), folder)
        if problem is not None:
            return f"has a {part} that {problem}"
    for layer in layers:
        problem = "is empty" if layer is None else _file_problem(layer, folder)
        if problem is not None:
            return f"has a layer that {problem}"
    return None


NUMBER = InputKind("number", _number_problem)
CHOICE = InputKind("choice", _choice_problem)
FLAG = InputKind("true/false", _flag_problem)
FILE = InputKind("file", _file_problem)
DRAWING = InputKind("drawing", _drawing_problem)
# The input components this app uses, by the kind of value each reads (the first match counts).
KINDS: tuple[tuple[type[gr.components.Component], InputKind], ...] = (
    (gr.Slider, NUMBER), (gr.Number, NUMBER), (gr.Dropdown, CHOICE), (gr.Radio, CHOICE), (gr.Checkbox, FLAG),
    (gr.File, FILE), (gr.ImageEditor, DRAWING),  # gr.Sketchpad is an ImageEditor
)


def kind_of(component: gr.components.Component) -> InputKind:
    """The kind of value ``component`` reads; a component of another type is a TypeError (add it to KINDS)."""
    for component_type, kind in KINDS:
        if isinstance(component, component_type):
            return kind
    raise TypeError(f"serve.endpoints does not know how to check a {type(component).__name__} input: add it to KINDS")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- endpoints ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Input:
    label: str
    kind: InputKind


@dataclass(frozen=True)
class Endpoint:
    """One event of the app a client may run: by fn_index (the queue) and, unless private, by name."""

    fn_index: int
    api_name: str | None
    by_name: bool  # callable as /gradio_api/call/<api_name> (Gradio's "public" and "undocumented" events)
    inputs: tuple[Input, ...]

    @property
    def shown(self) -> str:
        return f"/{self.api_name}" if self.by_name else f"fn_index {self.fn_index}"

    def check_data(self, data: Any, folder: Path) -> None:
        """Refuse (422) ``data`` unless it is a list of exactly one value of the right kind per input."""
        if not isinstance(data, list):
            raise Refusal(422, f"{self.shown}: data must be a list of its {len(self.inputs)} input values")
        if len(data) != len(self.inputs):
            plural = "" if len(self.inputs) == 1 else "s"
            raise Refusal(422, f"{self.shown} takes {len(self.inputs)} input value{plural}, got {len(data)}")
        for position, (value, expected) in enumerate(zip(data, self.inputs, strict=True)):
            problem = expected.kind.problem(value, folder)
            if problem is not None:
                raise Refusal(422, f"{self.shown}: input {position} ({expected.label}, a {expected.kind.name}) "
                                   f"{problem}")


class EndpointTable:
    """The app's endpoints, and the checks of the requests that run them."""

    def __init__(self, endpoints: list[Endpoint], upload_folder: Path) -> None:
        self.by_index = {endpoint.fn_index: endpoint for endpoint in endpoints}
        self.by_name = {endpoint.api_name: endpoint for endpoint in endpoints if endpoint.by_name and endpoint.api_name}
        self.upload_folder = upload_folder.resolve()

    @classmethod
    def from_blocks(cls, demo: gr.Blocks, upload_folder: Path) -> EndpointTable:
        """Every event of ``demo`` that runs Python; raises TypeError for an input it cannot check."""
        endpoints = [
            Endpoint(dependency.fn_index, dependency.api_name, dependency.visibility != "private",
                     tuple(Input(_short_label(component), kind_of(component)) for component in dependency.inputs))
            for dependency in dependencies(demo)
        ]
        return cls(endpoints, upload_folder)

    def named(self, api_name: str) -> Endpoint:
        """The endpoint /gradio_api/call/<api_name> runs; 404 for a name that is not one."""
        endpoint = self.by_name.get(api_name)
        if endpoint is None:
            raise Refusal(404, f"no endpoint is named {_shown(api_name)} (see /gradio_api/info)")
        return endpoint

    def check_join(self, body: Any) -> None:
        """POST /gradio_api/queue/join: refuse a body that names no endpoint (404) or does not fit it (422)."""
        body = _object(body)
        fn_index = body.get("fn_index")
        if isinstance(fn_index, bool) or not isinstance(fn_index, int):
            raise Refusal(422, f"fn_index must be a whole number, got {_shown(fn_index)}")
        endpoint = self.by_index.get(fn_index)
        if endpoint is None:
            raise Refusal(404, f"no endpoint has fn_index {fn_index}")
        _check_session(body)
        if body.get("batched"):
            raise Refusal(422, "no endpoint of this app takes a batch")
        endpoint.check_data(body.get("data"), self.upload_folder)

    def check_call(self, api_name: str, body: Any) -> None:
        """POST /gradio_api/call/<api_name>: as check_join, the endpoint named by ``api_name``."""
        endpoint = self.named(api_name)
        body = _object(body)
        _check_session(body)
        endpoint.check_data(body.get("data"), self.upload_folder)


def _short_label(component: gr.components.Component) -> str:
    """How messages name an input: its label up to any colon (the upload's label goes on with its limits)."""
    label = str(getattr(component, "label", None) or type(component).__name__)
    return label.split(":")[0].strip()


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise Refusal(422, f"the body must be a JSON object, got {_shown(body)}")
    return body


def _check_session(body: dict[str, Any]) -> None:
    session = body.get("session_hash")
    if session is not None and not (isinstance(session, str) and SESSION_HASH.fullmatch(session)):
        raise Refusal(422, "session_hash must be 1 to 64 letters, digits, '-' or '_'")
