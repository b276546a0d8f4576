"""A trial whose loss becomes NaN runs once (no retry), ends as ERROR with its reason and leaves no
checkpoint, while the other trials finish and the search exports one of them; the fault comes from a
test-only hook (search.fault_hook), not from the search's config."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import optuna
import pytest

from search.config import SearchConfig
from search.export import ERROR, TERMINATED
from search.fault_hook import FAULT_HOOK_ENV
from search.space import SearchSpace
from search.tuner import STUDY_FILE, run_search
from vae.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
HOOK = f"{Path(__file__).with_name('faults.py')}:nan_weights_after_epoch_1_at_width_64"


@pytest.fixture(scope="module")
def ray_with_fault_hook():
    """A 2-CPU local Ray whose workers see the fault hook (Ray's runtime_env env_vars); run_search reuses it."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {FAULT_HOOK_ENV: HOOK}})
    yield ray
    ray.shutdown()


def test_a_diverged_trial_fails_once_with_its_reason_while_the_others_finish(ray_with_fault_hook, data_dir, tmp_path):
    grid = ({"latent_width": 32, "reparam_width": 4, "lr": 3e-4}, {"latent_width": 64, "reparam_width": 8, "lr": 3e-4},
            {"latent_width": 128, "reparam_width": 16, "lr": 3e-4})
    config = SearchConfig(
        searcher="grid", grid=grid, max_epochs=2, grace_period=1, max_concurrent=2, max_failures=2,
        data_dir=data_dir, storage=str(tmp_path), name="nan", wandb_mode="disabled", verbose=0,
        space=SearchSpace(batch_size=(128,)), early_stopping=False,
    )
    outcome = run_search(config, log=lambda _: None)
    rows = {r["latent_width"]: r for r in outcome.leaderboard}
    assert set(rows) == {32, 64, 128}
    diverged = rows[64]
    assert diverged["status"] == ERROR and diverged["rank"] == 3, diverged
    assert diverged["epochs"] == 2 and diverged["checkpoint"] is None, diverged
    assert diverged["error"].startswith("TrialDiverged: loss became non-finite at epoch 2"), diverged
    assert "\n" not in diverged["error"]
    assert diverged["last_val_neg_elbo"] is None and diverged["best_val_neg_elbo"] is not None  # epoch 1's
    for width in (32, 128):
        assert rows[width]["status"] == TERMINATED and rows[width]["epochs"] == 2, rows[width]
    assert load_checkpoint(outcome.best_dir).config.latent_width in (32, 128)
    # Tune retries (FailureConfig, max_failures=2) only a trial that failed: each failure is a
    # "Failure # n" entry in its error.txt. The diverged trial never failed, so it started once.
    trial_dir = tmp_path / "nan" / f"trial_{diverged['trial_id']}"
    assert trial_dir.is_dir()
    error_file = trial_dir / "error.txt"
    assert (error_file.read_text().count("Failure #") if error_file.exists() else 0) == 0
    study = optuna.load_study(study_name="nan", storage=f"sqlite:///{tmp_path / 'nan' / STUDY_FILE}")
    assert Counter(t.state.name for t in study.trials) == {"COMPLETE": 2, "FAIL": 1}
