"""A search with a time budget stops at it and still exports best/ (with the test IWAE and the importances)."""

from __future__ import annotations

import json

import pytest

from search.config import SearchConfig
from search.export import SUMMARY_JSON
from search.layout import IMPORTANCE_JSON
from search.space import SearchSpace
from search.tuner import run_search
from vae.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow


def test_a_search_stopped_by_its_time_budget_exports_what_it_found(local_ray, data_dir, tmp_path):
    # Far more work than the budget allows: 40 trials of up to 200 epochs, no early stopping.
    config = SearchConfig(
        trials=40, max_epochs=200, grace_period=2, max_concurrent=2, time_budget_s=25, early_stopping=False,
        data_dir=data_dir, storage=str(tmp_path), name="budget", wandb_mode="disabled", verbose=0, iwae_k=20,
        space=SearchSpace(latent_width=(16, 32), reparam_width=(2, 4), depth=(1, 2), kl_warmup_epochs=(0, 2),
                          batch_size=(256,)),
    )
    lines: list[str] = []
    outcome = run_search(config, log=lines.append)  # no SearchInterrupted: the budget is a normal end
    rows = outcome.leaderboard
    assert 1 <= len(rows) < 40
    assert all(r["epochs"] < 200 for r in rows)  # every trial that ran was stopped by the budget
    assert any("time budget of 25 s reached" in line and "trials ran" in line for line in lines)

    summary = json.loads((outcome.best_dir / SUMMARY_JSON).read_text())
    assert summary["iwae_k"] == 20
    assert summary["best_val_neg_elbo"] == rows[0]["best_val_neg_elbo"]
    # IWAE is a tighter bound than the single-sample neg-ELBO of the same model on the same images.
    assert summary["test_iwae"] < summary["test_neg_elbo"]
    best = load_checkpoint(outcome.best_dir)
    assert best.config.depth == rows[0]["depth"]
    # The exported checkpoint is the trial's best epoch by validation.
    assert best.meta["metrics"]["val_neg_elbo"] == pytest.approx(rows[0]["best_val_neg_elbo"])
    assert "importances" in json.loads((outcome.best_dir / IMPORTANCE_JSON).read_text())
    assert any(line.startswith("importance (optuna.importance") for line in lines)
