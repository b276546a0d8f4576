"""The one free-port helper of the tests and benchmarks that start servers or Ray nodes on this machine."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port of 127.0.0.1 that the OS reported free just now (bind to port 0, read it, release it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
