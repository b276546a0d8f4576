"""Build the Ray Tune experiment (Optuna TPE under a concurrency limiter, ASHA early stopping, the
function trainable), run it or restore it, and export the results.

Trial budget across restores: Tune keeps the number of trials to create in its search-algorithm
state (``SearchGenerator``: ``counter`` / ``total_samples``) and restores it from the experiment, so
a restored run creates exactly the trials still missing. To let ``--resume --trials N`` extend an
experiment, the driver writes the requested total into ``BUDGET_FILE`` at the experiment root
(Tune copies every ``.json`` there into its staging folder on restore) and ``TrialBudget`` raises
``total_samples`` to it after Tune's own restore.

The Optuna study (TPE sampler and all trials) lives in memory and is part of the searcher state Tune
snapshots, so after a crash the study and Tune's trial table are restored from the same moment. (A study
kept in SQLite runs ahead of that snapshot: a trial that finished after it is COMPLETE there but is
resumed by Tune, and Optuna refuses its new results.) For inspection, every snapshot also writes a
copy of the study to ``STUDY_FILE`` (SQLite) next to Tune's experiment state.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from search import storage
from search.config import SearchConfig
from search.export import ExportSummary, export_results
from search.library_internals import base_searcher, optuna_study, resolve_ray_address
from search.tracking import WandbSettings
from search.trainable import BEST_METRIC, METRIC, MODE, TrialSettings, train_vae
from vae.data import DataError, load_splits

BUDGET_FILE = "vaesearch_search.json"
STUDY_FILE = "optuna_study.db"
WANDB_SUBDIR = "wandb"


class SearchError(RuntimeError):
    """A problem the user can fix (bad address, missing experiment or data); one line."""


class SearchInterrupted(RuntimeError):
    """The search was stopped (Ctrl+C) before every trial finished; Tune saved its state for --resume."""


@dataclass
class SearchOutcome:
    name: str
    experiment_path: str  # Tune's experiment folder or URI (restorable with --resume)
    restored: bool
    num_samples: int  # trials in the experiment in total
    results: tune.ResultGrid
    export: ExportSummary

    @property
    def best_dir(self) -> Path:
        return self.export.best_dir

    @property
    def leaderboard(self) -> list[dict[str, Any]]:
        return self.export.leaderboard


class TrialBudget(SearchGenerator):
    """Tune's SearchGenerator, whose trial total can be raised on restore from ``BUDGET_FILE``.

    The total lives in the generator's public ``get_state()`` / ``set_state()`` dict
    (``total_samples``, ``finished``, ``counter``), which is what Tune itself saves and restores."""

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        budget = Path(dirpath) / BUDGET_FILE
        state = self.get_state()
        if budget.is_file():
            wanted = int(json.loads(budget.read_text())["num_samples"])
            if wanted > state["total_samples"]:
                state.update(total_samples=wanted, finished=False)
                self.set_state(state)
        study = optuna_study(self)
        sampler = type(study.sampler).__name__ if study is not None else "none"
        known = len(study.trials) if study is not None else 0
        print(f"restored searcher state: {type(base_searcher(self)).__name__} with {sampler}, {known} trials in "
              f"its study; {state['counter']} of {self.total_samples} trials created so far", flush=True)

    def save_to_dir(self, dirpath: str, session_str: str) -> None:
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


# --- Ray ---------------------------------------------------------------------------------------


def check_address(address: str, timeout_s: float = 3.0) -> None:
    """Fail fast (SearchError) when a Ray cluster address cannot be reached: ray.init would retry for minutes."""
    target = address[len("ray://"):] if address.startswith("ray://") else address
    try:
        resolved = resolve_ray_address(target) if target == "auto" else target
    except Exception as exc:
        raise SearchError(f"cannot resolve Ray address {address!r} ({exc})") from exc
    if not resolved:
        raise SearchError(f"no running Ray cluster found for --address {address!r} (start one with 'ray start --head')")
    host, _, port = resolved.rpartition(":")
    if not host or not port.isdigit():
        raise SearchError(f"--address {address!r} is not 'auto' or host:port")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SearchError(f"cannot reach the Ray cluster at {resolved} ({exc.strerror or exc})") from exc


def start_ray(config: SearchConfig) -> bool:
    """Connect to ``config.address`` or start a local Ray; returns whether this call started it.

    A Ray already initialised in this process (a benchmark running several searches) is reused.
    """
    if ray.is_initialized():
        return False
    if config.address:
        check_address(config.address)
        ray.init(address=config.address, log_to_driver=True)
    else:
        ray.init(address="local", num_cpus=config.num_cpus or os.cpu_count(), include_dashboard=False)
    return True


# --- building the experiment -------------------------------------------------------------------


def default_name(config: SearchConfig) -> str:
    return f"vae-{config.dataset}-{datetime.now():%Y%m%d-%H%M%S}"


def latest_restorable(config: SearchConfig) -> str | None:
    """The most recently started experiment under a local storage folder that Tune can restore."""
    root = Path(config.storage)
    if config.storage_is_uri or not root.is_dir():
        return None
    candidates = [p for p in root.iterdir() if p.is_dir() and tune.Tuner.can_restore(str(p))]
    return max(candidates, key=lambda p: (p / "tuner.pkl").stat().st_mtime).name if candidates else None


def build_searcher(config: SearchConfig, name: str) -> Searcher:
    """OptunaSearch over ``config.space`` (define-by-run), seeded, under a ConcurrencyLimiter."""
    if config.searcher == "tpe":
        # Optuna's default of 10 random startup trials is half of a 20-trial search; with 5 the TPE model
        # guides most of it (benchmarks/search_efficiency.py: about 7 nats better within the same budget).
        startup = max(5, min(10, config.num_samples // 4))
        sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=startup)
    else:
        sampler = optuna.samplers.RandomSampler(seed=config.seed)
    if config.searcher == "grid":
        points = [config.space.seed_point(dict(p)) for p in config.grid]  # the space's batch size too
    else:
        points = config.warm_start_points
    searcher = OptunaSearch(space=config.space.suggest, metric=METRIC, mode=MODE, points_to_evaluate=points,
                            sampler=sampler, study_name=name)
    return ConcurrencyLimiter(searcher, max_concurrent=config.max_concurrent)


def build_scheduler(config: SearchConfig) -> TrialScheduler:
    if not config.early_stopping:
        return FIFOScheduler()
    return ASHAScheduler(time_attr="training_iteration", metric=METRIC, mode=MODE, max_t=config.max_epochs,
                         grace_period=config.grace_period, reduction_factor=config.reduction_factor)


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def trainable_with_resources(config: SearchConfig) -> Any:
    return tune.with_resources(train_vae, {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial})


def build_tuner(config: SearchConfig, name: str) -> tune.Tuner:
    settings = TrialSettings(
        max_epochs=config.max_epochs, dataset=config.dataset, data_dir=config.data_dir, seed=config.seed,
        threads=config.cpus_per_trial,
        wandb=WandbSettings(project=config.wandb_project, mode=config.wandb_mode, group=name,
                            dir=str(config.local_experiment_dir(name) / WANDB_SUBDIR)).to_dict(),
        inject_nan=vars(config.inject_nan) if config.inject_nan else None,
        checkpoint_every=config.checkpoint_every or config.grace_period,
    )
    return tune.Tuner(
        trainable_with_resources(config),
        param_space={"run": settings.to_dict()},
        tune_config=tune.TuneConfig(
            search_alg=TrialBudget(build_searcher(config, name)),
            scheduler=build_scheduler(config),
            num_samples=config.num_samples,
            trial_dirname_creator=trial_dirname,
            time_budget_s=config.time_budget_s,
            reuse_actors=config.reuse_actors,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=config.storage,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=config.keep_checkpoints,
                                                    checkpoint_score_attribute=BEST_METRIC,
                                                    checkpoint_score_order=MODE),
            failure_config=tune.FailureConfig(max_failures=config.max_failures),
            verbose=config.verbose,
        ),
    )


# --- running -----------------------------------------------------------------------------------


def _prepare(config: SearchConfig) -> tuple[SearchConfig, str, int]:
    """(effective config, experiment name, total trials), checked against what is in the storage.

    On resume the effective config is the one the experiment was started with (its data set, epochs,
    space...), with this run's connection settings (address, CPUs, verbosity) and trial total.
    """
    name = config.name
    if config.resume:
        name = name or latest_restorable(config)
        if name is None:
            raise SearchError(f"--resume: no experiment to resume under {config.storage} (pass --name)")
        path = config.experiment_path(name)
        if not tune.Tuner.can_restore(path):
            raise SearchError(f"--resume: no restorable experiment at {path}")
        stored = json.loads(storage.read_text(f"{path}/{BUDGET_FILE}") or "{}")
        previous = stored.get("num_samples")
        total = config.trials if config.trials is not None else previous or config.num_samples
        if previous is not None and total < previous:
            raise SearchError(f"--trials {total} is less than the {previous} trials the experiment already has")
        original = SearchConfig.from_dict(stored["config"]) if "config" in stored else config
        effective = original.replace(
            resume=True, name=name, storage=config.storage, trials=total, address=config.address,
            num_cpus=config.num_cpus, verbose=config.verbose)
        return effective, name, total
    name = name or default_name(config)
    path = config.experiment_path(name)
    if tune.Tuner.can_restore(path):
        raise SearchError(f"experiment {path} exists: add --resume to continue it, or choose another --name")
    return config.replace(name=name), name, config.num_samples


def run_search(config: SearchConfig, *, log: Callable[[str], None] = print) -> SearchOutcome:
    """Run (or with ``config.resume`` restore and continue) a search, then export its results.

    Raises SearchError for problems the user can fix; they are detected before any trial starts.
    """
    config, name, total = _prepare(config)
    restore = config.resume
    path = config.experiment_path(name)
    try:
        data = load_splits(config.dataset, config.data_dir, seed=config.seed, log_fn=log)
    except DataError as exc:
        raise SearchError(str(exc)) from exc
    started = start_ray(config)
    try:
        _announce(config, name, restore, total, log)
        storage.write_text(f"{path}/{BUDGET_FILE}", json.dumps(
            {"num_samples": total, "config": config.to_dict()}, indent=2))
        if restore:
            tuner = tune.Tuner.restore(path, trainable=trainable_with_resources(config),
                                       resume_unfinished=True, resume_errored=False)
        else:
            tuner = build_tuner(config, name)
        fit_started = time.monotonic()
        results = tuner.fit()
        fit_s = time.monotonic() - fit_started
        finished = results.num_terminated + results.num_errors
        budget_hit = config.time_budget_s is not None and fit_s >= config.time_budget_s
        if budget_hit:
            started = sum(1 for r in results if r.metrics)
            log(f"time budget of {config.time_budget_s:g} s reached after {fit_s:.0f} s: {started} of {total} trials "
                f"ran ({total - started} never started or never reported; trials still running were stopped); "
                "exporting what the search found")
        elif finished < total:
            raise SearchInterrupted(f"search stopped with {finished} of {total} trials finished; continue it "
                                    f"with: python -m search.run --resume --name {name} --storage {config.storage}")
        summary = export_results(results, config, name, data, log=log)
    finally:
        if started:
            ray.shutdown()
    return SearchOutcome(name, path, restore, total, results, summary)


def _announce(config: SearchConfig, name: str, restore: bool, total: int, log: Callable[[str], None]) -> None:
    resources = ray.cluster_resources()
    verb = "resuming" if restore else "starting"
    log(f"{verb} experiment {name} at {config.experiment_path(name)}: {total} trials, searcher {config.searcher}"
        f"{' + ASHA' if config.early_stopping else ''}, max {config.max_epochs} epochs, "
        f"{config.max_concurrent} concurrent, {config.cpus_per_trial} CPU + {config.gpus_per_trial:g} GPU per trial, "
        f"time budget {f'{config.time_budget_s:g} s' if config.time_budget_s else 'none'}; "
        f"Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; W&B {config.wandb_mode}")
    log(config.space.describe())
    if config.searcher != "grid":
        points = config.warm_start_points
        log("warm start: " + ("; ".join(", ".join(f"{k} {v if isinstance(v, str) else format(v, 'g')}"
                                                    for k, v in p.items()) for p in points) or "none"))
    sys.stdout.flush()
