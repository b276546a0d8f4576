"""Issues 1 to 3, in-process: the app's HTTP edge (serve.edge, serve.login) around small stand-in apps, driven
with Starlette's TestClient. One line per refused or failed request and no traceback; bounded bodies; queue
requests checked before the app sees them (and passed on byte for byte when they are fine); nothing but a login
page before login."""

from __future__ import annotations

import json
from http import HTTPStatus
from pathlib import Path

import pytest
from starlette.exceptions import HTTPException
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from serve.asgi import read_body, respond, respond_json
from serve.edge import BodyLimit, RefusalLog, RequestChecks, response_detail
from serve.endpoints import NUMBER, Endpoint, EndpointTable, Input
from serve.login import COOKIE, LOGIN_PAGE, LoginGate, Sessions


def log_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """A stand-in app: answers 200 with the request body it read."""
    body = await read_body(receive, 1 << 30)
    await respond(send, 200, body or b"app", "text/plain")


def raising(exc: Exception, *, after_start: bool = False):
    """A stand-in app that raises ``exc`` (after starting a streamed 200 response if asked)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if after_start:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
        raise exc

    return app


# ---- RefusalLog ------------------------------------------------------------------------------------


def test_a_refused_request_is_one_line_with_its_reason(capsys: pytest.CaptureFixture[str]) -> None:
    async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
        await respond_json(send, 404, {"detail": "no endpoint is named 'x'"})

    response = TestClient(RefusalLog(not_found)).post("/gradio_api/call/x", json={"data": []})
    assert response.status_code == 404
    assert log_lines(capsys) == ["refused POST /gradio_api/call/x: 404 no endpoint is named 'x'"]


def test_an_exception_from_a_route_is_a_500_and_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    client = TestClient(RefusalLog(raising(KeyError("component 99"))), raise_server_exceptions=True)
    response = client.post("/gradio_api/component_server")
    assert (response.status_code, response.json()) == (500, {"detail": "internal server error"})
    [line] = log_lines(capsys)
    assert line.startswith("failed POST /gradio_api/component_server: 500 KeyError: 'component 99' "
                           "(serve/test_edge.py:"), line


def test_an_exception_inside_a_started_stream_ends_it_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    client = TestClient(RefusalLog(raising(HTTPException(404), after_start=True)))
    response = client.get("/gradio_api/queue/data", params={"session_hash": "unknown"})
    assert response.status_code == 200 and response.text == "data: 1\n\n"
    assert log_lines(capsys) == ["refused GET /gradio_api/queue/data: 404 Not Found"]


def test_a_served_request_leaves_no_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert TestClient(RefusalLog(echo)).get("/").status_code == 200
    assert log_lines(capsys) == []


def test_a_client_cannot_add_lines_to_the_log(capsys: pytest.CaptureFixture[str]) -> None:
    async def gone(scope: Scope, receive: Receive, send: Send) -> None:
        await respond(send, 404, b"no\nrefused GET /forged: 200 ok", "text/plain")

    TestClient(RefusalLog(gone)).get("/a%0Arefused%20GET%20/forged")
    assert log_lines(capsys) == ["refused GET /a refused GET /forged: 404 no refused GET /forged: 200 ok"]


@pytest.mark.parametrize(("body", "detail"), [
    (b'{"detail": [{"loc": ["body", "data"], "msg": "Field required"}, {"loc": ["body"], "msg": "x"}]}',
     "body.data: Field required (and 1 more)"),  # FastAPI's validation errors
    (b'{"detail": {"error": "Not authenticated", "auth_message": null}}', "Not authenticated"),  # Gradio's 401
    (b'{"error": "Queue is full."}', "Queue is full."),
    (b"Invalid content type.", "Invalid content type."),
    (b"", HTTPStatus(422).phrase),
])
def test_the_log_line_gives_the_reason_the_response_gives(body: bytes, detail: str) -> None:
    assert response_detail(body, 422) == detail


# ---- BodyLimit ---------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_from_its_length_before_the_app_runs(capsys) -> None:
    ran = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ran.append(scope["path"])
        await echo(scope, receive, send)

    client = TestClient(RefusalLog(BodyLimit(app, max_bytes=1000)))
    assert client.post("/gradio_api/upload", content=b"x" * 1000).status_code == 200
    response = client.post("/gradio_api/upload", content=b"x" * 1001)
    assert response.status_code == 413 and ran == ["/gradio_api/upload"]
    assert log_lines(capsys) == ["refused POST /gradio_api/upload: 413 the request body is over 1,000 bytes"]


def test_a_streamed_body_is_refused_as_it_passes_the_limit(capsys) -> None:
    client = TestClient(RefusalLog(BodyLimit(echo, max_bytes=1000)))
    response = client.post("/gradio_api/upload", content=(b"x" * 400 for _ in range(5)))  # chunked: no length
    assert response.status_code == 413
    assert log_lines(capsys) == ["refused POST /gradio_api/upload: 413 the request body is over 1,000 bytes"]


# ---- RequestChecks -----------------------------------------------------------------------------------


@pytest.fixture
def checked(tmp_path: Path) -> TestClient:
    """RequestChecks over ``echo`` with one endpoint: /double (fn_index 3), one number input."""
    table = EndpointTable([Endpoint(3, "double", True, (Input("n", NUMBER),))], tmp_path)
    return TestClient(RefusalLog(RequestChecks(echo, table=table)))


@pytest.mark.parametrize(("method", "path", "body", "status", "detail"), [
    ("POST", "/gradio_api/queue/join", b'{"fn_index": 4, "data": [1]}', 404, "no endpoint has fn_index 4"),
    ("POST", "/gradio_api/call/triple", b'{"data": [1]}', 404, "no endpoint is named 'triple'"),
    ("GET", "/gradio_api/call/triple/0a1b", b"", 404, "no endpoint is named 'triple'"),
    ("POST", "/gradio_api/call/v2/double", b'{"n": 1}', 404, "not served here"),
    ("POST", "/gradio_api/queue/join", b"{not json", 400, "the body is not JSON"),
    ("POST", "/gradio_api/queue/join", b"[" * 100_000, 400, "the body is not JSON"),
    ("POST", "/gradio_api/call/double", b'{"data": ["two"]}', 422, "/double: input 0 (n, a number)"),
    ("POST", "/gradio_api/queue/join", b'{"fn_index": 3, "data": [1, 2]}', 422, "/double takes 1 input value, got 2"),
])
def test_queue_requests_the_app_does_not_serve_are_refused(checked: TestClient, capsys, method: str, path: str,
                                                           body: bytes, status: int, detail: str) -> None:
    response = checked.request(method, path, content=body)
    assert response.status_code == status and detail in response.json()["detail"]
    [line] = log_lines(capsys)
    assert line.startswith(f"refused {method} {path}: {status} {detail}"), line


def test_a_queue_request_that_fits_reaches_the_app_unchanged(checked: TestClient, capsys) -> None:
    body = json.dumps({"fn_index": 3, "data": [2.5], "session_hash": "abc", "event_data": None}).encode()
    response = checked.post("/gradio_api/queue/join", content=body)
    assert (response.status_code, response.content) == (200, body)
    assert checked.get("/gradio_api/call/double/0a1b").status_code == 200
    assert log_lines(capsys) == []


# ---- LoginGate -------------------------------------------------------------------------------------------


@pytest.fixture
def gated() -> TestClient:
    return TestClient(RefusalLog(LoginGate(echo, sessions=Sessions("ann", "pw-1"))))


def test_before_login_every_route_but_the_login_page_answers_401(gated: TestClient, capsys) -> None:
    page = gated.get("/")
    assert page.status_code == 200 and page.text == LOGIN_PAGE
    for path in ("/config", "/gradio_api/info", "/gradio_api/openapi.json", "/file=/tmp/x.png", "/theme.css",
                 "/gradio_api/queue/data?session_hash=a", "/anything"):
        response = gated.get(path)
        assert response.status_code == 401 and b"app" not in response.content, path
    assert gated.post("/gradio_api/queue/join", json={"fn_index": 0, "data": []}).status_code == 401
    assert len(log_lines(capsys)) == 8
    assert gated.get("/gradio_api/startup-events").text == "app"  # launch() checks the server with it


def test_a_login_opens_the_app_and_a_logout_closes_it(gated: TestClient, capsys) -> None:
    wrong = gated.post("/login", data={"username": "ann", "password": "pw-2"})
    assert wrong.status_code == 401 and COOKIE not in wrong.cookies
    assert log_lines(capsys) == ["refused POST /login: 401 Incorrect user name or password."]
    right = gated.post("/login/", data={"username": "ann", "password": "pw-1"})  # gradio_client posts to login/
    assert right.status_code == 200 and COOKIE in right.cookies
    assert "HttpOnly" in right.headers["set-cookie"] and "SameSite=Lax" in right.headers["set-cookie"]
    assert gated.get("/config").text == "app"
    assert gated.get("/").text == "app"  # the app's own page, once logged in
    assert gated.get("/logout", follow_redirects=False).status_code == 303
    gated.cookies.clear()
    assert gated.get("/config").status_code == 401


def test_a_logout_ends_the_session_on_the_server(gated: TestClient) -> None:
    gated.post("/login", data={"username": "ann", "password": "pw-1"})
    token = gated.cookies[COOKIE]
    gated.get("/logout", follow_redirects=False)
    assert gated.get("/config", cookies={COOKIE: token}).status_code == 401  # a copied cookie is no use either


def test_sessions_are_bounded_oldest_first() -> None:
    sessions = Sessions("ann", "pw-1", max_sessions=2)
    first, second, third = sessions.open(), sessions.open(), sessions.open()
    users = [TestClient(LoginGate(echo, sessions=sessions)).get("/config", cookies={COOKIE: token}).status_code
             for token in (first, second, third)]
    assert users == [401, 200, 200]


def test_the_login_page_names_nothing_of_the_app() -> None:
    words = ("vaesearch", "generate", "model", "trial", "latent", "gradio", "api")
    assert not [word for word in words if word in LOGIN_PAGE.lower()]
