"""Writes the search's live status (search.live, ``live.json``) from Tune's callbacks, in the driver.

The file is rewritten whole (atomic rename) at most once per ``min_interval_s`` while trials report, and at
once when a trial ends, a checkpoint is kept, or the experiment ends. A failure here is reported once as one
line and never ends the search: the status file is for watching a search, not for running it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search.budget import read_budget, stored_deadline
from search.console import say
from search.guarded_callback import GuardedCallback
from search.hyperparams import hyperparameters
from search.live import LIVE_JSON, VERSION, finite, read_live, trial_status, write_json_atomic
from search.trial_config import METRIC, RUN_KEY

REPORT_KEYS = ("round", "images", "epochs", METRIC, "reported_at")


class LiveStatusWriter(GuardedCallback):
    """Keeps ``<experiment>/live.json`` up to date. ``header``: the search-wide fields (num_trials, max_rounds,
    round_images, rungs, dataset, hyperparameters). The time budget's deadline (what ended a trial Tune stopped
    after it) is read from the experiment's budget file when the experiment starts or resumes."""

    def __init__(self, experiment_dir: Path, name: str, header: dict[str, Any], *, min_interval_s: float = 1.0,
                 log: Callable[[str], None] = say) -> None:
        self.experiment_dir = Path(experiment_dir)
        self.path = self.experiment_dir / LIVE_JSON
        self.name, self.header = name, header
        self.min_interval_s = min_interval_s
        self._log = log
        self._written_at = 0.0
        self._started_at = time.time()
        self.deadline: float | None = None
        self._trials: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []

    # --- GuardedCallback's methods ---------------------------------------------------------------

    def setup_run(self) -> None:
        budget = read_budget(self.experiment_dir)
        self.deadline = stored_deadline(self.experiment_dir)
        self._written_at = 0.0
        self._trials, self._order = {}, []
        self._resume_from_file()
        if isinstance(budget.get("trials"), int):
            self.header = {**self.header, "num_trials": budget["trials"]}
        self._write()

    def started(self, trial: Any) -> None:
        self._track(trial)

    def result(self, trial: Any, result: dict[str, Any]) -> None:
        entry = self._track(trial)
        entry["last_result"] = result
        if isinstance(result.get("parameters"), int):
            entry["parameters"] = result["parameters"]
        if isinstance(result.get("error"), str):
            entry["error"] = result["error"]
        if finite(result.get(METRIC)) and isinstance(result.get("round"), int):
            report = {k: result[k] for k in REPORT_KEYS if k in result}
            entry["reports"] = [r for r in entry["reports"] if r["round"] < report["round"]] + [report]
        self._refresh(entry, trial)
        if time.time() - self._written_at >= self.min_interval_s:
            self._write()

    def checkpointed(self, trial: Any, checkpoint: Any) -> None:
        entry = self._track(trial)
        path = Path(str(checkpoint.path))
        result = entry["last_result"] or {}
        if path.is_absolute() and path.is_relative_to(self.experiment_dir) and finite(result.get("best_val_neg_elbo")):
            entry["checkpoints"].append({"path": str(path.relative_to(self.experiment_dir)),
                                         "round": int(result.get("best_round", 0)),
                                         "val_neg_elbo": float(result["best_val_neg_elbo"])})
            self._write()

    def ended(self, trial: Any, errored: bool) -> None:
        entry = self._track(trial)
        entry["errored"] = errored
        self._refresh(entry, trial, ended=True)
        self._write()

    def step(self, trials: list[Any], force: bool = False) -> None:
        changed = False
        for trial in trials:
            entry = self._track(trial)
            before = entry["status"]
            self._refresh(entry, trial)
            changed = changed or entry["status"] != before
        if force or changed or time.time() - self._written_at >= 10 * self.min_interval_s:
            self._write()

    def experiment_ended(self, trials: list[Any]) -> None:
        self.step(trials, force=True)

    def report_failure(self, exc: Exception) -> None:
        self._log(f"note: could not update {self.path.name} ({type(exc).__name__}: {exc}); the search goes on")

    # --- bookkeeping ----------------------------------------------------------------------------

    def _resume_from_file(self) -> None:
        """A resumed search keeps the trials, reports and checkpoints the file already lists."""
        previous = read_live(self.experiment_dir)
        if previous is None:
            return
        self._started_at = previous.started_at or self._started_at
        for trial in previous.trials:
            self._order.append(trial.trial_id)
            self._trials[trial.trial_id] = {
                "trial_id": trial.trial_id, "status": trial.status, "hyperparameters": trial.hyperparameters,
                "parameters": trial.parameters, "error": trial.error, "reports": [dict(r) for r in trial.reports],
                "checkpoints": [dict(c) for c in trial.checkpoints], "tune_status": None, "last_result": None}

    def _track(self, trial: Any) -> dict[str, Any]:
        entry = self._trials.get(trial.trial_id)
        if entry is None:
            self._order.append(trial.trial_id)
            config = {k: v for k, v in (trial.config or {}).items() if k != RUN_KEY}
            entry = self._trials[trial.trial_id] = {
                "trial_id": trial.trial_id, "status": "PENDING", "hyperparameters": hyperparameters(config),
                "parameters": None, "error": None, "reports": [], "checkpoints": [], "tune_status": None,
                "last_result": None}
        return entry

    def _refresh(self, entry: dict[str, Any], trial: Any, ended: bool = False) -> None:
        tune_status = "TERMINATED" if ended and trial.status in ("RUNNING", "PENDING", "PAUSED") else trial.status
        budget_over = self.deadline is not None and time.time() >= self.deadline
        entry["status"] = trial_status(tune_status, entry["last_result"] or trial.last_result,
                                       max_rounds=int(self.header["max_rounds"]), rungs=self.header["rungs"],
                                       errored=bool(entry.get("errored")), budget_over=budget_over)

    def _write(self, ended: bool = False, stop_reason: str | None = None) -> None:
        trials = [{k: v for k, v in self._trials[t].items() if k not in ("tune_status", "last_result", "errored")}
                  for t in self._order]
        write_json_atomic(self.path, {
            "version": VERSION, "experiment": self.name, "started_at": self._started_at, "updated_at": time.time(),
            "ended": ended, "stop_reason": stop_reason, **self.header, "trials": trials})
        self._written_at = time.time()


def mark_ended(experiment_dir: Path, stop_reason: str) -> None:
    """Mark the live status at ``experiment_dir`` as ended, with the line that says why (the driver, once Tune
    is done); nothing when there is no status file."""
    path = Path(experiment_dir) / LIVE_JSON
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(data, dict):
        data.update(ended=True, stop_reason=stop_reason, updated_at=time.time())
        write_json_atomic(path, data)
