"""Fixtures for the serve tests: a small exported experiment (two briefly trained trials, written
as search/layout.py describes) and a real app server started with ``python -m serve.app``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from search.layout import BEST_DIR, LEADERBOARD_JSON, TRIALS_DIR
from vae.checkpoint import save_checkpoint
from vae.config import ModelConfig, TrainConfig
from vae.data import DataSplits, Split, load_splits
from vae.train import evaluate, fit

REPO = Path(__file__).resolve().parents[2]
TRIALS = {"t_wide": ModelConfig(96, 8), "t_narrow": ModelConfig(48, 4)}  # the first is the best
SERVER_START_S = 120


@pytest.fixture(scope="session")
def mnist() -> DataSplits:
    """The offline MNIST with a 3000-image training split: enough for a one-epoch model to draw digits."""
    data = load_splits("mnist", seed=0)
    return DataSplits(data.dataset, Split(data.train.images[:3000], data.train.labels[:3000]), data.val, data.test,
                      data.source)


@pytest.fixture(scope="session")
def experiment(tmp_path_factory: pytest.TempPathFactory, mnist: DataSplits) -> Path:
    """<tmp>/exp/ with best/ (the best trial's checkpoint), best/trials/<id>/ and best/leaderboard.json."""
    root = tmp_path_factory.mktemp("results") / "exp"
    best = root / BEST_DIR
    rows = []
    for rank, (trial_id, config) in enumerate(TRIALS.items(), start=1):
        train = TrainConfig(lr=2e-3, batch_size=64, epochs=1, seed=rank)
        result = fit(config, train, mnist, device="cpu")
        val = evaluate(result.model, mnist.val.images)
        save_checkpoint(best / TRIALS_DIR / trial_id, result.model, dataset="mnist", train_config=train,
                        metrics={"val_neg_elbo": val["neg_elbo"]}, examples=mnist.test)
        rows.append({
            "rank": rank, "trial_id": trial_id, "status": "TERMINATED", "is_best": rank == 1,
            "latent_width": config.latent_width, "reparam_width": config.reparam_width, "lr": train.lr,
            "batch_size": train.batch_size, "best_val_neg_elbo": val["neg_elbo"], "last_val_neg_elbo": val["neg_elbo"],
            "epochs": 1, "time_s": 1.0, "parameters": result.model.num_parameters(),
            "active_units": val["active_units"], "node": "local", "error": None,
            "checkpoint": f"{TRIALS_DIR}/{trial_id}",
        })
    rows.append({"rank": 3, "trial_id": "t_failed", "status": "ERROR", "is_best": False, "error": "diverged",
                 "checkpoint": None})
    for file in (best / TRIALS_DIR / "t_wide").iterdir():
        shutil.copy(file, best / file.name)
    (best / LEADERBOARD_JSON).write_text(json.dumps(rows, indent=1))
    return root


@pytest.fixture
def pixelless_png():
    """make(width, height) -> the bytes of a PNG whose header claims that size but holds no pixels:
    Pillow opens it (reads the size), and only decoding would fail."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def make(width: int, height: int) -> bytes:
        header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")

    return make


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


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
    try:
        deadline = time.monotonic() + SERVER_START_S
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
                    pytest.fail(f"the app did not answer within {SERVER_START_S} s:\n{server.output()}")
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
