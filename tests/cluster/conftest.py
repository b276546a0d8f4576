"""Fixtures that start real Ray nodes on 127.0.0.1 (see localcluster.py) and always stop them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from localcluster import LocalRayCluster, two_worker_cluster


@pytest.fixture
def ray_cluster(tmp_path: Path) -> Iterator[LocalRayCluster]:
    """Head (0 CPUs) + workers node_a and node_b (1 CPU each); node logs end up in tmp_path/ray-logs.

    After the test, no process of the cluster (nodes, workers, drivers given its environment) may be left."""
    cluster = two_worker_cluster(logs_to=tmp_path / "ray-logs")
    with cluster:
        yield cluster
    left = cluster.all_pids()
    assert not left, f"the test's Ray cluster left processes running: {sorted(left)}"
