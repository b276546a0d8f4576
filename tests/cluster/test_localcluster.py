"""The local multi-node fixture itself: three real nodes, visible placement, clean stop by PID."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from localcluster import _alive, two_worker_cluster

PROBE = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
nodes = [n for n in ray.nodes() if n["Alive"]]

@ray.remote(num_cpus=1)
def where():
    return ray.get_runtime_context().get_node_id()

placed = {name: ray.get(where.options(resources={name: 1}).remote()) for name in ("node_a", "node_b")}
print(json.dumps({"nodes": [{"id": n["NodeID"], "resources": n["Resources"]} for n in nodes], "placed": placed}))
"""


def run_driver(code: str, address: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, address], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.cluster
@pytest.mark.slow
def test_three_nodes_place_by_custom_resource_and_stop_by_pid(tmp_path) -> None:
    cluster = two_worker_cluster(logs_to=tmp_path / "ray-logs")
    with cluster:
        probe = run_driver(PROBE, cluster.address, cluster.driver_env())
        assert probe.returncode == 0, probe.stderr[-3000:]
        seen = json.loads(probe.stdout.strip().splitlines()[-1])

        by_id = {n["id"]: n["resources"] for n in seen["nodes"]}
        assert len(by_id) == 3
        assert sorted(r.get("CPU", 0) for r in by_id.values()) == [0, 1, 1]
        assert by_id[seen["placed"]["node_a"]].get("node_a") == 1
        assert by_id[seen["placed"]["node_b"]].get("node_b") == 1
        assert seen["placed"]["node_a"] != seen["placed"]["node_b"]
        ids = cluster.node_ids()
        assert ids["node_a"] == seen["placed"]["node_a"] and ids["node_b"] == seen["placed"]["node_b"]
        assert set(ids) == {"head", "node_a", "node_b"} and len(set(ids.values())) == 3

        started = cluster.all_pids()
        assert {cluster.raylet_pid(n) for n in ("head", "node_a", "node_b")} <= started

    assert started <= cluster.stopped_pids
    assert not [pid for pid in started if _alive(pid)]
    assert cluster.all_pids() == set()
    assert (tmp_path / "ray-logs" / "node_a.log").is_file()
