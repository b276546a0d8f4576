"""Starting the app as a real server for tests (and stopping it): `python -m serve.app` on a free
port of 127.0.0.1, with its own GRADIO_TEMP_DIR, waited for with a bounded loop."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from ports import free_port

from search.run import stop_process

REPO = Path(__file__).resolve().parents[2]
SERVER_START_S = 120  # imports, data and checkpoint loading, the Gradio launch; plus the app's own --wait, if any
LOG_WAIT_S = 10.0


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def lines_after(self, before: str, expected: int, timeout_s: float = LOG_WAIT_S) -> list[str]:
        """The log's lines after the output ``before``, once there are ``expected`` of them or ``timeout_s`` has
        passed (the app writes a request's line just after its response is sent)."""
        deadline = time.monotonic() + timeout_s
        while len(lines := self.output()[len(before):].splitlines()) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        return lines


def app_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VAESEARCH_AUTH"}
    env.update(GRADIO_TEMP_DIR=str(tmp / "gradio"), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1", **extra)
    return env


@contextmanager
def running_app(args: list[str], tmp: Path, **env: str) -> Iterator[Server]:
    """Start ``python -m serve.app ARGS --port <free>`` and wait (bounded) until it answers."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = tmp / f"server-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "serve.app", *args, "--port", str(port)], cwd=REPO,
                                   env=app_env(tmp, **env), stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}/", process, log)
    start_s = SERVER_START_S + (float(args[args.index("--wait") + 1]) if "--wait" in args else 0.0)
    try:
        deadline = time.monotonic() + start_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with {process.returncode}:\n{server.output()}")
            try:
                with urllib.request.urlopen(server.url + "gradio_api/info", timeout=5):
                    break
            except urllib.error.HTTPError:  # it answered (e.g. 401 when a login is required)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not answer within {start_s:g} s:\n{server.output()}")
                time.sleep(0.5)
        yield server
    finally:
        stop_process(process)
