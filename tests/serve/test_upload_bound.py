"""Issue 5: what uploads keep on disk is bounded (serve.uploads), oldest deleted first: in-process on a folder laid
out as Gradio lays out its uploads, and against a real server flooded with uploads."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_harness import Server, running_app

from serve.edge import MULTIPART_MARGIN
from serve.ui import MAX_UPLOAD_BYTES
from serve.uploads import MAX_KEPT_UPLOAD_BYTES, OUTPUTS_SUBFOLDER, UploadBound, prune

NOW = 1_000_000.0


def put(folder: Path, relative: str, size: int, age_s: float) -> Path:
    """A file of ``size`` bytes under ``folder``, last written ``age_s`` seconds before NOW."""
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"u" * size)
    os.utime(path, (NOW - age_s, NOW - age_s))
    return path


def test_the_oldest_uploads_go_first_until_the_bytes_fit(tmp_path: Path) -> None:
    uploads = [put(tmp_path, f"{k:064x}/digit{k}.png", 100, age_s=100 - k) for k in range(10)]  # 0 oldest
    deleted = prune(UploadBound(tmp_path, max_bytes=450, max_files=100), now=NOW)
    assert deleted == uploads[:6]
    assert [path.exists() for path in uploads] == [False] * 6 + [True] * 4
    assert not (tmp_path / f"{0:064x}").exists()  # emptied folders go too


def test_the_oldest_uploads_go_first_until_the_count_fits(tmp_path: Path) -> None:
    uploads = [put(tmp_path, f"{k:064x}/d.png", 1, age_s=100 - k) for k in range(10)]
    prune(UploadBound(tmp_path, max_bytes=10**9, max_files=3), now=NOW)
    assert [path.exists() for path in uploads] == [False] * 7 + [True] * 3


def test_the_apps_outputs_and_uploads_still_arriving_are_not_counted(tmp_path: Path) -> None:
    output = put(tmp_path, f"{OUTPUTS_SUBFOLDER}/{'a' * 64}.png", 1000, age_s=10_000)
    arriving = put(tmp_path, "tmpq8x2k1", 1000, age_s=5)  # Gradio's multipart parser writes it here first
    leftover = put(tmp_path, "tmpz3n0v7", 0, age_s=500)  # e.g. an empty file gr.File's preprocess leaves
    upload = put(tmp_path, f"{'b' * 64}/photo.jpg", 1000, age_s=1)
    deleted = prune(UploadBound(tmp_path, max_bytes=1000, max_files=1), now=NOW)
    assert deleted == [leftover]
    assert output.exists() and arriving.exists() and upload.exists()


# ---- against a real server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(experiment: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_app(["--experiment", str(experiment)], tmp_path_factory.mktemp("upload-app")) as running:
        yield running


def post_upload(server: Server, payload: bytes, name: str, files: int = 1) -> tuple[int, list[str] | str]:
    boundary = "vaesearchuploadboundary"
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + payload + b"\r\n"
    body = part * files + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(server.url + "gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def kept_uploads(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file() and OUTPUTS_SUBFOLDER not in path.parts]


def kept_bytes(folder: Path) -> int:
    """Bytes of the kept uploads; a file the server deletes between the listing and its stat counts 0."""
    total = 0
    for path in kept_uploads(folder):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


@pytest.mark.slow
def test_a_flood_of_anonymous_uploads_keeps_at_most_the_bound(server: Server, tmp_path: Path) -> None:
    """Twenty 9 MB uploads in a row (no login): all accepted, at most MAX_KEPT_UPLOAD_BYTES kept, newest first."""
    folder = Path(server.log.parent / "gradio")
    paths = []
    for k in range(20):
        status, body = post_upload(server, bytes([k]) * (9 * 2**20), f"photo{k}.png")
        assert status == 200, body
        paths.extend(body)
    deadline = time.monotonic() + 30
    while kept_bytes(folder) > MAX_KEPT_UPLOAD_BYTES:
        assert time.monotonic() < deadline, [str(p) for p in kept_uploads(folder)]
        time.sleep(0.2)
    assert Path(paths[-1]).is_file() and not Path(paths[0]).exists()
    assert "Traceback" not in server.output()


@pytest.mark.slow
def test_one_request_cannot_carry_more_than_one_uploads_worth(server: Server) -> None:
    """Gradio's max_file_size bounds each file; serve.edge.BodyLimit bounds the request: two 6 MB files are over."""
    before = server.output()
    status, body = post_upload(server, b"x" * (6 * 2**20), "half.png", files=2)
    assert status == 413 and "request body is over" in body
    assert server.lines_after(before, 1) == [
        f"refused POST /gradio_api/upload: 413 the request body is over {MAX_UPLOAD_BYTES + MULTIPART_MARGIN:,} bytes"]
