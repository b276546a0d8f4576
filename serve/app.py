"""The web app's command line: load what to serve (an experiment, a running search or one checkpoint), build
the Gradio app (serve.ui) and launch it. Every request is handled by serve.service.

    python -m serve.app                         # the latest experiment under results/
    python -m serve.app --experiment results/NAME     # also while its search runs: follows its best so far
    python -m serve.app --checkpoint runs/vae-512-64/checkpoint --port 7861

Each view is also an API endpoint (gradio_client, or POST /gradio_api/call/<name>): /generate, /prior,
/interpolate, /reconstruct, /search_progress, /model_info, /switch_model; every call goes through the
queue (--concurrency, --max-queue), and the queue-bypassing /gradio_api/run/<name> routes are closed.
Uploads: PNG, JPEG, WebP, GIF or BMP only, at most 10 MB and 4096x4096 pixels; what uploads keep on disk is
bounded (serve.uploads). Every request passes serve.edge first: malformed requests are refused before Gradio
sees them, and each refused or failed request leaves one line in the log, never a traceback.
Set VAESEARCH_AUTH="user:password" to require a login (serve.login): before it, every route answers 401 but the
login page.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry from a local demo

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from search.layout import DEFAULT_STORAGE, latest_experiment  # noqa: E402
from serve.edge import edge_middleware  # noqa: E402
from serve.experiment import ExperimentError  # noqa: E402
from serve.images import MAX_INPUT_PIXELS  # noqa: E402
from serve.login import Sessions  # noqa: E402
from serve.service import NoCheckpointYet, VAEService  # noqa: E402
from serve.ui import CSS, MAX_UPLOAD_BYTES, build_app  # noqa: E402
from vae.checkpoint import CheckpointError  # noqa: E402

AUTH_ENV = "VAESEARCH_AUTH"


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serve.app",
        description="Serve a VAE checkpoint as a Gradio web app (Generate, Prior, Interpolate, Reconstruct, Model). "
        f"Set {AUTH_ENV}=user:password to require a login.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--experiment", type=Path, default=None,
                        help="a search's experiment folder: exported (its best/ is served) or still running (its best "
                        f"trial checkpoint so far is served and followed); default: the latest exported under "
                        f"{DEFAULT_STORAGE}/")
    source.add_argument("--checkpoint", type=Path, default=None, help="serve one checkpoint folder instead")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="with --experiment of a search that has no trial checkpoint yet (or whose folder does "
                        "not exist yet), wait up to this long for its first one (default 0: refuse at once)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="requests processed at once (default 2: one per core on a small CPU server)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests waiting at most; more are refused (default 64)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads per request (default 1: concurrent requests use the cores)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    return parser.parse_args(argv)


def _sessions_from_env() -> Sessions | None:
    """The login VAESEARCH_AUTH=user:password asks for, or None without it."""
    value = os.environ.get(AUTH_ENV)
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{AUTH_ENV} must look like user:password (value not shown)")
    return Sessions(user, password)


def _load_service(args: argparse.Namespace) -> VAEService:
    if args.checkpoint is not None:
        return VAEService.from_checkpoint(args.checkpoint)
    experiment = args.experiment or latest_experiment(DEFAULT_STORAGE)
    if experiment is None:
        raise ExperimentError(f"no exported experiment under {DEFAULT_STORAGE}/ (run python -m search.run first, "
                              "or pass --experiment DIR or --checkpoint DIR)")
    return _wait_for_experiment(Path(experiment), args.wait)


def _wait_for_experiment(path: Path, wait_s: float) -> VAEService:
    """Serve ``path``; a search that has not saved a checkpoint yet (or not even made its folder) is waited
    for up to ``wait_s`` seconds, with one line saying so, then refused with one line."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            return VAEService.from_experiment(path)
        except ExperimentError as exc:
            not_yet = isinstance(exc, NoCheckpointYet) or not path.exists() or (path.is_dir()
                                                                                and not any(path.iterdir()))
            if not not_yet or wait_s <= 0 or time.monotonic() >= deadline:
                if isinstance(exc, NoCheckpointYet):
                    hint = f"; waited {wait_s:g} s" if wait_s > 0 else "; pass --wait SECONDS to wait for it"
                    raise NoCheckpointYet(f"{exc}{hint}") from exc
                raise
            if not told:
                print(f"waiting up to {wait_s:g} s for the first trial checkpoint of the search at {path}",
                      file=sys.stderr, flush=True)
                told = True
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        for name in ("port", "concurrency", "max_queue", "torch_threads"):
            low = 1
            if getattr(args, name) < low or (name == "port" and args.port > 65535):
                raise ValueError(f"--{name.replace('_', '-')} is out of range: {getattr(args, name)}")
        sessions = _sessions_from_env()
        service = _load_service(args)
    except (ValueError, ExperimentError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.torch_threads)
    # Uploads and sketches are opened by serve.images only (serve.components), with the allowed formats and
    # the size checked first. As a second line, Pillow itself refuses, from the header and before decoding,
    # images over 2 * MAX_IMAGE_PIXELS: at half the app's cap, nothing larger than the cap is ever decoded.
    Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS // 2
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    demo = build_app(service)
    # api_open=False closes the /gradio_api/run/<name> (and /api/<name>) routes, which would run handlers
    # outside the queue and so outside --concurrency and --max-queue; /call/<name> and the browser's
    # /queue/join go through the queue.
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.max_queue, api_open=False)
    # The login is the app's own (serve.login), handed to Gradio as its auth_dependency; every request passes the
    # app's middleware first (serve.edge). num_workers=0: Gradio's static file workers would serve uploads and
    # files on ports of their own, outside that middleware.
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, max_file_size=MAX_UPLOAD_BYTES,
                auth_dependency=sessions.user_of if sessions else None,
                app_kwargs={"middleware": edge_middleware(demo, sessions, MAX_UPLOAD_BYTES)},
                css=CSS, ssr_mode=False, mcp_server=False, enable_monitoring=False, show_error=True, num_workers=0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
