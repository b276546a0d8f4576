"""A real multi-node Ray cluster on 127.0.0.1: one `ray start --block` process per node.

Each node gets its own ports, its own --temp-dir and an explicit CPU count; worker nodes also get
a custom resource named after the node (e.g. {"node_a": 1}) so placement is visible. Token auth
is on, with a fresh token handed to every process through the environment (`RAY_AUTH_MODE=token`,
`RAY_AUTH_TOKEN`), so nothing reads or writes ~/.ray/auth_token and drivers must use `driver_env`.

Every process is stopped by PID (SIGTERM to `ray start`, then SIGKILL): those descended from a
node's `ray start --block` process, and any other process that carries this cluster's marker
variable in its environment (Ray workers and agents inherit it, also once re-parented after their
raylet died). `ray stop` is never used: it would find other clusters on the machine too.

Linux only (reads /proc). Used by tests/cluster and benchmarks/cluster_scaling.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ports import free_port

MARKER_ENV = "VAESEARCH_TEST_CLUSTER"
STARTED_LINE = "Ray runtime started"
RAY_CLI = str(Path(sys.executable).with_name("ray"))
HEAD_RESOURCE = "node:__internal_head__"
LIST_NODES = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
print(json.dumps([n["Resources"] | {"NodeID": n["NodeID"]} for n in ray.nodes() if n["Alive"]]))
"""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    num_cpus: int
    resources: dict[str, float] = field(default_factory=dict)


@dataclass
class RayNode:
    spec: NodeSpec
    temp_dir: Path
    log: Path
    process: subprocess.Popen


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours
        return b""


def _processes() -> dict[int, tuple[int, bytes, bytes]]:
    """pid -> (parent pid, cmdline, environ) of every process visible in /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if not stat:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])  # field 4; the name in (...) may hold spaces
        table[int(entry)] = (ppid, _read(f"/proc/{entry}/cmdline"), _read(f"/proc/{entry}/environ"))
    return table


def _descendants(roots: Iterable[int], table: dict[int, tuple[int, bytes, bytes]]) -> set[int]:
    found = {r for r in roots if r in table}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in table.items() if ppid in found} - found
        found |= children
        grew = bool(children)
    return found


def _alive(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def _signal(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    alive = {p for p in pids if _alive(p)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = {p for p in alive if _alive(p)}
    return alive


class LocalRayCluster:
    """Head plus worker nodes on 127.0.0.1; use as a context manager or call start()/stop()."""

    def __init__(self, head: NodeSpec, workers: Iterable[NodeSpec], object_store_mb: int = 100,
                 logs_to: Path | None = None):
        """`logs_to`: a folder that receives each node's `ray start` output when the cluster stops."""
        self.head_spec = head
        self.logs_to = logs_to
        self.worker_specs = list(workers)
        self.object_store_bytes = object_store_mb * 1024 * 1024
        # Short path under the system temp dir: Ray's Unix sockets live below --temp-dir and
        # AF_UNIX paths are limited to 107 bytes, which pytest's tmp_path can exceed.
        self.root = Path(tempfile.mkdtemp(prefix="vray-"))
        self.port = free_port()
        self.marker = secrets.token_hex(8)
        self.token = secrets.token_hex(32)
        self.nodes: dict[str, RayNode] = {}
        self.stopped_pids: set[int] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def driver_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a process that joins this cluster (a node, or a driver using --address)."""
        env = dict(os.environ if base is None else base)
        env.pop("RAY_ADDRESS", None)
        env.pop("RAY_AUTH_TOKEN_PATH", None)
        env.update({
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            MARKER_ENV: self.marker,
            "RAY_USAGE_STATS_ENABLED": "0",
        })
        return env

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90.0) -> None:
        self._launch(self.head_spec, head=True)
        self._wait_started([self.head_spec.name], timeout)
        for spec in self.worker_specs:
            self._launch(spec, head=False)
        self._wait_started([s.name for s in self.worker_specs], timeout)

    def _launch(self, spec: NodeSpec, head: bool) -> None:
        temp_dir = self.root / spec.name
        temp_dir.mkdir()
        args = [
            RAY_CLI, "start", "--block", "--disable-usage-stats",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp_dir}",
            f"--num-cpus={spec.num_cpus}", "--num-gpus=0",
            f"--resources={json.dumps(spec.resources)}",
            f"--object-store-memory={self.object_store_bytes}",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
        ]
        if head:
            args += [
                "--head", f"--port={self.port}", "--include-dashboard=false",
                f"--dashboard-port={free_port()}",
            ]
        else:
            args.append(f"--address={self.address}")
        log = self.root / f"{spec.name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=self.driver_env(),
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        self.nodes[spec.name] = RayNode(spec, temp_dir, log, process)

    def _wait_started(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            node = self.nodes[pending[0]]
            if STARTED_LINE in node.log.read_text(errors="replace"):
                pending.pop(0)
                continue
            if node.process.poll() is not None:
                raise RuntimeError(f"ray node {node.spec.name} exited early:\n{self.log_tail(node.spec.name)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"ray node {node.spec.name} not up after {timeout}s:\n"
                                   f"{self.log_tail(node.spec.name)}")
            time.sleep(0.2)

    def node_ids(self, timeout: float = 60.0) -> dict[str, str]:
        """Node name -> Ray node ID of every live node, as a driver sees them (names from the
        custom resource each worker carries; the head by Ray's head marker)."""
        probe = subprocess.run([sys.executable, "-c", LIST_NODES, self.address], env=self.driver_env(),
                               capture_output=True, text=True, timeout=timeout)
        if probe.returncode != 0:
            raise RuntimeError(f"listing the nodes failed:\n{probe.stderr[-3000:]}")
        ids = {}
        for node in json.loads(probe.stdout.strip().splitlines()[-1]):
            for spec in [self.head_spec, *self.worker_specs]:
                mark = HEAD_RESOURCE if spec is self.head_spec else next(iter(spec.resources), None)
                if mark is not None and mark in node:
                    ids[spec.name] = node["NodeID"]
        return ids

    def log_tail(self, name: str, lines: int = 30) -> str:
        return "\n".join(self.nodes[name].log.read_text(errors="replace").splitlines()[-lines:])

    def node_pids(self, name: str) -> set[int]:
        """Live processes of one node: its `ray start` process and everything below it."""
        node = self.nodes[name]
        table = _processes()
        tree = _descendants([node.process.pid], table)
        in_dir = {pid for pid, (_, cmd, _) in table.items() if str(node.temp_dir).encode() + b"/" in cmd}
        return tree | in_dir

    def raylet_pid(self, name: str) -> int:
        table = _processes()
        for pid in self.node_pids(name):
            if table.get(pid, (0, b"", b""))[1].split(b"\0")[0].endswith(b"raylet/raylet"):
                return pid
        raise LookupError(f"no raylet process for node {name}")

    def all_pids(self) -> set[int]:
        """Every live process this cluster started, drivers given `driver_env` included."""
        table = _processes()
        mark = f"{MARKER_ENV}={self.marker}".encode()
        marked = {pid for pid, (_, _, env) in table.items() if mark in env.split(b"\0")}
        tree = _descendants([n.process.pid for n in self.nodes.values()], table)
        return (marked | tree) - {os.getpid()}

    def kill_node(self, name: str, timeout: float = 30.0) -> int:
        """Lose a node the hard way: SIGKILL its raylet; the rest of the node goes down with it.

        Returns the raylet's PID. Whatever of the node is still alive after `timeout` is SIGKILLed.
        """
        before = self.node_pids(name)
        raylet = self.raylet_pid(name)
        os.kill(raylet, signal.SIGKILL)
        leftover = _wait_gone(before | self.node_pids(name), timeout)
        _signal(leftover, signal.SIGKILL)
        self.stopped_pids |= before
        self.nodes[name].process.wait(timeout=10)
        return raylet

    def stop(self, grace: float = 10.0) -> set[int]:
        """Stop every process of the cluster, by PID.

        SIGTERM goes to each node's `ray start --block` process, which drains its node and stops
        the processes it started (Ray's own daemons ignore a direct SIGTERM for a long while);
        whatever is left after `grace` seconds, or appears meanwhile, is SIGKILLed.
        """
        pids = self.all_pids()
        _signal([n.process.pid for n in self.nodes.values() if n.process.poll() is None], signal.SIGTERM)
        leftover = _wait_gone(pids, grace)
        for _ in range(3):
            leftover |= self.all_pids()
            if not leftover:
                break
            pids |= leftover
            _signal(leftover, signal.SIGKILL)
            leftover = _wait_gone(leftover, 5.0)
        self.stopped_pids |= pids
        for node in self.nodes.values():
            try:
                node.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(timeout=5)
        if self.logs_to is not None:
            self.logs_to.mkdir(parents=True, exist_ok=True)
            for node in self.nodes.values():
                shutil.copy(node.log, self.logs_to / node.log.name)
        shutil.rmtree(self.root, ignore_errors=True)
        return self.stopped_pids


def two_worker_cluster(logs_to: Path | None = None) -> LocalRayCluster:
    """The layout of the multi-node tests: a head with no CPUs and two 1-CPU workers, node_a and node_b."""
    return LocalRayCluster(
        head=NodeSpec("head", num_cpus=0),
        workers=[NodeSpec("node_a", 1, {"node_a": 1}), NodeSpec("node_b", 1, {"node_b": 1})],
        logs_to=logs_to,
    )
