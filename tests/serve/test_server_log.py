"""Issues 1, 2 and 4 against a real server (`python -m serve.app`): a battery of malformed requests, each
answered with a 4xx (404 for the ones that name no endpoint) and each leaving exactly one line in the server log,
never a traceback; a sketch composite larger than the canvas allows is refused with a message and one line."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_harness import Server, running_app

from serve.components import MAX_SKETCH_PIXELS

pytestmark = pytest.mark.slow

FILE_META = {"_type": "gradio.FileData"}
GOOD_GENERATE = [3, 16, 0.75, 0, 1, None]  # None: the served model's default mode


@pytest.fixture(scope="module")
def server(experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_app(["--experiment", str(experiment)], tmp_path_factory.mktemp("log-app")) as running:
        yield running


def send(server: Server, method: str, path: str, body: bytes | dict | list | None = None,
         content_type: str = "application/json") -> tuple[int, str]:
    """(status, body text) of one request; a JSON body is given as a dict or list."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    request = urllib.request.Request(server.url + path, data=data, method=method,
                                     headers={"Content-Type": content_type} if data is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def run(server: Server, api_name: str, data: list[Any]) -> str:
    """POST /gradio_api/call/<api_name>, then read its result stream; the stream's text."""
    status, text = send(server, "POST", f"gradio_api/call/{api_name}", {"data": data})
    assert status == 200, text
    return send(server, "GET", f"gradio_api/call/{api_name}/{json.loads(text)['event_id']}")[1]


def fn_index(server: Server, api_name: str) -> int:
    config = json.loads(send(server, "GET", "config")[1])
    return next(d["id"] for d in config["dependencies"] if d["api_name"] == api_name)


# (what, method, path, body, status): each a request a client can send that the app does not serve. GENERATE in a
# body is replaced by the fn_index of /generate.
GENERATE = "fn_index of /generate"
MALFORMED = [
    ("a string for a slider", "POST", "gradio_api/call/generate", {"data": [3, "many", 0.75, 0, 1, None]}, 422),
    ("too few inputs", "POST", "gradio_api/call/generate", {"data": [3, 16]}, 422),
    ("too many inputs", "POST", "gradio_api/call/generate", {"data": [*GOOD_GENERATE, 1]}, 422),
    ("no data", "POST", "gradio_api/call/generate", {}, 422),
    ("an unknown api_name", "POST", "gradio_api/call/nowhere", {"data": []}, 404),
    ("a private event by name", "POST", "gradio_api/call/tick", {"data": [None]}, 404),
    ("the result of an unknown api_name", "GET", "gradio_api/call/nowhere/0123abcd", None, 404),
    ("the keyword-argument route", "POST", "gradio_api/call/v2/generate", {"class_index": 3}, 404),
    ("a queue-bypassing route, unknown name", "POST", "gradio_api/run/nowhere", {"data": []}, 404),
    ("an unknown fn_index", "POST", "gradio_api/queue/join", {"fn_index": 999, "data": [], "session_hash": "s"}, 404),
    ("a fn_index of the wrong type", "POST", "gradio_api/queue/join", {"fn_index": "abc", "data": []}, 422),
    ("garbage JSON", "POST", "gradio_api/queue/join", b"{not json", 400),
    ("a JSON array", "POST", "gradio_api/queue/join", [1, 2, 3], 422),
    ("bad session data", "POST", "gradio_api/queue/join",
     {"fn_index": GENERATE, "data": GOOD_GENERATE, "session_hash": ["x"]}, 422),
    ("a session of the wrong shape", "POST", "gradio_api/queue/join",
     {"fn_index": GENERATE, "data": GOOD_GENERATE, "session_hash": "../../etc"}, 422),
    ("no session at all", "POST", "gradio_api/queue/join", {"fn_index": GENERATE, "data": GOOD_GENERATE}, 400),
    ("a file outside the uploads", "POST", "gradio_api/call/reconstruct",
     {"data": [{"path": "/etc/passwd", "meta": FILE_META}, None]}, 422),
    ("an image as a data URL", "POST", "gradio_api/call/reconstruct",
     {"data": [{"url": "data:image/png;base64,AAAA", "meta": FILE_META}, None]}, 422),
    ("the stream of an unknown session", "GET", "gradio_api/queue/data?session_hash=nobody", None, 200),
    ("the result of an unknown event", "GET", "gradio_api/call/generate/0123abcd", None, 200),
    ("an unknown component", "POST", "gradio_api/component_server",
     {"data": {}, "component_id": 99999, "session_hash": "s", "fn_name": "accept_blobs"}, 500),
    ("a component call that is not JSON", "POST", "gradio_api/component_server", b"{", 400),
    ("an upload that is not multipart", "POST", "gradio_api/upload", {"files": []}, 400),
]


def test_malformed_requests_are_refused_with_one_line_each_and_no_traceback(server: Server) -> None:
    generate_fn = fn_index(server, "generate")
    before = server.output()
    statuses = {}
    for what, method, path, body, _status in MALFORMED:
        if isinstance(body, dict) and body.get("fn_index") == GENERATE:
            body = {**body, "fn_index": generate_fn}
        statuses[what] = send(server, method, path, body)[0]
    assert "not in the list of choices" in run(server, "generate", ["seven", 16, 0.75, 0, 1, None])  # passes the edge
    lines = server.lines_after(before, len(MALFORMED) + 1)
    assert statuses == {what: status for what, _m, _p, _b, status in MALFORMED}
    assert "Traceback" not in server.output()
    assert len(lines) == len(MALFORMED) + 1, "\n".join(lines)
    failed = [line for line in lines if not line.startswith("refused ")]
    assert len(failed) == 1 and failed[0].startswith("failed POST /gradio_api/component_server: 500 KeyError: 99999")


def test_requests_that_name_no_endpoint_answer_404_and_the_server_keeps_serving(server: Server) -> None:
    for path, body in (("gradio_api/queue/join", {"fn_index": 10**6, "data": [], "session_hash": "s"}),
                       ("gradio_api/call/no_such_view", {"data": []})):
        status, text = send(server, "POST", path, body)
        assert status == 404 and "no endpoint" in json.loads(text)["detail"], (path, status, text)
    assert "event: complete" in run(server, "generate", GOOD_GENERATE)


def sketch_component_id(server: Server) -> int:
    config = json.loads(send(server, "GET", "config")[1])
    return next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "reconstruct-sketch")


def send_composite(server: Server, component_id: int, drawing_id: str, png: bytes) -> int:
    """What the browser's sketchpad sends for a drawing's composite: accept_blobs through /component_server."""
    boundary = "sketchboundary"
    fields = {"component_id": str(component_id), "session_hash": "sketcher", "fn_name": "accept_blobs",
              "type": "composite", "id": drawing_id, "index": "null"}
    body = b"".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n".encode()
                    for name, value in fields.items())
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"composite.png\"\r\n"
             "Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    return send(server, "POST", "gradio_api/component_server", body, f"multipart/form-data; boundary={boundary}")[0]


def test_a_composite_larger_than_the_canvas_is_refused_with_a_message_and_one_line(server: Server,
                                                                                   pixelless_png) -> None:
    """Issue 4: a 4096x4096 composite compresses to a small PNG (here a header without pixels); it is refused from
    its header, without being decoded."""
    drawing_id = uuid.uuid4().hex[:12]
    before = server.output()
    assert send_composite(server, sketch_component_id(server), drawing_id, pixelless_png(4096, 4096)) == 200
    result = run(server, "reconstruct", [None, {"id": drawing_id, "background": None, "layers": [],
                                                "composite": None}])
    message = f"the image is too large: 4096x4096 pixels (at most {MAX_SKETCH_PIXELS:,} pixels)"
    assert "event: error" in result and message in result, result
    assert server.lines_after(before, 1) == [f"refused sketch: the drawing cannot be read: {message}"]
