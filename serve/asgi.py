"""Small ASGI helpers for the app's middleware (serve.edge, serve.login, serve.uploads): whole responses and
bounded request bodies."""

from __future__ import annotations

import json

from starlette.types import Message, Receive, Send

Headers = list[tuple[bytes, bytes]]


class BodyTooLarge(Exception):
    """A request body over the limit a reader was given."""


async def respond(send: Send, status: int, body: bytes, content_type: str, headers: Headers | None = None) -> None:
    """Send a whole response (a HEAD request gets the same headers; the server drops the body)."""
    all_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
                   (b"cache-control", b"no-store"), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def respond_json(send: Send, status: int, content: object, headers: Headers | None = None) -> None:
    await respond(send, status, json.dumps(content).encode(), "application/json", headers)


async def read_body(receive: Receive, max_bytes: int) -> bytes:
    """The whole request body; BodyTooLarge as soon as it passes ``max_bytes``."""
    body = bytearray()
    more = True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > max_bytes:
            raise BodyTooLarge(f"the request body is over {max_bytes:,} bytes")
    return bytes(body)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` (already read) as the request's one message, then defers to ``receive``
    (which reports the client's disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
