"""`python -m search.run ... --serve`: the web app starts beside the search, follows it, serves best/ once the
search has ended, and both stop on Ctrl+C."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client
from ports import free_port
from search_harness import search_command
from serve_harness import REPO, app_env

pytestmark = pytest.mark.slow

DEADLINE_S = 300


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "gradio_api/info", timeout=5):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def test_search_serve_follows_then_serves_best_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    command = [*search_command(tmp_path / "results", "served", trials=2, rounds=4),
               "--serve", "--serve-port", str(port)]
    log = tmp_path / "search.log"
    with open(log, "wb") as out:
        # A session of its own, so that the "Ctrl+C" below reaches the search and the app, as a terminal's does.
        process = subprocess.Popen(command, cwd=REPO, env=app_env(tmp_path), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE_S
        served = []
        while not served or served[-1] != "best":
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, (served, log.read_text()[-3000:])
            if answers(url):
                info, _board, _line = Client(url, verbose=False, download_files=str(tmp_path)).predict(
                    api_name="/model_info")
                served.append(info["serving"])
            time.sleep(1.0)
        while "search ended; the web app serves its best/" not in log.read_text():  # printed after Ray's shutdown
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert f"web app: {url}" in log.read_text()
        assert process.poll() is None  # the app keeps serving best/ after the search
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert not answers(url)  # the app stopped with it
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
