"""Never lose a search: a search stopped by its time budget exports what its trials reported and says what
stopped it, whatever state its trials were in; one in which no trial reported says so, exits non-zero and can
be resumed; a Ray the caller started outlives the search, one the search started does not."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from search.config import SearchConfig
from search.export import SUMMARY_JSON
from search.layout import IMPORTANCE_JSON, LEADERBOARD_JSON
from search.live import EARLY_STOPPED, FINISHED, TIME_BUDGET, read_live
from search.space import SearchSpace
from search.tuner import NoResults, run_search
from vae.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
SMALL = SearchSpace(latent_width=(16, 32), reparam_width=(2, 4), depth=(1, 2), kl_warmup_rounds=(0, 2),
                    batch_size=(256,))


@pytest.fixture
def caller_ray():
    """A 2-CPU local Ray that the test (the caller of run_search) started, and shuts down."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_a_budget_that_leaves_trials_unstarted_exports_what_it_found(caller_ray, data_dir, tmp_path):
    # Far more work than the budget allows: 40 trials of up to 200 rounds, no early stopping.
    config = SearchConfig(
        trials=40, max_rounds=200, grace_period=2, max_concurrent=2, time_budget_s=20, early_stopping=False,
        data_dir=data_dir, storage=str(tmp_path), name="budget", wandb_mode="disabled", verbose=0, iwae_k=20,
        space=SMALL)
    lines: list[str] = []
    handler = signal.getsignal(signal.SIGINT)
    outcome = run_search(config, log=lines.append)  # the budget is a normal end
    assert signal.getsignal(signal.SIGINT) is handler  # Tune's Ctrl+C handler does not outlive the search
    rows = outcome.leaderboard
    assert 1 <= len(rows) < 40
    assert all(r["rounds"] < 200 and r["status"] == TIME_BUDGET for r in rows), rows
    reason = [line for line in lines if line.startswith("time budget of 20 s reached")]
    assert len(reason) == 1 and "never started" in reason[0], lines
    assert outcome.stop_reason == reason[0]
    # The trials anneal to the deadline: each one's last round ran at a fraction of its first round's rate.
    for trial in (tmp_path / "budget").glob("trial_*/result.json"):
        reports = [json.loads(line) for line in trial.read_text().splitlines()]
        if len(reports) >= 3 and reports[0]["lr"] != reports[-1]["lr"]:
            assert reports[-1]["last_round"] and reports[-1]["lr"] < 0.5 * reports[0]["lr"]

    summary = json.loads((outcome.best_dir / SUMMARY_JSON).read_text())
    assert summary["iwae_k"] == 20 and summary["stop_reason"] == reason[0]
    assert summary["best_val_neg_elbo"] == rows[0]["best_val_neg_elbo"]
    assert summary["test_iwae"] < summary["test_neg_elbo"]  # a tighter bound on the same model
    assert load_checkpoint(outcome.best_dir).config.depth == rows[0]["depth"]
    assert json.loads((outcome.best_dir / IMPORTANCE_JSON).read_text())["trials"] == len(rows)
    live = read_live(tmp_path / "budget")
    assert live is not None and live.ended and live.stop_reason == reason[0]
    assert ray.is_initialized()  # the caller's Ray is the caller's to shut down


@pytest.mark.parametrize("budget_s", ["0.5", "0.001"])  # 0.001: over before Tune creates a single trial
def test_a_budget_that_stops_every_trial_before_its_first_report_exits_non_zero_and_can_be_resumed(
        data_dir, tmp_path, budget_s):
    storage = tmp_path / "results"
    common = ["--storage", str(storage), "--name", "late", "--data-dir", data_dir, "--num-cpus", "2",
              "--wandb-mode", "disabled", "--max-rounds", "2", "--grace-period", "1", "--iwae-k", "10",
              "--latent-width", "16", "32", "--reparam-width", "2", "4", "--batch-sizes", "256"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run([sys.executable, "-m", "search.run", *common, "--trials", "3", "--time-budget", budget_s],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    errors = [line for line in run.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no trial reported a result" in errors[0] and "--resume" in errors[0], run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert not (storage / "late" / "best" / LEADERBOARD_JSON).exists()
    live = read_live(storage / "late")
    assert live is not None and live.ended and not any(t.reports for t in live.trials)

    resumed = subprocess.run([sys.executable, "-m", "search.run", *common, "--resume", "--time-budget", "120"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    rows = json.loads((storage / "late" / "best" / LEADERBOARD_JSON).read_text())
    assert len(rows) == 3 and all(r["status"] in (FINISHED, EARLY_STOPPED) for r in rows), rows  # 3 trials reported
    assert "search done after" in resumed.stdout


def test_a_search_shuts_down_the_ray_it_started(data_dir, tmp_path):
    assert not ray.is_initialized()
    config = SearchConfig(trials=1, max_rounds=1, grace_period=1, num_cpus=1, data_dir=data_dir,
                          storage=str(tmp_path), name="own", wandb_mode="disabled", verbose=0, iwae_k=5,
                          time_budget_s=0.5, space=SMALL)
    with pytest.raises(NoResults):
        run_search(config, log=lambda _: None)
    assert not ray.is_initialized()
