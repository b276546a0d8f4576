"""Issue 11, against a real server (`python -m serve.app`): no route bypasses --concurrency / --max-queue,
a disallowed upload format never reaches a decoder (a fake `gs` on the server's PATH records any run),
and refused inputs log one line each, never a traceback."""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image
from serve_harness import Server, running_app

pytestmark = pytest.mark.slow

API_NAMES = ("generate", "prior", "interpolate", "reconstruct", "model_info", "switch_model")
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n%%EndComments\n"
       b"newpath 4 4 moveto 24 24 lineto 4 setlinewidth stroke showpage\n%%EOF\n")


@pytest.fixture(scope="module")
def gs_marker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder with a fake `gs` that records each run, its marker file)."""
    folder = tmp_path_factory.mktemp("fake-gs")
    marker = folder / "gs-was-run"
    script = folder / "gs"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> '{marker}'\nexit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder, marker


@pytest.fixture(scope="module")
def server(experiment: Path, gs_marker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = f"{gs_marker[0]}{os.pathsep}{os.environ['PATH']}"
    with running_app(["--experiment", str(experiment), "--concurrency", "1", "--max-queue", "1"],
                     tmp_path_factory.mktemp("app"), PATH=path) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Client:
    return Client(server.url, verbose=False, download_files=str(tmp_path_factory.mktemp("downloads")))


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_queue_bypassing_run_routes_are_closed(server: Server, client: Client) -> None:
    for name in API_NAMES:
        for route in (f"gradio_api/run/{name}", f"gradio_api/api/{name}"):
            status, _ = _post(server.url + route, {"data": [3, 4, 1.0, 0, 1]})
            assert status == 404, (route, status)
    assert client.predict(2, 4, 1.0, 0, 1, api_name="/generate")  # the queued route still answers


def test_concurrent_calls_beyond_the_limits_are_refused(server: Server, client: Client, tmp_path: Path) -> None:
    """--concurrency 1 --max-queue 1: of a burst of /call/ requests (each a slow 4096x4096 reconstruct),
    one runs, one waits and the rest are refused at once."""
    photo = Image.new("L", (4096, 4096), 255)
    photo.paste(0, (1800, 1000, 2300, 3000))
    photo.save(tmp_path / "big.png")
    uploaded = client.upload_files([str(tmp_path / "big.png")]) if hasattr(client, "upload_files") else None
    if not uploaded:
        request = urllib.request.Request(server.url + "gradio_api/upload", method="POST")
        boundary = "vaesearchboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + (tmp_path / "big.png").read_bytes() + \
            f"\r\n--{boundary}--\r\n".encode()
        request.data = body
        request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
        with urllib.request.urlopen(request, timeout=60) as response:
            uploaded = json.loads(response.read())
    image = {"path": uploaded[0], "meta": {"_type": "gradio.FileData"}, "orig_name": "big.png"}
    statuses: list[int] = []
    streams: list[str] = []
    barrier = threading.Barrier(8)

    def call() -> None:
        barrier.wait(timeout=30)
        status, body = _post(server.url + "gradio_api/call/reconstruct", {"data": [image, None]})
        statuses.append(status)
        if status == 200:  # wait for the accepted job's result
            with urllib.request.urlopen(f"{server.url}gradio_api/call/reconstruct/{body['event_id']}",
                                        timeout=120) as response:
                streams.append(response.read().decode())

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    accepted = statuses.count(200)
    assert len(statuses) == 8 and 1 <= accepted <= 3 and accepted + statuses.count(503) == 8, statuses
    assert len(streams) == accepted and all("event: complete" in text for text in streams), streams


def test_a_disallowed_format_is_refused_without_a_decoder(client: Client, gs_marker, tmp_path: Path) -> None:
    _, marker = gs_marker
    for name, data in (("digit.eps", EPS), ("digit.png", EPS)):  # the file name decides nothing
        (tmp_path / name).write_bytes(data)
        with pytest.raises(AppError, match="not an image this app reads"):
            client.predict(handle_file(tmp_path / name), None, api_name="/reconstruct")
    Image.new("L", (28, 28)).save(tmp_path / "digit.tiff")
    with pytest.raises(AppError, match=r"PNG, JPEG, WebP, GIF or BMP only"):
        client.predict(handle_file(tmp_path / "digit.tiff"), None, api_name="/reconstruct")
    assert not marker.exists()


def test_refused_inputs_log_one_line_each_and_no_traceback(client: Client, server: Server, tmp_path: Path,
                                                          pixelless_png) -> None:
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "huge.png").write_bytes(pixelless_png(5000, 5000))
    (tmp_path / "bomb.png").write_bytes(pixelless_png(30000, 30000))
    (tmp_path / "cut.png").write_bytes(pixelless_png(64, 64))
    (tmp_path / "digit.eps").write_bytes(EPS)
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    before = server.output()
    bad = [
        ((None, None), "/reconstruct"),
        ((handle_file(tmp_path / "blank.png"), None), "/reconstruct"),
        ((handle_file(tmp_path / "huge.png"), None), "/reconstruct"),
        ((handle_file(tmp_path / "bomb.png"), None), "/reconstruct"),
        ((handle_file(tmp_path / "cut.png"), None), "/reconstruct"),
        ((handle_file(tmp_path / "notes.png"), None), "/reconstruct"),
        ((handle_file(tmp_path / "digit.eps"), None), "/reconstruct"),
        ((None, {"background": None, "layers": [], "composite": handle_file(tmp_path / "digit.eps")}),
         "/reconstruct"),
        (("t_failed",), "/switch_model"),
        (("t_nowhere",), "/switch_model"),
        ((3, 0, 1.0, 0, 1), "/generate"),
        ((11, 16, 1.0, 0, 1), "/generate"),
        ((1, 0, 7, 40, 5), "/interpolate"),
    ]
    for args, api_name in bad:
        with pytest.raises(AppError):
            client.predict(*args, api_name=api_name)
    assert client.predict(2, 4, 1.0, 0, 1, api_name="/generate")
    log = server.output()[len(before):]
    assert "Traceback" not in log, log[-4000:]
    refused = [line for line in log.splitlines() if line.startswith("refused ")]
    assert len(refused) >= 9 and len(log.splitlines()) <= len(bad), log
