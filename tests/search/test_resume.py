"""SIGKILL the search driver once some trials have finished, resume it with --resume, and extend it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest

from search.export import ERROR
from search.tuner import STUDY_FILE

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=REPO, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver's Ray processes share its process group
    except ProcessLookupError:
        pass


def _group_processes(pgid: int) -> dict[int, str]:
    """{pid: start time} of the live processes in process group ``pgid`` (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...; 19: start time
            found[int(entry.name)] = fields[19]
    return found


def _finished_trials(experiment: Path, last_checkpoint: str) -> set[str]:
    return {p.parent.name.removeprefix("trial_") for p in experiment.glob(f"trial_*/{last_checkpoint}")}


def _run(args: list[str], log: Path, timeout: float = 400) -> str:
    proc = _start(args, log)
    try:
        proc.wait(timeout=timeout)
    finally:
        _kill_group(proc)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    return text


def test_sigkilled_search_resumes_with_every_trial_and_the_tpe_state(data_dir, tmp_path):
    storage = tmp_path / "results"
    common = ["--storage", str(storage), "--name", "exp", "--data-dir", data_dir, "--num-cpus", "2",
              "--wandb-mode", "disabled", "--verbose", "0"]
    first = _start([*common, "--trials", "4", "--max-epochs", "2", "--grace-period", "1", "--max-concurrent", "2",
                    # wide enough that, with Tune reusing actors, the other trials are still running when the
                    # first one finishes and the driver is killed
                    "--latent-width", "256", "512", "--reparam-width", "2", "16", "--lr", "1e-4", "1e-3",
                    "--batch-sizes", "128", "--no-early-stopping", "--no-warm-start"], tmp_path / "first.log")
    experiment = storage / "exp"
    try:
        finished_before: set[str] = set()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and first.poll() is None:
            finished_before = _finished_trials(experiment, "checkpoint_000001")
            if finished_before:
                time.sleep(2.0)  # let the driver record them in its experiment state
                finished_before = _finished_trials(experiment, "checkpoint_000001")
                break
            time.sleep(0.5)
        log = (tmp_path / "first.log").read_text()
        assert first.poll() is None, "the search ended before it could be killed:\n" + log[-3000:]
        assert finished_before, "no trial finished in time:\n" + log[-3000:]
        os.kill(first.pid, signal.SIGKILL)  # the driver only, as a crash would
        first.wait(timeout=30)
        time.sleep(5.0)  # what dies with the driver (raylet, GCS) has died by now
        left_behind = _group_processes(first.pid)
        assert not (experiment / "best").exists()

        text = _run([*common, "--resume"], tmp_path / "resume.log")
        # Issue 11: the killed search's Ray processes (its orphaned DashboardAgent and RuntimeEnvAgent)
        # do not outlive the resumed search.
        survivors = {pid: t for pid, t in _group_processes(first.pid).items() if left_behind.get(pid) == t}
        assert not survivors, f"processes of the killed search still alive: {survivors}\n{text[-2000:]}"
    finally:
        _kill_group(first)

    assert "restored searcher state: OptunaSearch with TPESampler" in text
    assert "4 trials, searcher tpe, max 2 epochs" in text  # the experiment's own settings, not the CLI defaults
    rows = json.loads((experiment / "best" / "leaderboard.json").read_text())
    assert len(rows) == 4 and len({r["trial_id"] for r in rows}) == 4
    assert all(r["status"] != ERROR and r["epochs"] == 2 for r in rows)
    assert finished_before <= {r["trial_id"] for r in rows}
    assert _study_states(experiment) == {"COMPLETE": 4}

    text = _run([*common, "--resume", "--trials", "5"], tmp_path / "extend.log")
    assert "restored searcher state: OptunaSearch with TPESampler" in text
    extended = json.loads((experiment / "best" / "leaderboard.json").read_text())
    assert len(extended) == 5
    assert {r["trial_id"] for r in rows} < {r["trial_id"] for r in extended}
    assert _study_states(experiment) == {"COMPLETE": 5}


def _study_states(experiment: Path) -> dict[str, int]:
    """Trial states in the copy of the search's Optuna study. The study is restored from the same snapshot
    as Tune's trials, so an ask or a result after that snapshot leaves no stale RUNNING or COMPLETE trial."""
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{experiment / STUDY_FILE}")
    return dict(Counter(t.state.name for t in study.trials))

