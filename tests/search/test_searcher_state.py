"""The searcher state Tune snapshots: the Optuna study restores from the same moment as Tune's trials."""

from __future__ import annotations

from pathlib import Path

import optuna

from search.config import SearchConfig
from search.searcher import STUDY_FILE, TrialBudget, build_searcher
from search.trial_config import METRIC


def _search_alg(tmp_path: Path) -> TrialBudget:
    config = SearchConfig(storage=str(tmp_path), trials=4, warm_start=False)
    return TrialBudget(build_searcher(config, "exp"))


def _suggest(search_alg: TrialBudget, trial_id: str) -> dict:
    config = search_alg.searcher.suggest(trial_id)
    assert config is not None
    return config


def test_a_trial_finished_after_the_snapshot_is_resumable_after_restore(tmp_path):
    """The crash of the first CI run: the trial completed after Tune's last snapshot, so Tune resumes it,
    and its next result must reach the restored study instead of a trial Optuna already closed."""
    live = _search_alg(tmp_path)
    _suggest(live, "a")
    live.on_trial_result("a", {METRIC: 150.0, "training_iteration": 1})
    snapshot = tmp_path / "snapshot"
    snapshot.mkdir()
    live.save_to_dir(str(snapshot), session_str="s")
    live.on_trial_complete("a", {METRIC: 140.0, "training_iteration": 2})  # then the driver dies

    restored = _search_alg(tmp_path)
    restored.restore_from_dir(str(snapshot))
    restored.on_trial_result("a", {METRIC: 141.0, "training_iteration": 2})  # the resumed trial reports again
    restored.on_trial_complete("a", {METRIC: 139.0, "training_iteration": 2})

    study: optuna.Study = restored.searcher.searcher._ot_study
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
    assert study.trials[0].value == 139.0
    assert study.trials[0].intermediate_values == {1: 150.0, 2: 141.0}


def test_every_snapshot_writes_an_inspectable_copy_of_the_study(tmp_path):
    search_alg = _search_alg(tmp_path)
    for trial_id in ("a", "b"):
        _suggest(search_alg, trial_id)
    search_alg.on_trial_complete("a", {METRIC: 120.0, "training_iteration": 3})
    search_alg.save_to_dir(str(tmp_path), session_str="s")
    search_alg.on_trial_complete("b", {METRIC: 110.0, "training_iteration": 3})
    search_alg.save_to_dir(str(tmp_path), session_str="s")  # replaces the first copy

    copy = optuna.load_study(study_name="exp", storage=f"sqlite:///{tmp_path / STUDY_FILE}")
    assert sorted(t.value for t in copy.trials) == [110.0, 120.0]
    assert copy.best_trial.params == search_alg.searcher.searcher._ot_study.best_trial.params
    assert not list(tmp_path.glob("*.partial"))
