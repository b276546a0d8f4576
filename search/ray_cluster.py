"""The Ray a search runs on: joining a cluster or starting a local Ray, checking that a trial fits on some
node, and ending the processes a killed search's local Ray left behind.

A local Ray's agents (ray::DashboardAgent, ray::RuntimeEnvAgent) are children of its raylet; when the driver is
SIGKILLed, the raylet dies with it but they do not, and live on as orphans. The search records the processes of
the Ray it starts (``record_ray_processes``); the next search on the same experiment (--resume) ends those that
outlived their driver (``reap_orphans``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from search.config import SearchConfig
from search.library_internals import resolve_ray_address

INFEASIBLE_WAIT_S = 60.0  # a joined cluster may autoscale: how long to wait for a node a trial fits on


class SearchError(RuntimeError):
    """A problem the user can fix (bad address, missing experiment or data); one line."""


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast (SearchError) when a Ray cluster address cannot be reached: ray.init would retry for minutes."""
    target = address[len("ray://"):] if address.startswith("ray://") else address
    try:
        resolved = resolve_ray_address(target) if target == "auto" else target
    except Exception as exc:
        raise SearchError(f"cannot resolve Ray address {address!r} ({exc})") from exc
    if not resolved:
        raise SearchError(f"no running Ray cluster found for --address {address!r} (start one with 'ray start --head')")
    host, _, port = resolved.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"--address {address!r} is not 'auto' or host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SearchError(f"cannot reach the Ray cluster at {resolved} ({exc.strerror or exc})") from exc


def start_ray(config: SearchConfig) -> bool:
    """Connect to ``config.address`` or start a local Ray; returns whether this call started it.

    A Ray already initialised in this process (a benchmark running several searches) is reused.
    """
    if ray.is_initialized():
        return False
    # The trials' own output ("Checkpoint successfully created", W&B) reaches the console at --verbose 2 only.
    log_to_driver = config.verbose >= 2
    if config.address:
        check_address(config.address)
        ray.init(address=config.address, log_to_driver=log_to_driver)
    else:
        ray.init(address="local", num_cpus=config.num_cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=log_to_driver)
    return True


def check_resources(config: SearchConfig, *, wait_s: float = 0.0, log: Callable[[str], None] = print) -> None:
    """Raise SearchError unless some node of the cluster can hold one trial (its CPUs and GPUs together).

    Ray would otherwise leave the trials PENDING forever. A cluster that was joined (--address) may add
    nodes (autoscaling): it is given ``wait_s`` seconds to grow one that fits, with a warning first.
    """
    need = {"CPU": float(config.cpus_per_trial), "GPU": float(config.gpus_per_trial)}

    def nodes() -> list[dict[str, float]]:
        return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]

    def fits(resources: dict[str, float]) -> bool:
        return all(resources.get(key, 0.0) >= amount for key, amount in need.items() if amount > 0)

    current = nodes()
    if any(fits(r) for r in current):
        return
    largest = {key: max((r.get(key, 0.0) for r in current), default=0.0) for key in need}
    missing = ", ".join(f"{amount - largest[key]:g} {key}s" for key, amount in need.items() if largest[key] < amount)
    problem = (f"a trial needs {need['CPU']:g} CPUs and {need['GPU']:g} GPUs on one node, but the largest of the "
               f"{len(current)} node(s) of this Ray has {largest['CPU']:g} CPUs and {largest['GPU']:g} GPUs "
               f"(missing {missing})")
    if wait_s > 0:
        log(f"warning: {problem}; waiting up to {wait_s:g} s for the cluster to add a node that fits")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            time.sleep(2.0)
            if any(fits(r) for r in nodes()):
                return
        problem += f", and none was added within {wait_s:g} s"
    raise SearchError(f"{problem}: lower --cpus-per-trial / --gpus-per-trial, or add nodes that have them")


def _ray_process_tree() -> list[dict[str, Any]]:
    """PID and start time of every descendant of this driver: a local Ray's GCS, raylet and the rest are
    the driver's children, and the agents and workers the raylet's."""
    import psutil  # ships with Ray

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            found.append({"pid": proc.pid, "create_time": proc.create_time()})
        except psutil.Error:
            continue
    return found


def record_ray_processes(path: Path) -> None:
    """Write this driver's and its local Ray's processes to ``path`` (see reap_orphans)."""
    import psutil

    me = psutil.Process()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"driver": {"pid": me.pid, "create_time": me.create_time()},
                                "pgid": os.getpgid(0), "processes": _ray_process_tree()}))


def reap_orphans(path: Path, log: Callable[[str], None] = print) -> int:
    """End the Ray processes recorded in ``path`` by a driver that is no longer running; returns how many.

    A process is ended only if it is the very process recorded (same PID and start time) or, for the
    agents started after the record was written, a Ray process (``ray::...``) of the dead driver's
    process group started after it."""
    import psutil

    try:
        record = json.loads(path.read_text())
        driver = record["driver"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    try:
        if psutil.Process(driver["pid"]).create_time() == driver["create_time"]:
            return 0  # that search is still running
    except psutil.Error:
        pass
    recorded = {(p["pid"], p["create_time"]) for p in record.get("processes", [])}
    victims = []
    for proc in psutil.process_iter(["pid", "create_time", "cmdline"]):
        try:
            mine = (proc.info["pid"], proc.info["create_time"]) in recorded
            orphan = (proc.info["create_time"] >= driver["create_time"] and os.getpgid(proc.pid) == record["pgid"]
                      and " ".join(proc.info["cmdline"] or []).startswith("ray::"))
        except (psutil.Error, OSError):
            continue
        if (mine or orphan) and proc.pid != os.getpid():
            victims.append(proc)
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
    psutil.wait_procs(victims, timeout=10)
    if victims:
        log(f"ended {len(victims)} Ray process(es) left by the killed search (pids "
            f"{', '.join(str(p.pid) for p in victims)})")
    path.unlink(missing_ok=True)
    return len(victims)
