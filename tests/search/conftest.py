"""Fixtures for the search tests: one small local Ray for in-process searches (the data: tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU local Ray for the module; run_search reuses it (and leaves it running)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
