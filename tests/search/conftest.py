"""Fixtures for the search tests: the offline data folder and one small local Ray for in-process searches."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir(mnist_data_dir: Path) -> str:
    """The offline MNIST folder (tests/conftest.py's mnist_data_dir) as a string, for --data-dir."""
    return str(mnist_data_dir)


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU local Ray for the module; run_search reuses it (and leaves it running)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
