"""A trial whose loss becomes NaN runs once (no retry), ends as ERROR with its reason and leaves no
checkpoint, while the other trials finish and the search exports one of them; the fault comes from a function
the test hands to run_search (``after_round``), not from the search's config or an environment variable."""

from __future__ import annotations

from collections import Counter

import faults
import optuna
import pytest
from ray import cloudpickle

from search.config import SearchConfig
from search.live import ERROR, FINISHED
from search.space import SearchSpace
from search.tuner import STUDY_FILE, run_search
from vae.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
cloudpickle.register_pickle_by_value(faults)  # Ray's workers need not import the test's module


def test_a_diverged_trial_fails_once_with_its_reason_while_the_others_finish(local_ray, data_dir, tmp_path):
    grid = ({"latent_width": 32, "reparam_width": 4, "lr": 3e-4}, {"latent_width": 64, "reparam_width": 8, "lr": 3e-4},
            {"latent_width": 128, "reparam_width": 16, "lr": 3e-4})
    config = SearchConfig(
        searcher="grid", grid=grid, max_rounds=2, grace_period=1, max_concurrent=2, max_failures=2,
        data_dir=data_dir, storage=str(tmp_path), name="nan", wandb_mode="disabled", verbose=0,
        space=SearchSpace(batch_size=(128,)), early_stopping=False,
    )
    outcome = run_search(config, log=lambda _: None, after_round=faults.nan_weights_after_round_1_at_width_64)
    rows = {r["latent_width"]: r for r in outcome.leaderboard}
    assert set(rows) == {32, 64, 128}
    diverged = rows[64]
    assert diverged["status"] == ERROR and diverged["rank"] == 3, diverged
    assert diverged["rounds"] == 2 and diverged["checkpoint"] is None, diverged
    assert diverged["error"].startswith("TrialDiverged: loss became non-finite at round 2"), diverged
    assert "\n" not in diverged["error"]
    assert diverged["last_val_neg_elbo"] is None and diverged["best_val_neg_elbo"] is not None  # round 1's
    for width in (32, 128):
        assert rows[width]["status"] == FINISHED and rows[width]["rounds"] == 2, rows[width]
    assert load_checkpoint(outcome.best_dir).config.latent_width in (32, 128)
    # Tune retries (FailureConfig, max_failures=2) only a trial that failed: each failure is a
    # "Failure # n" entry in its error.txt. The diverged trial never failed, so it started once.
    trial_dir = tmp_path / "nan" / f"trial_{diverged['trial_id']}"
    assert trial_dir.is_dir()
    error_file = trial_dir / "error.txt"
    assert (error_file.read_text().count("Failure #") if error_file.exists() else 0) == 0
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{tmp_path / 'nan' / STUDY_FILE}")
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 2, "FAIL": 1}
