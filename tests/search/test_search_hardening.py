"""Issue 11, real searches: an infeasible resource request exits 2 at once, a diverged trial runs once
(no retry) and ends as ERROR with its reason, and the default console of a smoke search is short."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import optuna
import pytest

from search.config import NanInjection, SearchConfig
from search.export import ERROR, TERMINATED
from search.space import SearchSpace
from search.tuner import STUDY_FILE, run_search

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _cli(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.run", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.mark.parametrize("flags, missing", [
    (["--cpus-per-trial", "64"], "missing 62 CPUs"),
    (["--gpus-per-trial", "1"], "missing 1 GPUs"),
])
def test_an_infeasible_resource_request_exits_2_at_once(flags, missing, data_dir, tmp_path):
    """Ray would leave these trials PENDING forever; the timeout is the test's bound, far above the few
    seconds a local Ray takes to start and answer."""
    run = _cli([*flags, "--num-cpus", "2", "--trials", "2", "--storage", str(tmp_path), "--data-dir", data_dir,
                "--wandb-mode", "disabled"], timeout=180)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and missing in errors[0] and "Traceback" not in run.stderr
    assert not any(p.name.startswith("vae-") and any(p.glob("trial_*")) for p in tmp_path.iterdir())


def test_a_diverged_trial_runs_once_and_fails_with_its_reason(local_ray, data_dir, tmp_path):
    grid = ({"latent_width": 32, "reparam_width": 4, "lr": 3e-4}, {"latent_width": 64, "reparam_width": 8, "lr": 3e-4})
    config = SearchConfig(
        searcher="grid", grid=grid, max_epochs=2, grace_period=1, max_concurrent=2, max_failures=2,
        data_dir=data_dir, storage=str(tmp_path), name="nan", wandb_mode="disabled", verbose=0,
        space=SearchSpace(batch_size=(128,)), early_stopping=False, inject_nan=NanInjection(epoch=2, latent_width=64),
    )
    outcome = run_search(config, log=lambda _: None)
    rows = {r["latent_width"]: r for r in outcome.leaderboard}
    diverged = rows[64]
    assert diverged["status"] == ERROR and diverged["epochs"] == 2 and diverged["checkpoint"] is None
    assert diverged["error"].startswith("TrialDiverged: loss became non-finite at epoch 2")
    assert diverged["last_val_neg_elbo"] is None and diverged["best_val_neg_elbo"] is not None  # epoch 1's
    assert rows[32]["status"] == TERMINATED
    # Tune retries (FailureConfig, max_failures=2) only a trial that failed: each failure is a
    # "Failure # n" entry in its error.txt. The diverged trial never failed, so it started once.
    trial_dir = tmp_path / "nan" / f"trial_{diverged['trial_id']}"
    assert trial_dir.is_dir()
    error_file = trial_dir / "error.txt"
    failures = error_file.read_text().count("Failure #") if error_file.exists() else 0
    assert failures == 0
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{tmp_path / 'nan' / STUDY_FILE}")
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 1, "FAIL": 1}


def test_a_smoke_search_prints_a_short_console(data_dir, tmp_path):
    run = _cli(["--smoke-test", "--num-cpus", "2", "--storage", str(tmp_path), "--name", "smoke", "--data-dir",
                data_dir, "--wandb-mode", "disabled"], timeout=600)
    console = run.stdout + run.stderr
    assert run.returncode == 0, console[-3000:]
    lines = console.splitlines()
    assert len(lines) < 150, console
    finished = [line for line in lines if line.startswith("trial ") and (" done after " in line
                                                                          or " stopped early after " in line)]
    assert len(finished) == 4, console
    assert "val neg-ELBO" in console and "best so far" in console  # the status table's columns
    assert "latent_width" in console and "lr" in console  # parameter columns, from the trial config
    for noise in ("Checkpoint successfully created", "reported_at", "may become a bottleneck", "run/wandb",
                  "started with configuration", "Traceback"):
        assert noise not in console, noise
