"""SIGKILL the search driver once its experiment state records a finished trial, resume it with --resume, and
extend it. Every wait is on explicit state: Tune's experiment_state-*.json (what --resume restores) and the
killed Ray's processes in /proc; no fixed sleeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import optuna
import pytest

from search.live import FINISHED
from search.searcher import STUDY_FILE

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
ROUNDS = 2
TUNE_TERMINATED = "TERMINATED"  # Tune's own status of a trial that ended, in its experiment state
T = TypeVar("T")


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "search.run", *args], cwd=REPO, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver's local Ray (GCS, raylet, agents) shares its group
    except ProcessLookupError:
        pass


def _processes() -> dict[int, tuple[int, int, str, bytes]]:
    """{pid: (parent pid, process group, start time, command line)} of the live processes (from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if fields[0] != "Z":  # fields: state, ppid, pgrp, ...; 19: start time
            found[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[19], cmdline)
    return found


def _group_processes(pgid: int) -> dict[int, str]:
    """{pid: start time} of the live processes in process group ``pgid``."""
    return {pid: start for pid, (_, group, start, _) in _processes().items() if group == pgid}


def _still_alive(recorded: dict[int, str]) -> dict[int, str]:
    """Those of ``recorded`` ({pid: start time}) that still run: same PID, same start time."""
    table = _processes()
    return {pid: start for pid, start in recorded.items() if pid in table and table[pid][2] == start}


def _ray_writers(pgid: int) -> dict[int, str]:
    """{pid: start time} of what could still write into the experiment once the driver in group ``pgid`` is
    dead: its GCS, its raylet and the raylet's trial workers (which Ray starts in process groups of their own)."""
    table = _processes()
    core = {pid for pid, (_, group, _, cmd) in table.items()
            if group == pgid and (b"/raylet/raylet" in cmd or b"/gcs/gcs_server" in cmd)}
    workers = {pid for pid, (parent, group, _, _) in table.items() if parent in core and group != pgid}
    return {pid: table[pid][2] for pid in core | workers}


def _wait_for(what: str, probe: Callable[[], T], timeout: float, log: Path, step: float = 0.2) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}:\n{log.read_text()[-3000:]}")
        time.sleep(step)
    return found


def _recorded_statuses(experiment: Path) -> dict[str, str]:
    """Trial statuses in the driver's newest experiment_state-*.json (JSON strings inside JSON); {} while
    there is none or it is being written."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    try:
        state = json.loads(states[-1].read_text()) if states else {}
        trials = [json.loads(entry[0]) for entry in state.get("trial_data", [])]
    except (OSError, json.JSONDecodeError):
        return {}
    return {str(t["trial_id"]): str(t["status"]) for t in trials}


def _reported_rounds(experiment: Path) -> dict[str, list[int]]:
    """trial_id -> the rounds of every result Tune recorded for it (result.json)."""
    reported = {}
    for results in experiment.glob("trial_*/result.json"):
        lines = [json.loads(line) for line in results.read_text().splitlines() if line.endswith("}")]
        reported[results.parent.name.removeprefix("trial_")] = [int(r.get("round", 0)) for r in lines]
    return reported


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
    first_log = tmp_path / "first.log"
    first = _start([*common, "--trials", "4", "--max-rounds", str(ROUNDS), "--grace-period", "1",
                    "--max-concurrent", "2",
                    # wide enough that, with Tune reusing actors, the other trials are still running when the
                    # first one finishes and the driver is killed
                    "--latent-width", "256", "512", "--reparam-width", "2", "16", "--lr", "1e-4", "1e-3",
                    "--batch-sizes", "128", "--no-early-stopping", "--no-warm-start"], first_log)
    experiment = storage / "exp"
    try:
        def finished_while_running() -> dict[str, str]:
            assert first.poll() is None, "the search ended before it could be killed:\n" + first_log.read_text()[-3000:]
            statuses = _recorded_statuses(experiment)
            return statuses if TUNE_TERMINATED in statuses.values() else {}

        at_kill = _wait_for("the experiment state to record a finished trial", finished_while_running, 300, first_log)
        writers = _ray_writers(first.pid)
        assert writers, "no raylet or GCS found in the search's process group"
        os.kill(first.pid, signal.SIGKILL)  # the driver only, as a crash would
        first.wait(timeout=30)
        _wait_for("the killed search's raylet, GCS and trial workers to exit",
                  lambda: not _still_alive(writers), 60, first_log)
        left_behind = _group_processes(first.pid)
        assert not (experiment / "best").exists()

        text = _run([*common, "--resume"], tmp_path / "resume.log")
        # Issue 11: the killed search's Ray processes (its orphaned DashboardAgent and RuntimeEnvAgent)
        # do not outlive the resumed search.
        survivors = _still_alive(left_behind)
        assert not survivors, f"processes of the killed search still alive: {survivors}\n{text[-2000:]}"
    finally:
        _kill_group(first)

    assert "restored searcher state: OptunaSearch with TPESampler" in text
    assert f"4 trials, searcher tpe, at most {ROUNDS} rounds" in text  # the experiment's own settings, not the defaults
    rows = json.loads((experiment / "best" / "leaderboard.json").read_text())
    assert len(rows) == 4 and len({r["trial_id"] for r in rows}) == 4, rows
    unfinished = [r for r in rows if r["status"] != FINISHED or r["rounds"] != ROUNDS]
    reported = _reported_rounds(experiment)
    assert not unfinished, (
        f"after the resume, trials that did not finish their {ROUNDS} rounds (status when killed: {at_kill}):\n"
        + "\n".join(f"  {r['trial_id']}: status {r['status']}, rounds {r['rounds']}, error {r['error']!r}, "
                    f"checkpoint {r['checkpoint']}, reported rounds {reported.get(r['trial_id'])}, "
                    f"status when killed {at_kill.get(r['trial_id'])}" for r in unfinished)
        + f"\nresume log:\n{text[-3000:]}")
    finished_before = {t for t, status in at_kill.items() if status == TUNE_TERMINATED}
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
