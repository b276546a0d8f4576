"""Build the Ray Tune experiment (Optuna TPE under a concurrency limiter, ASHA early stopping, the function
trainable), run it or restore it, and export the results.

The time budget (``time_budget_s``) is a deadline every trial knows (search.budget): a trial anneals its learning
rate to end by it and stops (vae.train.fit), the searcher starts no trial near it, and a stopper ends whatever is
left a little later. Whatever stopped the search (the budget, every
trial done, or Ctrl+C), what the trials reported is exported; only a search in which no trial reported
anything has nothing to export, and says so.
"""

from __future__ import annotations

import json
import logging
import os
import signal
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

from search import storage
from search.budget import DeadlineStopper, last_start_s, slack_s
from search.config import SearchConfig
from search.console import Console, say
from search.export import ExportSummary, export_results, results_of
from search.layout import BUDGET_FILE
from search.live import NO_RESULT, read_live
from search.live_writer import LiveStatusWriter, mark_ended
from search.ray_cluster import (
    INFEASIBLE_WAIT_S,
    SearchError,
    check_resources,
    reap_orphans,
    record_ray_processes,
    start_ray,
)
from search.searcher import STUDY_FILE, TrialBudget, build_searcher
from search.tracking import WandbSettings
from search.trainable import AfterRound, train_vae
from search.trial_config import BEST_METRIC, METRIC, MODE, ROUND, TrialSettings
from vae.data import DataError, DataSplits, PackedSplits, load_splits

RAY_PROCESSES_FILE = "ray_processes.json"  # the local Ray this search started (see search.ray_cluster)
WANDB_SUBDIR = "wandb"

__all__ = ["STUDY_FILE", "NoResults", "SearchError", "SearchInterrupted", "SearchOutcome", "run_search"]


class SearchInterrupted(RuntimeError):
    """The search was stopped (Ctrl+C) before every trial finished; what it found was exported, and Tune saved
    its state for --resume."""


class NoResults(RuntimeError):
    """No trial reported a result: there is nothing to export (the experiment can be resumed)."""


@dataclass
class SearchOutcome:
    name: str
    experiment_path: str  # Tune's experiment folder or URI (restorable with --resume)
    restored: bool
    num_samples: int  # trials in the experiment in total
    results: tune.ResultGrid
    export: ExportSummary
    stop_reason: str

    @property
    def best_dir(self) -> Path:
        return self.export.best_dir

    @property
    def leaderboard(self) -> list[dict[str, Any]]:
        return self.export.leaderboard


def quiet_console(verbose: int) -> None:
    """Below --verbose 2: none of Tune's own console output (search.console prints instead), no "snapshotting
    may become a bottleneck" warning, and no Optuna "study created" line or warnings about its experimental
    sampler options. Explicit user settings of these variables are kept."""
    if verbose >= 2:
        return
    logging.getLogger("ray.tune").setLevel(logging.WARNING)  # "Wrote the latest version of all result files ..."
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def default_name(config: SearchConfig) -> str:
    return f"vae-{config.dataset_label}-{datetime.now():%Y%m%d-%H%M%S}"


def latest_restorable(config: SearchConfig) -> str | None:
    """The most recently started experiment under a local storage folder that Tune can restore."""
    root = Path(config.storage)
    if config.storage_is_uri or not root.is_dir():
        return None
    candidates = [p for p in root.iterdir() if p.is_dir() and tune.Tuner.can_restore(str(p))]
    return max(candidates, key=lambda p: (p / "tuner.pkl").stat().st_mtime).name if candidates else None


def build_scheduler(config: SearchConfig) -> TrialScheduler:
    if not config.early_stopping:
        return FIFOScheduler()
    return ASHAScheduler(time_attr=ROUND, metric=METRIC, mode=MODE, max_t=config.max_rounds,
                         grace_period=config.grace_period, reduction_factor=config.reduction_factor)


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def trial_settings(config: SearchConfig, name: str, data: DataSplits) -> TrialSettings:
    return TrialSettings(
        max_rounds=config.max_rounds, round_images=config.round_images_for(data.image_shape),
        val_images=config.val_images, rungs=config.rungs, image_shape=data.image_shape, dataset=config.dataset,
        seed=config.seed, threads=config.cpus_per_trial,
        wandb=WandbSettings(project=config.wandb_project, mode=config.wandb_mode, group=name,
                            dir=str(config.local_experiment_dir(name) / WANDB_SUBDIR)).to_dict(),
        checkpoint_every=config.checkpoint_every or config.grace_period)


def trainable(config: SearchConfig, data: DataSplits, deadline: float | None, after_round: AfterRound | None) -> Any:
    """The trial function with what every trial shares (through Ray's object store) and its resources."""
    with_data = tune.with_parameters(train_vae, data=PackedSplits.pack(data), deadline=deadline,
                                     after_round=after_round)
    return tune.with_resources(with_data, {"cpu": config.cpus_per_trial, "gpu": config.gpus_per_trial})


def build_tuner(config: SearchConfig, name: str, data: DataSplits, function: Any, deadline: float | None,
                callbacks: list[tune.Callback]) -> tune.Tuner:
    return tune.Tuner(
        function,
        param_space={"run": trial_settings(config, name, data).to_dict()},
        tune_config=tune.TuneConfig(
            search_alg=TrialBudget(build_searcher(config, name), deadline=deadline, last_start_s=last_start_s(config)),
            scheduler=build_scheduler(config),
            num_samples=config.num_samples,
            trial_dirname_creator=trial_dirname,
            reuse_actors=config.reuse_actors,
        ),
        run_config=run_config(config, name, callbacks),
    )


def run_config(config: SearchConfig, name: str, callbacks: list[tune.Callback]) -> tune.RunConfig:
    return tune.RunConfig(
        name=name,
        storage_path=config.storage,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=config.keep_checkpoints,
                                                checkpoint_score_attribute=BEST_METRIC,
                                                checkpoint_score_order=MODE),
        failure_config=tune.FailureConfig(max_failures=config.max_failures),
        verbose=2 if config.verbose >= 2 else 0,
        callbacks=callbacks,
        stop=DeadlineStopper(config.local_experiment_dir(name), slack_s(config)),
    )


def build_callbacks(config: SearchConfig, name: str, total: int, data: DataSplits,
                    log: Callable[[str], None]) -> list[tune.Callback]:
    """The live status file, and the console at --verbose 1 (Tune's own reporter is off below 2)."""
    local_dir = config.local_experiment_dir(name)
    live = LiveStatusWriter(local_dir, name, {
        "num_trials": total, "max_rounds": config.max_rounds, "round_images": config.round_images,
        "rungs": list(config.rungs), "dataset": config.dataset, "image_shape": list(data.image_shape),
        "class_names": list(data.class_names), "hyperparameters": list(config.space.searched())}, log=log)
    if config.verbose != 1:
        return [live]
    return [live, Console(config.space.searched(), max_rounds=config.max_rounds, rungs=config.rungs,
                          experiment_dir=local_dir)]


# --- running -----------------------------------------------------------------------------------


def fit_to_data(config: SearchConfig, data: DataSplits, log: Callable[[str], None]) -> SearchConfig:
    """The config for this data: rounds of as many images as make BASE_ROUND_IMAGES 28x28 images' pixels (unless
    given), and no convolutional stem when the images' sides are not divisible by 4 (a note says so; the known
    points that the narrowed space leaves out drop out with it)."""
    _, height, width = data.image_shape
    config = config.replace(round_images=config.round_images_for(data.image_shape))
    stems = config.space["conv_channels"]
    if (height % 4 or width % 4) and any(stems):
        log(f"note: the images are {width}x{height} pixels, not divisible by 4: no convolutional stem is searched")
        config = config.replace(space=config.space.replace(conv_channels=(0,)))
    return config



def _prepare(config: SearchConfig) -> tuple[SearchConfig, str, int, int]:
    """(effective config, experiment name, trials asked for, trials for Tune to create), checked against what is
    in the storage.

    On resume the effective config is the one the experiment was started with (its data set, rounds,
    space...), with this run's connection settings (address, CPUs, verbosity, time budget) and trial total.
    Trials that ended without a report (the time budget ran out first) do not count: Tune creates as many more.
    An experiment without any trial is not restored but started (``resume`` False in the effective config).
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
        previous = stored.get("trials", stored.get("num_samples"))
        total = config.trials if config.trials is not None else previous or config.num_samples
        if previous is not None and total < previous:
            raise SearchError(f"--trials {total} is less than the {previous} trials the experiment already has")
        original = SearchConfig.from_dict(stored["config"]) if "config" in stored else config
        effective = config.resumed(original, resume=True, name=name, trials=total)
        live = read_live(effective.local_experiment_dir(name))
        if live is not None and not live.trials:
            # Tune cannot restore an experiment whose budget ended before it created a trial (its restore indexes
            # the first one); with nothing to continue, the experiment's trials start now, with its own settings.
            return effective.replace(resume=False), name, total, total
        without_results = sum(t.status == NO_RESULT for t in live.trials) if live else 0
        return effective, name, total, total + without_results
    name = name or default_name(config)
    path = config.experiment_path(name)
    if tune.Tuner.can_restore(path):
        raise SearchError(f"experiment {path} exists: add --resume to continue it, or choose another --name")
    return config.replace(name=name), name, config.num_samples, config.num_samples


def run_search(config: SearchConfig, *, log: Callable[[str], None] = say,
               after_round: AfterRound | None = None) -> SearchOutcome:
    """Run (or with ``config.resume`` restore and continue) a search, then export what its trials found.

    Raises SearchError for problems the user can fix (detected before any trial starts), NoResults when no
    trial reported anything, SearchInterrupted after exporting a search stopped by Ctrl+C. ``after_round``: for
    tests, a function every trial calls after each round (search.trainable.AfterRound).
    """
    asked_to_resume = config.resume
    config, name, total, to_create = _prepare(config)
    restore = config.resume
    if asked_to_resume and not restore:
        log("note: the experiment has no trials to continue (its time budget ended before the first one was "
            "created); starting its trials now")
    path = config.experiment_path(name)
    try:
        data = load_splits(config.dataset, config.data_dir, seed=config.seed, image_size=config.image_size,
                           log_fn=log)
    except DataError as exc:
        raise SearchError(str(exc)) from exc
    config = fit_to_data(config, data, log)
    local_dir = config.local_experiment_dir(name)
    processes_file = local_dir / RAY_PROCESSES_FILE
    reap_orphans(processes_file, log)
    quiet_console(config.verbose)
    # A trial that starts after the deadline ends at once, without a report (search.trainable); Tune's check
    # that every result carries the metric would fail the search on it.
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    ray_started_here = start_ray(config)
    try:
        check_resources(config, wait_s=INFEASIBLE_WAIT_S if config.address else 0.0, log=log)
        if ray_started_here and not config.address:
            try:
                record_ray_processes(processes_file)
            except (OSError, RuntimeError) as exc:  # bookkeeping only: never fail a search on it
                log(f"note: could not record the local Ray's processes ({exc})")
        _announce(config, name, restore, total, log)
        deadline = time.time() + config.time_budget_s if config.time_budget_s else None
        budget = json.dumps({"trials": total, "num_samples": to_create, "deadline": deadline,
                             "last_start_s": last_start_s(config), "config": config.to_dict()}, indent=2)
        storage.write_text(f"{path}/{BUDGET_FILE}", budget)
        if config.storage_is_uri:  # the callbacks read this run's deadline from the local copy
            storage.write_text(str(local_dir / BUDGET_FILE), budget)
        function = trainable(config, data, deadline, after_round)
        if restore:  # Tune brings back the experiment's callbacks (search.live_writer, search.console)
            tuner = tune.Tuner.restore(path, trainable=function, resume_unfinished=True, resume_errored=False)
        else:
            tuner = build_tuner(config, name, data, function, deadline, build_callbacks(config, name, total, data, log))
        fit_started = time.monotonic()
        results = fit_keeping_signal_handlers(tuner)
        stop_reason, interrupted = _stop_reason(results, config, total, to_create, deadline,
                                                time.monotonic() - fit_started)
        log(stop_reason)
        mark_ended(local_dir, stop_reason)
        if not any(r.metrics and METRIC in r.metrics for r in results_of(results)):
            raise NoResults(f"no trial reported a result, so there is nothing to export; the experiment is kept: "
                            f"continue it with: python -m search.run --resume --name {name} --storage "
                            f"{config.storage}{' --time-budget SECONDS' if deadline else ''}")
        summary = export_results(results, config, name, data, deadline=deadline, stop_reason=stop_reason, log=log)
    finally:
        if ray_started_here:
            ray.shutdown()
            processes_file.unlink(missing_ok=True)
    if interrupted:
        raise SearchInterrupted(f"search interrupted; what it found is exported to {summary.best_dir}; continue it "
                                f"with: python -m search.run --resume --name {name} --storage {config.storage}")
    return SearchOutcome(name, path, restore, total, results, summary, stop_reason)


def fit_keeping_signal_handlers(tuner: tune.Tuner) -> tune.ResultGrid:
    """``tuner.fit()``, with the SIGINT and SIGUSR1 handlers as they were before it: Tune installs its own ("Stop
    signal received ... will try to checkpoint the experiment state one last time") and restores the previous one
    only after an interrupt, so a Ctrl+C long after the search (``--serve``) would still reach it."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGUSR1)}
    try:
        return tuner.fit()
    finally:
        for sig, handler in handlers.items():
            if handler is not None:
                signal.signal(sig, handler)


def _stop_reason(grid: tune.ResultGrid, config: SearchConfig, total: int, to_create: int, deadline: float | None,
                 fit_s: float) -> tuple[str, bool]:
    """One line saying what ended the search, and whether it was interrupted (neither done nor out of time)."""
    results = results_of(grid)
    reported = sum(1 for r in results if r.metrics and METRIC in r.metrics)
    created = len(results)
    budget_over = deadline is not None and time.time() >= deadline - last_start_s(config)
    cut = sum(1 for r in results if not (r.metrics or {}).get("last_round") and r.error is None
              and int((r.metrics or {}).get("round", 0)) not in config.rungs)  # neither done nor stopped by ASHA
    cut_short = sum(1 for r in results if (r.metrics or {}).get("last_round")
                    and int((r.metrics or {}).get("round", 0)) < config.max_rounds)  # annealed to the deadline
    never = f"; {to_create - created} never started" if created < to_create else ""
    silent = f"; {created - reported} ended before their first report" if reported < created else ""
    all_ended = created >= to_create and grid.num_terminated + grid.num_errors >= created
    if budget_over and (created < to_create or cut or cut_short):
        return (f"time budget of {config.time_budget_s:g} s reached after {fit_s:.0f} s: {reported} of {total} trials "
                f"reported results{silent}{never}; exporting what the search found"), False
    if all_ended:
        return f"search done after {fit_s:.0f} s: all {total} trials ended ({reported} reported results)", False
    return (f"search stopped after {fit_s:.0f} s with {reported} of {total} trials reporting results{never}; "
            "exporting what it found"), True


def _announce(config: SearchConfig, name: str, restore: bool, total: int, log: Callable[[str], None]) -> None:
    resources = ray.cluster_resources()
    verb = "resuming" if restore else "starting"
    rungs = ", ".join(map(str, config.rungs)) if config.early_stopping else "none"
    log(f"{verb} experiment {name} at {config.experiment_path(name)}: {total} trials, searcher {config.searcher}"
        f"{' + ASHA' if config.early_stopping else ''}, at most {config.max_rounds} rounds of {config.round_images} "
        f"images per trial (rungs at {rungs}), {config.max_concurrent} concurrent, {config.cpus_per_trial} CPU + "
        f"{config.gpus_per_trial:g} GPU per trial, time budget "
        f"{f'{config.time_budget_s:g} s' if config.time_budget_s else 'none'}; "
        f"Ray: {resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} GPUs; W&B {config.wandb_mode}")
    log(config.space.describe())
    if config.searcher != "grid":
        points = config.warm_start_points
        log("warm start: " + ("; ".join(", ".join(f"{k} {v if isinstance(v, str) else format(v, 'g')}"
                                                    for k, v in p.items()) for p in points) or "none"))
    sys.stdout.flush()
