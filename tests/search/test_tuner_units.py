"""Issue 11, without starting Ray: the resource check's message and the reaping of a killed search's
Ray processes (only those of a driver that is gone, only the recorded or orphaned ray:: ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import ray

from search import ray_cluster
from search.config import SearchConfig
from search.ray_cluster import SearchError, check_resources, reap_orphans


def _nodes(*resources: dict) -> list[dict]:
    return [{"Alive": True, "Resources": r} for r in resources] + [{"Alive": False, "Resources": {"CPU": 99.0}}]


def test_a_trial_must_fit_on_one_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray, "nodes", lambda: _nodes({"CPU": 2.0}, {"CPU": 2.0, "GPU": 1.0}))
    check_resources(SearchConfig(cpus_per_trial=2, gpus_per_trial=1.0))  # the second node holds it
    with pytest.raises(SearchError, match=r"needs 3 CPUs and 1 GPUs on one node.*largest of the 2 node\(s\) "
                                          r"of this Ray has 2 CPUs and 1 GPUs \(missing 1 CPUs\)"):
        check_resources(SearchConfig(cpus_per_trial=3, gpus_per_trial=1.0))  # 4 CPUs in all, but not on one node


def test_a_joined_cluster_gets_time_to_grow(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = iter([_nodes({"CPU": 1.0}), _nodes({"CPU": 1.0}), _nodes({"CPU": 1.0}, {"CPU": 8.0})])
    monkeypatch.setattr(ray, "nodes", lambda: next(calls))
    monkeypatch.setattr(ray_cluster.time, "sleep", lambda _s: None)
    lines: list[str] = []
    check_resources(SearchConfig(cpus_per_trial=8), wait_s=60, log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("warning: a trial needs 8 CPUs") and "waiting up to 60 s" in lines[0]


def _psutil():
    import psutil  # ships with Ray: importable once ray is imported

    return psutil


def _record(path, driver, victim) -> None:
    path.write_text(json.dumps({"driver": {"pid": driver.pid, "create_time": driver.create_time()},
                                "pgid": os.getpgid(victim.pid),
                                "processes": [{"pid": victim.pid, "create_time": victim.create_time()}]}))


def test_the_processes_of_a_dead_driver_are_ended(tmp_path) -> None:
    psutil = _psutil()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_driver = psutil.Process(dead.pid)
    dead_driver.create_time()  # read while it exists
    record = {"pid": dead.pid, "create_time": dead_driver.create_time()}
    dead.wait()
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        path = tmp_path / "ray_processes.json"
        path.write_text(json.dumps({"driver": record, "pgid": os.getpgid(victim.pid),
                                    "processes": [{"pid": victim.pid,
                                                   "create_time": psutil.Process(victim.pid).create_time()}]}))
        assert reap_orphans(path, log=lambda _m: None) == 1
        assert not psutil.pid_exists(victim.pid) and not path.exists()  # killed (and reaped by psutil)
    finally:
        victim.kill()


def test_the_processes_of_a_running_driver_are_left_alone(tmp_path) -> None:
    psutil = _psutil()
    victim = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        path = tmp_path / "ray_processes.json"
        _record(path, psutil.Process(), psutil.Process(victim.pid))  # this test process is the live driver
        assert reap_orphans(path, log=lambda _m: None) == 0
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
