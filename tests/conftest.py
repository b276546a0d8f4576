"""Fixtures shared by every test package.

* ``mnist_data_dir``: the offline MNIST folder ($VAESEARCH_DATA_DIR, else ../shared/mnist next to the
  repository); the test fails, not skips, when it is missing. When the variable is unset and the
  default folder exists, pytest_configure sets it, so that plain ``pytest`` works and the processes
  tests start (the app, a search, Ray's trial workers) find the same data.
* ``data_dir``: the same folder as a string, for ``--data-dir`` and ``data_dir=`` arguments.
* ``mnist_splits``: the stratified 8000/1000/1000 train/val/test split of that folder (CPU tensors): the one
  loaded copy of the data that every test shares (tests/serve's ``mnist`` is a slice of it).
* ``trained_fit``: a small LinearVAE (TRAINED_MODEL_CONFIG) trained TRAINED_EPOCHS epochs on it.
* ``trained_checkpoint``: that model saved with vae.checkpoint (with the test split as examples bank);
  the path of the checkpoint folder.

All are session-scoped: the data is loaded and the model trained once per test run (about 5 s).

The test process runs torch on one thread: these models are small, and on a busy 2-core machine (Ray
workers, servers and other jobs on the same cores) two OpenMP threads made the fixture's training 15 times
slower than one (84 s against 5.5 s, measured side by side). Processes the tests start keep their own setting.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from vae.checkpoint import save_checkpoint
from vae.config import ModelConfig, TrainConfig
from vae.data import DATA_DIR_ENV, DataSplits, load_splits
from vae.train import FitResult, fit

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAINED_MODEL_CONFIG = ModelConfig(latent_width=128, reparam_width=16)
TRAINED_EPOCHS = 8
# A larger lr than the search's default 3e-4, so that a few seconds of training give recognisable digits.
TRAINED_TRAIN_CONFIG = TrainConfig(lr=3e-3, batch_size=128, rounds=TRAINED_EPOCHS, seed=0)


DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "mnist"


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get(DATA_DIR_ENV) and DEFAULT_DATA_DIR.is_dir():
        os.environ[DATA_DIR_ENV] = str(DEFAULT_DATA_DIR)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def mnist_data_dir() -> Path:
    folder = Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).absolute()
    if not folder.is_dir():
        pytest.fail(f"offline MNIST not found at {folder}: set {DATA_DIR_ENV} to a folder of MNIST IDX files "
                    f"(default: ../shared/mnist next to the repository)", pytrace=False)
    return folder


@pytest.fixture(scope="session")
def data_dir(mnist_data_dir: Path) -> str:
    return str(mnist_data_dir)


@pytest.fixture(scope="session")
def mnist_splits(mnist_data_dir: Path) -> DataSplits:
    return load_splits("mnist", mnist_data_dir, seed=0, device="cpu", log_fn=lambda _msg: None)


@pytest.fixture(scope="session")
def trained_fit(mnist_splits: DataSplits) -> FitResult:
    return fit(TRAINED_MODEL_CONFIG, TRAINED_TRAIN_CONFIG, mnist_splits, device=torch.device("cpu"))


@pytest.fixture(scope="session")
def trained_checkpoint(trained_fit: FitResult, mnist_splits: DataSplits, tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("trained") / "checkpoint"
    return save_checkpoint(
        directory, trained_fit.model, dataset="mnist", metrics=trained_fit.history[-1],
        train_config=TRAINED_TRAIN_CONFIG,
        examples=mnist_splits.test,
    )
