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
import math
import os
import signal
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
from ray.tune import Callback, CLIReporter
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from search import storage
from search.config import SearchConfig
from search.export import ExportSummary, export_results
from search.library_internals import base_searcher, optuna_study, resolve_ray_address
from search.tracking import WandbSettings
from search.trainable import train_vae
from search.trial_config import BEST_METRIC, METRIC, MODE, TrialSettings
from vae.data import DataError, load_splits

BUDGET_FILE = "vaesearch_search.json"
RAY_PROCESSES_FILE = "ray_processes.json"  # the local Ray this search started (see record_ray_processes)
INFEASIBLE_WAIT_S = 60.0  # a joined cluster may autoscale: how long to wait for a node a trial fits on
REPORT_EVERY_S = 60  # the status table at --verbose 1 (a 20-trial search on 2 cores: about 6 tables)
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

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """A diverged trial (search.trainable) ends without an error for Tune, so that it is not retried;
        the searcher is told it failed (Optuna would refuse its NaN value and keep the trial RUNNING)."""
        if result and result.get("diverged"):
            result, error = None, True
        super().on_trial_complete(trial_id, result=result, error=error)

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
    # The trials' own output ("Checkpoint successfully created", W&B) reaches the console at --verbose 2 only.
    log_to_driver = config.verbose >= 2
    if config.address:
        check_address(config.address)
        ray.init(address=config.address, log_to_driver=log_to_driver)
    else:
        ray.init(address="local", num_cpus=config.num_cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=log_to_driver)
    return True


def check_resources(config: SearchConfig, *, wait_s: float = 0.0, log: Callable[[str], None] = print) -> None:
    """Raise SearchError unless some node of the cluster can hold one trial (its CPUs and GPUs together).

    Ray would otherwise leave the trials PENDING forever. A cluster that was joined (--address) may add
    nodes (autoscaling): it is given ``wait_s`` seconds to grow one that fits, with a warning first.
    """
    need = {"CPU": float(config.cpus_per_trial), "GPU": float(config.gpus_per_trial)}

    def nodes() -> list[dict[str, float]]:
        return [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]

    def fits(resources: dict[str, float]) -> bool:
        return all(resources.get(key, 0.0) >= amount for key, amount in need.items() if amount > 0)

    current = nodes()
    if any(fits(r) for r in current):
        return
    largest = {key: max((r.get(key, 0.0) for r in current), default=0.0) for key in need}
    missing = ", ".join(f"{amount - largest[key]:g} {key}s" for key, amount in need.items() if largest[key] < amount)
    problem = (f"a trial needs {need['CPU']:g} CPUs and {need['GPU']:g} GPUs on one node, but the largest of the "
               f"{len(current)} node(s) of this Ray has {largest['CPU']:g} CPUs and {largest['GPU']:g} GPUs "
               f"(missing {missing})")
    if wait_s > 0:
        log(f"warning: {problem}; waiting up to {wait_s:g} s for the cluster to add a node that fits")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            time.sleep(2.0)
            if any(fits(r) for r in nodes()):
                return
        problem += f", and none was added within {wait_s:g} s"
    raise SearchError(f"{problem}: lower --cpus-per-trial / --gpus-per-trial, or add nodes that have them")


# --- the processes of a local Ray ---------------------------------------------------------------
# A local Ray's agents (ray::DashboardAgent, ray::RuntimeEnvAgent) are children of its raylet; when the
# driver is SIGKILLed, the raylet dies with it but they do not, and live on as orphans. The search records
# the processes of the Ray it starts; the next search on the same experiment (--resume) ends those that
# outlived their driver.


def _ray_process_tree() -> list[dict[str, Any]]:
    """PID and start time of every descendant of this driver: a local Ray's GCS, raylet and the rest are
    the driver's children, and the agents and workers the raylet's."""
    import psutil  # ships with Ray

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            found.append({"pid": proc.pid, "create_time": proc.create_time()})
        except psutil.Error:
            continue
    return found


def record_ray_processes(path: Path) -> None:
    """Write this driver's and its local Ray's processes to ``path`` (see reap_orphans)."""
    import psutil

    me = psutil.Process()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"driver": {"pid": me.pid, "create_time": me.create_time()},
                                "pgid": os.getpgid(0), "processes": _ray_process_tree()}))


def reap_orphans(path: Path, log: Callable[[str], None] = print) -> int:
    """End the Ray processes recorded in ``path`` by a driver that is no longer running; returns how many.

    A process is ended only if it is the very process recorded (same PID and start time) or, for the
    agents started after the record was written, a Ray process (``ray::...``) of the dead driver's
    process group started after it."""
    import psutil

    try:
        record = json.loads(path.read_text())
        driver = record["driver"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    try:
        if psutil.Process(driver["pid"]).create_time() == driver["create_time"]:
            return 0  # that search is still running
    except psutil.Error:
        pass
    recorded = {(p["pid"], p["create_time"]) for p in record.get("processes", [])}
    victims = []
    for proc in psutil.process_iter(["pid", "create_time", "cmdline"]):
        try:
            mine = (proc.info["pid"], proc.info["create_time"]) in recorded
            orphan = (proc.info["create_time"] >= driver["create_time"] and os.getpgid(proc.pid) == record["pgid"]
                      and " ".join(proc.info["cmdline"] or []).startswith("ray::"))
        except (psutil.Error, OSError):
            continue
        if (mine or orphan) and proc.pid != os.getpid():
            victims.append(proc)
    for proc in victims:
        try:
            proc.send_signal(signal.SIGKILL)
        except psutil.Error:
            continue
    psutil.wait_procs(victims, timeout=10)
    if victims:
        log(f"ended {len(victims)} Ray process(es) left by the killed search (pids "
            f"{', '.join(str(p.pid) for p in victims)})")
    path.unlink(missing_ok=True)
    return len(victims)


# --- console reporting --------------------------------------------------------------------------


class StatusTable(CLIReporter):
    """Tune's CLIReporter with the trial's searched hyperparameters (every top-level key of its config but
    the fixed "run" settings, so new hyperparameters appear without a change here), its epoch, val
    neg-ELBO and best so far."""

    def __init__(self) -> None:
        super().__init__(metric_columns={"epoch": "epoch", METRIC: "val neg-ELBO", "best_val_neg_elbo": "best so far"},
                         parameter_columns=[], max_report_frequency=REPORT_EVERY_S, print_intermediate_tables=True,
                         metric=METRIC, mode=MODE, sort_by_metric=True, max_progress_rows=12)
        self.shown_parameters: set[str] = set()

    def should_report(self, trials: list[Any], done: bool = False) -> bool:
        for trial in trials:
            for key in sorted(trial.config):
                if key != "run" and key not in self.shown_parameters:
                    self.add_parameter_column(key)
                    self.shown_parameters.add(key)
        return super().should_report(trials, done)


class TrialLines(Callback):
    """One line per finished trial: its id, status (diverged shown as ERROR), epochs and best val neg-ELBO."""

    def __init__(self, max_epochs: int, log: Callable[[str], None] = print) -> None:
        self._max_epochs = max_epochs
        self._log = log

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        result = trial.last_result or {}
        if result.get("diverged"):
            self._log(f"trial {trial.trial_id} ERROR after {result.get('epoch', 0)} epochs: {result.get('error')}")
            return
        best = result.get("best_val_neg_elbo")
        best_text = f"best val neg-ELBO {best:.2f}" if isinstance(best, float) and math.isfinite(best) else "no result"
        params = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                           for k, v in sorted(trial.config.items()) if k != "run")
        epochs = result.get("epoch", 0)
        how = "done" if epochs >= self._max_epochs else "stopped early"
        self._log(f"trial {trial.trial_id} {how} after {epochs} epoch{'s' * (epochs != 1)}: {best_text} ({params})")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._log(f"trial {trial.trial_id} ERROR after {(trial.last_result or {}).get('epoch', 0)} epochs "
                  f"(details: {trial.error_file})")


def quiet_console(verbose: int) -> None:
    """Below --verbose 2: Tune's legacy reporter (whose columns StatusTable chooses) instead of its new
    output's per-trial config and result boxes, no "snapshotting may become a bottleneck" warning, and
    no Optuna "study created" line. Explicit user settings of these variables are kept."""
    if verbose >= 2:
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def reporting(config: SearchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """RunConfig's console settings for ``config.verbose`` (0 silent, 1 table + one line per trial, 2 all)."""
    if config.verbose == 1:
        return {"verbose": 1, "progress_reporter": StatusTable(), "callbacks": [TrialLines(config.max_epochs, log)]}
    return {"verbose": config.verbose}


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
            **reporting(config),
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
        effective = config.resumed(original, resume=True, name=name, trials=total)
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
    processes_file = config.local_experiment_dir(name) / RAY_PROCESSES_FILE
    reap_orphans(processes_file, log)
    quiet_console(config.verbose)
    started = start_ray(config)
    try:
        check_resources(config, wait_s=INFEASIBLE_WAIT_S if config.address else 0.0, log=log)
        if started and not config.address:
            try:
                record_ray_processes(processes_file)
            except (OSError, RuntimeError) as exc:  # bookkeeping only: never fail a search on it
                log(f"note: could not record the local Ray's processes ({exc})")
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
            processes_file.unlink(missing_ok=True)
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
