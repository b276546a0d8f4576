"""A bound on what clients can make the server keep on disk: the files under Gradio's upload folder.

Anyone who can reach the app (anyone at all when it runs without VAESEARCH_AUTH) can POST files to
/gradio_api/upload; Gradio keeps each one until its cache sweep (Blocks(delete_cache=...): an hour here). After
every request that may write there (an upload, a deep link), PruneUploads deletes the oldest files until at most
``max_files`` files and ``max_bytes`` bytes are left. Not counted: the app's own outputs (OUTPUTS_SUBFOLDER:
small PNGs named by their content, which pages are still loading) and files at the folder's top level younger
than ``in_progress_s`` (Gradio's multipart parser writes an upload there while it arrives, then moves it into a
subfolder). Each request's body is bounded separately (serve.edge.BodyLimit), so a single upload request cannot
carry more than one file's worth either.

An upload deleted before its request ran is refused with a message asking to upload it again.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

OUTPUTS_SUBFOLDER = "vaesearch"  # serve.ui writes the images it serves here
MAX_KEPT_UPLOAD_BYTES = 100 * 1024 * 1024  # ten uploads of the largest size the app accepts
MAX_KEPT_UPLOAD_FILES = 256
IN_PROGRESS_S = 60.0
WRITING_ROUTES = ("/gradio_api/upload", "/gradio_api/deep_link")  # what may leave files in the upload folder


@dataclass(frozen=True)
class UploadBound:
    """At most ``max_files`` files and ``max_bytes`` bytes of uploads under ``folder``."""

    folder: Path
    max_bytes: int = MAX_KEPT_UPLOAD_BYTES
    max_files: int = MAX_KEPT_UPLOAD_FILES
    in_progress_s: float = IN_PROGRESS_S


@dataclass(frozen=True)
class Kept:
    path: Path
    size: int
    mtime: float


_prune_lock = threading.Lock()  # one prune at a time: two would count the same files


def prune(bound: UploadBound, now: float | None = None) -> list[Path]:
    """Delete the oldest uploads under ``bound.folder`` until it holds at most ``bound.max_files`` files and
    ``bound.max_bytes`` bytes of them; returns the deleted paths. Empty folders left behind are removed."""
    now = time.time() if now is None else now
    with _prune_lock:
        kept = sorted(_uploads(bound, now), key=lambda file: file.mtime)
        count, total = len(kept), sum(file.size for file in kept)
        deleted = []
        for file in kept:
            if count <= bound.max_files and total <= bound.max_bytes:
                break
            try:
                file.path.unlink()
            except FileNotFoundError:
                pass  # gone already (Gradio's own sweep)
            deleted.append(file.path)
            count, total = count - 1, total - file.size
        _remove_empty_folders(bound.folder, {path.parent for path in deleted})
        return deleted


def _uploads(bound: UploadBound, now: float) -> list[Kept]:
    """The files that count against the bound."""
    found = []
    for root, folders, files in os.walk(bound.folder):
        here = Path(root)
        if here == bound.folder:
            folders[:] = [name for name in folders if name != OUTPUTS_SUBFOLDER]
        for name in files:
            try:
                info = (here / name).lstat()
            except FileNotFoundError:
                continue
            if here == bound.folder and now - info.st_mtime < bound.in_progress_s:
                continue  # possibly an upload still arriving
            found.append(Kept(here / name, info.st_size, info.st_mtime))
    return found


def _remove_empty_folders(top: Path, folders: set[Path]) -> None:
    for folder in folders:
        if folder != top and folder.is_relative_to(top):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty: another file arrived


class PruneUploads:
    """ASGI middleware: after each request to a route that writes to the upload folder, prune it to ``bound``
    (in a worker thread, after the response is sent)."""

    def __init__(self, app: ASGIApp, bound: UploadBound) -> None:
        self.app = app
        self.bound = bound

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
        if scope["type"] == "http" and scope["path"].rstrip("/") in WRITING_ROUTES:
            await anyio.to_thread.run_sync(prune, self.bound)
