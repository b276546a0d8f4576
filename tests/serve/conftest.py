"""Fixtures for the serve tests: a small exported experiment (two briefly trained trials, written
as search/layout.py describes) and PNG bytes for upload tests; serve_harness.py starts real servers."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from search.layout import BEST_DIR, LEADERBOARD_JSON, TRIALS_DIR
from vae.checkpoint import save_checkpoint
from vae.config import ModelConfig, TrainConfig
from vae.data import DataSplits, Split
from vae.train import evaluate, fit

TRIALS = {"t_wide": ModelConfig(96, 8), "t_narrow": ModelConfig(48, 4)}  # the first is the best


@pytest.fixture(scope="session")
def mnist(mnist_splits: DataSplits) -> DataSplits:
    """The shared offline MNIST with a 3000-image training split: enough for a one-epoch model to draw digits."""
    return replace(mnist_splits, train=Split(mnist_splits.train.images[:3000], mnist_splits.train.labels[:3000]))


@pytest.fixture(scope="session")
def experiment(tmp_path_factory: pytest.TempPathFactory, mnist: DataSplits) -> Path:
    """<tmp>/exp/ with best/ (the best trial's checkpoint), best/trials/<id>/ and best/leaderboard.json."""
    root = tmp_path_factory.mktemp("results") / "exp"
    best = root / BEST_DIR
    rows = []
    for rank, (trial_id, config) in enumerate(TRIALS.items(), start=1):
        train = TrainConfig(lr=2e-3, batch_size=64, rounds=1, seed=rank)
        result = fit(config, train, mnist, device="cpu")
        val = evaluate(result.model, mnist.val.images)
        save_checkpoint(best / TRIALS_DIR / trial_id, result.model, dataset="mnist", train_config=train,
                        metrics={"val_neg_elbo": val["neg_elbo"]}, examples=mnist.test)
        rows.append({
            "rank": rank, "trial_id": trial_id, "status": "FINISHED", "is_best": rank == 1,
            "latent_width": config.latent_width, "reparam_width": config.reparam_width, "lr": train.lr,
            "batch_size": train.batch_size, "best_val_neg_elbo": val["neg_elbo"], "last_val_neg_elbo": val["neg_elbo"],
            "rounds": 1, "time_s": 1.0, "parameters": result.model.num_parameters(),
            "val_active_units": val["active_units"], "node": "local", "error": None,
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
