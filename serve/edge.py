"""The app's HTTP edge: ASGI middleware that every request passes before Gradio's routes see it.

Gradio builds the FastAPI app; serve.app hands it this stack through launch(app_kwargs={"middleware": ...}), a
public hook (FastAPI's own ``middleware`` argument). Outermost first:

* RefusalLog: every request that is not served leaves exactly one line in the server log (serve.server_log) and
  no traceback, whether the app refused it, Gradio did (a 4xx response) or a route raised (contained here);
* LoginGate (serve.login): with VAESEARCH_AUTH set, nothing but a login page before login;
* BodyLimit: no request body over one upload's worth;
* RequestChecks: requests to the queue that name no endpoint (404) or carry inputs it cannot take (422) are
  refused before they reach Gradio (serve.endpoints); the routes the app does not serve are closed;
* PruneUploads (serve.uploads): what uploads keep on disk is bounded.

What a request sends to a handler is refused inside the queue, with one line, by serve.components and serve.ui.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path

import gradio as gr
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve.asgi import BodyTooLarge, read_body, replay, respond_json
from serve.endpoints import EndpointTable, Refusal
from serve.gradio_internals import upload_folder
from serve.login import LoginGate, Sessions
from serve.server_log import log_failure, log_refusal
from serve.uploads import PruneUploads, UploadBound

MAX_DETAIL_BYTES = 2048  # of a refusal's response body, read for its log line
MAX_JSON_BODY = 1024 * 1024  # a queue request: input values and file references, never file contents
MULTIPART_MARGIN = 64 * 1024  # a request body's allowance for multipart headers on top of the largest upload
DRAIN_FACTOR = 4  # an over-limit body is read (and dropped) up to this many times the limit, so the client sees 413
API = "/gradio_api"
# Routes that run endpoints but that the app does not serve: /run/ and /api/ bypass the queue (and
# queue(api_open=False) closes them, except that a name that is no endpoint answered 500); /call/v2/ is Gradio's
# keyword-argument /call route, which the app leaves to /call/<api_name> (positional inputs, checked here).
CLOSED_PREFIXES = (f"{API}/run/", f"{API}/api/", f"{API}/call/v2/")


def edge_middleware(demo: gr.Blocks, sessions: Sessions | None, max_upload_bytes: int) -> list[Middleware]:
    """The stack for launch(app_kwargs={"middleware": ...}), outermost first."""
    folder = upload_folder()
    return [
        Middleware(RefusalLog),
        Middleware(LoginGate, sessions=sessions),
        Middleware(BodyLimit, max_bytes=max_upload_bytes + MULTIPART_MARGIN),
        Middleware(RequestChecks, table=EndpointTable.from_blocks(demo, folder)),
        Middleware(PruneUploads, bound=UploadBound(folder)),
    ]


# ---- one line per refused or failed request ---------------------------------------------------------


@dataclass
class ResponseSeen:
    """What RefusalLog saw of a response: its status, whether it started and ended, the start of a refusal's
    body."""

    status: int = 0
    started: bool = False
    finished: bool = False
    body: bytearray = field(default_factory=bytearray)

    def see(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started, self.status = True, int(message["status"])
        elif message["type"] == "http.response.body":
            if self.status >= 400 and len(self.body) < MAX_DETAIL_BYTES:
                self.body += message.get("body", b"")[: MAX_DETAIL_BYTES - len(self.body)]
            self.finished = not message.get("more_body", False)


class RefusalLog:
    """ASGI middleware: one log line for each request answered with a status of 400 or more (``refused <METHOD>
    <path>: <status> <detail>``), and one for each exception that reaches it, which it contains: the client gets
    the exception's status (an HTTPException's) or a 500, or the end of a response already started, and the log
    gets ``failed ...`` (or ``refused ...`` for an HTTPException) with where it was raised, never a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        where = f"{scope['method']} {scope['path']}"
        response = ResponseSeen()

        async def seen_send(message: Message) -> None:
            response.see(message)
            await send(message)

        try:
            await self.app(scope, receive, seen_send)
        except Exception as exc:  # noqa: BLE001 - contained and logged as one line: the point of this middleware
            await _contain(_reported(exc), where, response, send)
            return
        if response.status >= 400:
            log_refusal(where, f"{response.status} {response_detail(bytes(response.body), response.status)}")


async def _contain(exc: Exception, where: str, response: ResponseSeen, send: Send) -> None:
    """Answer (or end) the response an exception broke off, and log it as one line."""
    if isinstance(exc, HTTPException):
        status, detail, shown = exc.status_code, str(exc.detail), str(exc.detail)
    elif isinstance(exc, ClientDisconnect):
        status, detail, shown = 400, "the client disconnected during the request", "disconnected"
    else:
        status, detail, shown = 500, f"{type(exc).__name__}: {exc} ({_raised_at(exc)})", "internal server error"
    try:
        if not response.started:
            await respond_json(send, status, {"detail": shown})
        elif not response.finished:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    except Exception:  # noqa: BLE001 - the client has gone: nothing left to answer
        pass
    (log_refusal if status < 500 else log_failure)(where, f"{status} {detail}")


def _reported(exc: Exception) -> Exception:
    """The exception to report: the one inside task-group wrappers that hold only it (anyio wraps a streaming
    response's), or the HTTPException it was raised from (Starlette re-raises an HTTPException that arrives after
    the response started as a RuntimeError)."""
    inner: Sequence[BaseException]
    while len(inner := getattr(exc, "exceptions", ())) == 1 and isinstance(inner[0], Exception):
        exc = inner[0]
    return exc.__cause__ if isinstance(exc.__cause__, HTTPException) else exc


def _raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised, as ``package/module.py:line`` (the innermost frame of its traceback)."""
    trace = exc.__traceback__
    if trace is None:
        return "no traceback"
    while trace.tb_next is not None:
        trace = trace.tb_next
    path = Path(trace.tb_frame.f_code.co_filename)
    return f"{path.parent.name}/{path.name}:{trace.tb_lineno}"


def response_detail(body: bytes, status: int) -> str:
    """The reason a refusal's body gives: FastAPI's ``detail`` (its first validation error), Gradio's ``error``,
    or the text itself; the status's phrase when the body says nothing."""
    try:
        content = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", errors="replace").strip()
        return text or _phrase(status)
    detail = content.get("detail", content.get("error", content)) if isinstance(content, dict) else content
    if isinstance(detail, list) and detail and isinstance(detail[0], dict) and "msg" in detail[0]:
        first = detail[0]
        location = ".".join(str(part) for part in first.get("loc", ()))
        more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
        return f"{location}: {first['msg']}{more}"
    if isinstance(detail, dict):
        detail = detail.get("error", detail)
    return str(detail) or _phrase(status)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "refused"


# ---- bounded request bodies --------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: refuse (413) a request body over ``max_bytes``: from its Content-Length before any of it
    is read, or as soon as the bytes received pass the limit. The rest of the body is read and dropped (up to
    DRAIN_FACTOR times the limit), so that a client still sending it receives the 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _drain(receive, DRAIN_FACTOR * self.max_bytes)
            await respond_json(send, 413, {"detail": self._message()})
            return
        await self.app(scope, self._limited(receive), send)

    def _message(self) -> str:
        return f"the request body is over {self.max_bytes:,} bytes"

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if message.get("more_body", False):
                        await _drain(receive, DRAIN_FACTOR * self.max_bytes)
                    raise HTTPException(413, self._message())
            return message

        return limited_receive


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _drain(receive: Receive, max_bytes: int) -> None:
    """Read and drop the rest of a request body, up to ``max_bytes``."""
    drained = 0
    while drained <= max_bytes:
        message = await receive()
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


# ---- requests to the queue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueueRoute:
    """A request to one of the routes that run an endpoint: ``kind`` is "join" (POST /gradio_api/queue/join),
    "call" (POST /gradio_api/call/<name>), "result" (GET /gradio_api/call/<name>/<event_id>) or "closed"."""

    kind: str
    api_name: str = ""


def queue_route(method: str, path: str) -> QueueRoute | None:
    """The queue route a request is for, or None for any other route."""
    if any(path.startswith(prefix) or path == prefix.rstrip("/") for prefix in CLOSED_PREFIXES):
        return QueueRoute("closed")
    if path.rstrip("/") == f"{API}/queue/join":
        return QueueRoute("join")
    if not path.startswith(f"{API}/call/"):
        return None
    parts = path[len(f"{API}/call/"):].rstrip("/").split("/")
    if method == "POST" and len(parts) == 1:
        return QueueRoute("call", parts[0])
    if method == "GET" and len(parts) == 2:
        return QueueRoute("result", parts[0])
    return None


class RequestChecks:
    """ASGI middleware: refuse, before Gradio sees them, requests to the queue that name no endpoint of the app
    (404) or whose inputs do not fit it (422, serve.endpoints), bodies that are not JSON (400), and the routes
    the app does not serve (CLOSED_PREFIXES, 404)."""

    def __init__(self, app: ASGIApp, table: EndpointTable) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = queue_route(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        try:
            receive = await self._check(route, scope, receive)
        except Refusal as refusal:
            await respond_json(send, refusal.status, {"detail": refusal.message})
            return
        await self.app(scope, receive, send)

    async def _check(self, route: QueueRoute, scope: Scope, receive: Receive) -> Receive:
        """Raise a Refusal for a request the app does not serve; else the receive that gives its body."""
        if route.kind == "closed":
            raise Refusal(404, f"not served here: run endpoints with POST {API}/call/<api_name> or gradio_client")
        if route.kind == "result":
            self.table.named(route.api_name)
            return receive
        try:
            body = await read_body(receive, MAX_JSON_BODY)
        except BodyTooLarge as exc:
            await _drain(receive, DRAIN_FACTOR * MAX_JSON_BODY)
            raise Refusal(413, str(exc)) from exc
        try:
            content = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise Refusal(400, "the body is not JSON") from exc
        if route.kind == "join":
            self.table.check_join(content)
        else:
            self.table.check_call(route.api_name, content)
        return replay(body, receive)
