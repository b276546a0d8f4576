"""Issues 1 and 2, in-process: serve.endpoints refuses, before Gradio sees them, queue requests that name no
endpoint (404) or carry inputs the endpoint cannot take (422), with a message naming the input; well-formed
requests pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from serve.endpoints import EndpointTable, Refusal, kind_of
from serve.service import VAEService
from serve.ui import build_app

API_NAMES = {"generate", "prior", "interpolate", "reconstruct", "search_progress", "model_info", "switch_model"}
FILE_META = {"_type": "gradio.FileData"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The upload folder the table checks file inputs against, with one uploaded file."""
    folder = tmp_path_factory.mktemp("uploads")
    (folder / "abc").mkdir()
    (folder / "abc" / "digit.png").write_bytes(b"\x89PNG")
    return folder


@pytest.fixture(scope="module")
def table(experiment: Path, folder: Path) -> EndpointTable:
    return EndpointTable.from_blocks(build_app(VAEService.from_experiment(experiment)), folder)


def uploaded(folder: Path, **extra: Any) -> dict[str, Any]:
    return {"path": str(folder / "abc" / "digit.png"), "meta": FILE_META, "orig_name": "digit.png", **extra}


def generate(table: EndpointTable, data: list[Any], **extra: Any) -> dict[str, Any]:
    return {"fn_index": table.named("generate").fn_index, "data": data, "session_hash": "s1", **extra}


def refusal(check, *args: Any) -> Refusal:
    with pytest.raises(Refusal) as info:
        check(*args)
    return info.value


def test_the_tables_named_endpoints_are_the_apps_api(table: EndpointTable) -> None:
    assert set(table.by_name) == API_NAMES
    assert len(table.by_index) > len(API_NAMES)  # the page's own events (load, timer, change) run by fn_index


def test_an_input_the_edge_cannot_check_stops_the_table_from_being_built() -> None:
    with pytest.raises(TypeError, match="does not know how to check a Textbox input"):
        kind_of(gr.Textbox())


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"fn_index": 999, "data": []}, 404, "no endpoint has fn_index 999"),
    ({"fn_index": "1", "data": []}, 422, "fn_index must be a whole number, got '1'"),
    ({"data": []}, 422, "fn_index must be a whole number, got None"),
    ([1, 2], 422, "the body must be a JSON object, got [1, 2]"),
])
def test_a_join_that_names_no_endpoint_is_refused(table: EndpointTable, body: Any, status: int, message: str) -> None:
    refused = refusal(table.check_join, body)
    assert (refused.status, refused.message) == (status, message)


@pytest.mark.parametrize(("data", "extra", "message"), [
    ([3, 16], {}, "/generate takes 6 input values, got 2"),
    ([3, 16, 1.0, 0, 1, "class_gaussian", 7], {}, "/generate takes 6 input values, got 7"),
    ({"class": 3}, {}, "/generate: data must be a list of its 6 input values"),
    ([3, "many", 1.0, 0, 1, "class_gaussian"], {}, "input 1 (Samples, a number) must be a finite number, got 'many'"),
    ([3, 16, True, 0, 1, "class_gaussian"], {}, "input 2 (Noise scale, a number) must be a finite number"),
    ([[3], 16, 1.0, 0, 1, "class_gaussian"], {}, "input 0 (Class, a choice) must be one of its choices"),
    ([3, 16, 1.0, 0, 1, "class_gaussian"], {"session_hash": "x" * 65}, "session_hash must be 1 to 64 letters"),
    ([3, 16, 1.0, 0, 1, "class_gaussian"], {"session_hash": 5}, "session_hash must be"),
    ([3, 16, 1.0, 0, 1, "class_gaussian"], {"batched": True}, "no endpoint of this app takes a batch"),
])
def test_inputs_that_do_not_fit_the_endpoint_are_refused(table: EndpointTable, data: Any, extra: dict,
                                                         message: str) -> None:
    refused = refusal(table.check_join, generate(table, data, **extra))
    assert refused.status == 422 and message in refused.message, refused.message


@pytest.mark.parametrize(("upload", "message"), [
    ("digit.png", "input 0 (...or upload an image"),
    ({"path": "/etc/passwd", "meta": FILE_META}, "is not a file uploaded to this server"),
    ({"path": "http://169.254.169.254/latest", "meta": FILE_META}, "is not a file uploaded to this server"),
    ({"path": "{folder}/abc/../../outside.png", "meta": FILE_META}, "is not a file uploaded to this server"),
    ({"path": "{folder}/abc/gone.png", "meta": FILE_META}, "is no longer on the server"),
    ({"url": "data:image/png;base64,AAAA", "meta": FILE_META}, "is a data URL: send the image as an uploaded file"),
    ({"path": "{folder}/abc/digit.png"}, 'must be an uploaded file with "meta"'),
    ({"path": "{folder}/abc/digit.png", "meta": FILE_META, "size": "big"}, "has a size that is not a whole number"),
    ({"path": "{folder}/abc/digit.png", "meta": FILE_META, "is_stream": True}, "not a stream"),
    ({"meta": FILE_META}, "names no uploaded file"),
])
def test_a_file_input_must_be_an_upload_of_this_server(table: EndpointTable, folder: Path, upload: Any,
                                                       message: str) -> None:
    if isinstance(upload, dict) and "path" in upload:
        upload = {**upload, "path": upload["path"].format(folder=folder)}
    refused = refusal(table.check_call, "reconstruct", {"data": [upload, None]})
    assert refused.status == 422 and message in refused.message, refused.message


@pytest.mark.parametrize(("drawing", "message"), [
    ({"id": 5}, "has an id that is not a string"),
    ({"id": "d" * 65}, "has an id that is not a string of at most 64 characters"),
    ({"layers": [None] * 5}, "has layers that are not a list of at most 4 files"),
    ({"layers": [None]}, "has a layer that is empty"),
    ({"composite": {"path": "/etc/passwd", "meta": FILE_META}}, "has a composite that is not a file uploaded"),
    ({"background": "x"}, "has a background that must be an uploaded file or null"),
])
def test_a_drawing_input_must_name_its_blobs_or_uploads(table: EndpointTable, drawing: Any, message: str) -> None:
    refused = refusal(table.check_call, "reconstruct", {"data": [None, drawing]})
    assert refused.status == 422 and message in refused.message, refused.message


@pytest.mark.parametrize("api_name", ["nowhere", "opened", "generate_1", "tick"])
def test_a_call_by_a_name_that_is_not_a_public_endpoint_is_refused(table: EndpointTable, api_name: str) -> None:
    """Private events (the page's own: load, timer, change) run by fn_index only."""
    refused = refusal(table.check_call, api_name, {"data": []})
    assert refused.status == 404 and "no endpoint is named" in refused.message


def test_well_formed_requests_pass(table: EndpointTable, folder: Path) -> None:
    table.check_join(generate(table, [3, 16, 0.75, 0, 1, "class_gaussian"]))
    table.check_join(generate(table, [3, 16, 0.75, None, 1, None], session_hash="0f8c4b1e-5b9a-4a57-9d2e-3e1c2b7a9f10",
                              event_data=None, trigger_id=12))
    table.check_call("reconstruct", {"data": [uploaded(folder, url=None, size=4, mime_type="image/png"), None]})
    table.check_call("reconstruct", {"data": [None, {"id": "k2j3h4", "background": None, "layers": [],
                                                     "composite": None}]})
    table.check_call("reconstruct", {"data": [None, {"composite": uploaded(folder), "layers": [uploaded(folder)]}]})
    table.check_call("model_info", {"data": []})
    table.check_call("switch_model", {"data": ["t_narrow"]})
