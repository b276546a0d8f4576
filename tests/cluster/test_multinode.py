"""The search on a real multi-node Ray cluster: `python -m search.run --address` against a head and two
worker nodes started with `ray start` on 127.0.0.1 (see localcluster.py), results in a shared folder
that stands in for S3 (every node is on this machine).

The head advertises no CPUs and each worker one, so two concurrent 1-CPU trials must use both
workers. The first test starts a new actor per trial (--no-reuse-actors): its trials last about a second,
and with actor reuse Tune may hand the second trial to the first trial's finished actor on node_a while the
actor it had asked for on node_b is still starting (it did so in CI), which is Tune working as documented.

The trainable records the Ray node ID in every result; the leaderboard's `node` field
holds "<ip>/<first 8 hex digits of the node ID>". The second test kills a worker node under a running trial and
checks that Tune restarted that trial on the other node from its last checkpoint.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from localcluster import LocalRayCluster

from search.layout import LEADERBOARD_CSV, LEADERBOARD_FIELDS, LEADERBOARD_JSON, best_dir
from vae.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
SEARCH_TIMEOUT_S = 300
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def search_command(cluster: LocalRayCluster, storage: Path, name: str, *options: str) -> list[str]:
    return [
        sys.executable, "-m", "search.run", "--address", cluster.address, "--storage", str(storage),
        "--name", name, "--trials", "4", "--max-concurrent", "2", "--cpus-per-trial", "1",
        "--batch-sizes", "128", "--wandb-mode", "disabled", "--verbose", "0", "--seed", "0", *options,
    ]


def driver_env(cluster: LocalRayCluster) -> dict[str, str]:
    env = cluster.driver_env()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_search(cluster: LocalRayCluster, command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, cwd=REPO, env=driver_env(cluster), capture_output=True, text=True,
                          timeout=SEARCH_TIMEOUT_S)
    assert done.returncode == 0, f"search failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done


def leaderboard(experiment: Path) -> list[dict]:
    return json.loads((best_dir(experiment) / LEADERBOARD_JSON).read_text())


def assert_export_complete(experiment: Path, trials: int) -> list[dict]:
    """best/ holds a loadable best model and a leaderboard row for every trial, in JSON and CSV."""
    best = best_dir(experiment)
    rows = leaderboard(experiment)
    assert len(rows) == trials
    assert len({r["trial_id"] for r in rows}) == trials
    assert all(tuple(r) == LEADERBOARD_FIELDS for r in rows)
    with open(best / LEADERBOARD_CSV, newline="") as f:
        assert sorted(r["trial_id"] for r in csv.DictReader(f)) == sorted(r["trial_id"] for r in rows)
    winners = [r for r in rows if r["is_best"]]
    assert len(winners) == 1 and winners[0]["rank"] == 1
    for row in rows:
        if row["status"] == "ERROR":
            assert row["error"], f"failed trial {row['trial_id']} gives no reason"
        else:
            assert row["error"] is None and row["checkpoint"] and (best / row["checkpoint"]).is_dir()
    checkpoint = load_checkpoint(best)
    assert checkpoint.config.latent_width == winners[0]["latent_width"]
    return rows


def node_history(experiment: Path) -> dict[str, list[tuple[int, str]]]:
    """trial_id -> [(report timestamp, node ID)] from every result Tune recorded for the trial."""
    history = {}
    for result_file in experiment.glob("trial_*/result.json"):
        reports = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        history[result_file.parent.name.removeprefix("trial_")] = [(r["timestamp"], r["node_id"]) for r in reports]
    return history


def names_by_prefix(ids: dict[str, str]) -> dict[str, str]:
    return {node_id[:8]: name for name, node_id in ids.items()}


def test_search_spans_two_nodes(ray_cluster: LocalRayCluster, tmp_path: Path) -> None:
    ids = ray_cluster.node_ids()
    storage = tmp_path / "storage"
    run_search(ray_cluster, search_command(ray_cluster, storage, "spread", "--max-rounds", "2", "--no-reuse-actors",
                                           "--latent-width", "16", "512", "--reparam-width", "2", "64"))

    experiment = storage / "spread"
    rows = assert_export_complete(experiment, trials=4)
    assert all(r["status"] == "FINISHED" and r["rounds"] == 2 for r in rows)
    by_prefix = names_by_prefix(ids)
    placed = {by_prefix[r["node"].rsplit("/", 1)[1]] for r in rows}
    assert placed == {"node_a", "node_b"}  # never the head: it has no CPU to give
    # Every report of every trial came from a worker node, and the leaderboard agrees with them.
    history = node_history(experiment)
    assert sorted(history) == sorted(r["trial_id"] for r in rows)
    for row in rows:
        assert {node for _, node in history[row["trial_id"]]} == {ids[by_prefix[row["node"].rsplit("/", 1)[1]]]}


def trial_reports(experiment: Path, trial_id: str) -> list[dict]:
    """Every result Tune recorded for the trial, in order (result.json; a line being written is left out)."""
    lines = (experiment / f"trial_{trial_id}" / "result.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def wait_for_checkpointed_trial_on(experiment: Path, node_id: str, process: subprocess.Popen,
                                   timeout: float = 180) -> str:
    """The ID of a trial whose last result came from `node_id` with a checkpoint, and that is not done yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the search ended before a trial ran on the node to kill"
        for result_file in experiment.glob("trial_*/result.json"):
            reports = trial_reports(experiment, result_file.parent.name.removeprefix("trial_"))
            last = reports[-1] if reports else None
            if last and last["node_id"] == node_id and last.get("checkpoint_dir_name") and not last["done"]:
                return result_file.parent.name.removeprefix("trial_")
        time.sleep(0.2)
    raise TimeoutError(f"no trial reported a checkpoint from node {node_id[:8]} within {timeout}s")


LOSS_ROUNDS = 10


def test_a_trial_on_a_lost_node_resumes_from_its_checkpoint_on_the_other(ray_cluster: LocalRayCluster,
                                                                          tmp_path: Path) -> None:
    ids = ray_cluster.node_ids()
    storage = tmp_path / "storage"
    experiment = storage / "node-loss"
    # Wider models and more rounds than above, so that a trial is still running when its node dies;
    # --grace-period 1: trials write their best round as a checkpoint every round (by default once per
    # ASHA rung), so the interrupted trial has a checkpoint to be restarted from.
    command = search_command(ray_cluster, storage, "node-loss", "--max-rounds", str(LOSS_ROUNDS),
                             "--no-early-stopping", "--grace-period", "1", "--depth", "1", "1",
                             "--latent-width", "512", "1024", "--reparam-width", "8", "64")
    log = tmp_path / "search.log"
    with open(log, "w") as out:
        search = subprocess.Popen(command, cwd=REPO, env=driver_env(ray_cluster), stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        victim = wait_for_checkpointed_trial_on(experiment, ids["node_b"], search)
        ray_cluster.kill_node("node_b")
        killed_at = time.time()
        search.wait(timeout=SEARCH_TIMEOUT_S)
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    output = log.read_text()
    assert search.returncode == 0, f"search failed ({search.returncode}):\n{output[-6000:]}"
    assert "node_b" not in ray_cluster.node_ids()

    rows = assert_export_complete(experiment, trials=4)
    reports = trial_reports(experiment, victim)
    trace = [(r["round"], names_by_prefix(ids).get(r["node_id"][:8]), r.get("resumed_from_round")) for r in reports]
    seen = f"(round, node, resumed_from_round) of each report of trial {victim}: {trace}"
    on_b = [r for r in reports if r["node_id"] == ids["node_b"]]
    on_a = [r for r in reports if r["node_id"] == ids["node_a"]]
    # The interrupted trial ran first on node_b from scratch, then only on node_a, from the checkpoint it had
    # written on node_b (resumed_from_round: the round of the checkpoint a trial started from, 0 when fresh).
    assert on_b and on_a and reports == on_b + on_a, seen
    assert all(r.get("resumed_from_round") == 0 for r in on_b), seen
    resumed_from = on_a[0].get("resumed_from_round")
    assert isinstance(resumed_from, int) and 1 <= resumed_from <= on_b[-1]["round"], seen
    assert all(r.get("resumed_from_round") == resumed_from for r in on_a), seen
    assert [r["round"] for r in on_a] == list(range(resumed_from + 1, LOSS_ROUNDS + 1)), seen
    row = next(r for r in rows if r["trial_id"] == victim)
    assert row["status"] == "FINISHED" and row["rounds"] == LOSS_ROUNDS, row
    assert row["node"].endswith("/" + ids["node_a"][:8])
    # Nothing ran on node_b once it was gone (Tune's timestamps are whole seconds); every other trial finished.
    late_on_b = [(t, trial) for trial, history in node_history(experiment).items()
                 for t, node in history if node == ids["node_b"] and t > killed_at + 1]
    assert late_on_b == []
    assert all(r["status"] == "FINISHED" for r in rows if r["trial_id"] != victim), rows
