"""The searcher: Optuna's sampler under Tune's OptunaSearch and ConcurrencyLimiter, and ``TrialBudget``, Tune's
trial generator with a trial total that a resumed search can raise and a deadline after which it starts no
trial.

The sampler is Optuna's TPE, multivariate (it models the hyperparameters jointly, so that a good learning rate
is learned together with the batch size and the model it suits) with ``group`` (the space is conditional: a
parameter that a narrowed space fixes is not sampled) and ``constant_liar`` (trials still running count as
bad for now, so that concurrent trials are not all proposed at the same spot).

Trial budget across restores: Tune keeps the number of trials to create in its search-algorithm state
(``SearchGenerator``: ``counter`` / ``total_samples``) and restores it from the experiment, so a restored run
creates exactly the trials still missing. To let ``--resume --trials N`` extend an experiment, the driver
writes the requested total (and this run's deadline) into ``BUDGET_FILE`` at the experiment root (Tune copies
every ``.json`` there into its staging folder on restore) and ``TrialBudget`` takes them after Tune's own
restore.

The Optuna study (sampler and all trials) lives in memory and is part of the searcher state Tune snapshots, so
after a crash the study and Tune's trial table are restored from the same moment. (A study kept in SQLite runs
ahead of that snapshot: a trial that finished after it is COMPLETE there but is resumed by Tune, and Optuna
refuses its new results.) For inspection, every snapshot also writes a copy of the study to ``STUDY_FILE``
(SQLite) next to Tune's experiment state.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from search.config import SearchConfig
from search.console import say
from search.layout import BUDGET_FILE
from search.library_internals import base_searcher, optuna_study
from search.trial_config import METRIC, MODE

STUDY_FILE = "optuna_study.db"


class TrialBudget(SearchGenerator):
    """Tune's SearchGenerator, whose trial total can be raised on restore from ``BUDGET_FILE``, and which
    creates no trial once ``deadline`` (``time.time()``) is near (``last_start_s`` before it).

    The total lives in the generator's public ``get_state()`` / ``set_state()`` dict (``total_samples``,
    ``finished``, ``counter``), which is what Tune itself saves and restores."""

    def __init__(self, searcher: Searcher, *, deadline: float | None = None, last_start_s: float = 0.0,
                 log: Callable[[str], None] = say) -> None:
        super().__init__(searcher)
        self.deadline, self.last_start_s = deadline, last_start_s
        self._log = log

    def next_trial(self) -> Any:
        if self.deadline is not None and time.time() >= self.deadline - self.last_start_s:
            self.set_finished()  # the experiment then ends with its running trials (a resume reopens it)
            return None
        return super().next_trial()

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        budget = Path(dirpath) / BUDGET_FILE
        state = self.get_state()
        if budget.is_file():
            stored = json.loads(budget.read_text())
            wanted = int(stored["num_samples"])
            if wanted > state["total_samples"]:
                state.update(total_samples=wanted)
            state.update(finished=state["counter"] >= state["total_samples"])
            self.set_state(state)
            self.deadline, self.last_start_s = stored.get("deadline"), float(stored.get("last_start_s", 0.0))
        study = optuna_study(self)
        sampler = type(study.sampler).__name__ if study is not None else "none"
        known = len(study.trials) if study is not None else 0
        self._log(f"restored searcher state: {type(base_searcher(self)).__name__} with {sampler}, {known} trials in "
                  f"its study; {state['counter']} of {self.total_samples} trials created so far")

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """A diverged trial (search.trainable) ends without an error for Tune, so that it is not retried;
        the searcher is told it failed (Optuna would refuse its NaN value and keep the trial RUNNING). A trial
        that ended before its first report is failed too."""
        if result is None or result.get("diverged") or METRIC not in result:
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)

    # SearchGenerator narrows SearchAlgorithm's save_to_dir(dirpath, **kwargs) to this signature itself
    def save_to_dir(self, dirpath: str, session_str: str) -> None:  # type: ignore[override]
        super().save_to_dir(dirpath, session_str)
        study = optuna_study(self)
        if study is not None:
            write_study_copy(study, Path(dirpath) / STUDY_FILE)


def write_study_copy(study: optuna.Study, path: Path) -> None:
    """Write ``study`` (all trials, attributes) to a fresh SQLite file at ``path``, atomically.

    What ``optuna.copy_study`` does, from a Study object: that function wants the source storage, which a
    Study does not expose publicly."""
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line at every snapshot
    try:
        copy = optuna.create_study(study_name=study.study_name, storage=f"sqlite:///{partial}",
                                   directions=study.directions)
    finally:
        optuna.logging.set_verbosity(verbosity)
    for key, value in study.user_attrs.items():
        copy.set_user_attr(key, value)
    copy.add_trials(study.get_trials(deepcopy=False))
    os.replace(partial, path)


def build_sampler(config: SearchConfig) -> optuna.samplers.BaseSampler:
    """Optuna's multivariate TPE (see the module docstring) for ``tpe``, its random sampler otherwise.

    TPE models after ``max(5, min(10, trials // 4))`` trials (the known points among them): Optuna's default of
    10 random start-up trials is half of a 20-trial search."""
    if config.searcher != "tpe":
        return optuna.samplers.RandomSampler(seed=config.seed)
    startup = max(5, min(10, config.num_samples // 4))
    with warnings.catch_warnings():  # multivariate, group and constant_liar are "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=startup, multivariate=True, group=True,
                                          constant_liar=True)


def build_searcher(config: SearchConfig, name: str) -> Searcher:
    """OptunaSearch over ``config.space`` (define-by-run), seeded, under a ConcurrencyLimiter."""
    if config.searcher == "grid":
        points = [config.space.seed_point(dict(p)) for p in config.grid]  # the space's batch size too
    else:
        points = config.warm_start_points
    searcher = OptunaSearch(space=config.space.suggest, metric=METRIC, mode=MODE, points_to_evaluate=points,
                            sampler=build_sampler(config), study_name=name)
    return ConcurrencyLimiter(searcher, max_concurrent=config.max_concurrent)
