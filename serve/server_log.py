"""The server log's lines about requests: one line per refused or failed request, never a traceback.

Every line starts with ``refused <where>: `` (the request was not served: a bad input, a missing login, an
unknown endpoint) or ``failed <where>: `` (the server could not serve it). Messages may quote what a client sent,
so they are flattened to one printable line and cut to a bounded length: a client cannot add lines to the log.
"""

from __future__ import annotations

import sys

MAX_MESSAGE_CHARS = 300


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` as one line of printable characters (whitespace runs become one space, other control characters
    become ``?``), cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    flat = "".join(char if char.isprintable() else "?" for char in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def log_refusal(where: str, message: str) -> None:
    """One line: a request refused by the app's checks or by Gradio's, with the reason."""
    _write(f"refused {one_line(where, 120)}: {one_line(message)}")


def log_failure(where: str, message: str) -> None:
    """One line: a request the server failed to serve (an exception that reached the edge of the app)."""
    _write(f"failed {one_line(where, 120)}: {one_line(message)}")


def _write(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
