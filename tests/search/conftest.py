"""Fixtures for the search tests: the offline data folder and one small local Ray for in-process searches."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vae.data import DATA_DIR_ENV


@pytest.fixture(scope="session")
def data_dir() -> str:
    folder = os.environ.get(DATA_DIR_ENV)
    if not folder or not Path(folder).is_dir():
        pytest.fail(f"set {DATA_DIR_ENV} to the offline MNIST folder (e.g. ../shared/mnist) to run the search tests")
    return str(Path(folder).absolute())


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU local Ray for the module; run_search reuses it (and leaves it running)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
