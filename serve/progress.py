"""Reading a search's progress from its experiment folder, while it runs or after it ended; no Gradio here.

What is read (all JSON or CSV, never a pickle; nothing is ever written):

    <experiment>/trial_<id>/params.json       the trial's config (hyperparameters, plus the fixed "run" part)
    <experiment>/trial_<id>/result.json       one JSON line per report (Tune appends a line per epoch)
    <experiment>/trial_<id>/checkpoint_NNNNNN/ the checkpoints Tune kept (vae.checkpoint folders)
    <experiment>/experiment_state-*.json      Tune's trial table: each trial's status (read as JSON only)
    <experiment>/vaesearch_search.json        the search's own config (max epochs, data set)
    <experiment>/best/leaderboard.json        the export, once the search ended
    <experiment>/best/importance.json         hyperparameter importances, when the export wrote them

Hyperparameters are whatever a trial's params.json holds besides "run", so a new hyperparameter in the
search space appears in the leaderboard and the space plot without a change here. A line of result.json
that is being written (not yet valid JSON) is skipped until the next read. A checkpoint counts only once
its trial's result.json names it (Tune records the result after the checkpoint is persisted), so a
half-copied checkpoint is never picked.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from search.layout import BEST_DIR, LEADERBOARD_JSON, read_importances

METRIC = "val_neg_elbo"
SEARCH_FILE = "vaesearch_search.json"  # written by search.tuner (BUDGET_FILE); read here without importing Ray
TRIAL_PREFIX = "trial_"
RUN_KEY = "run"


@dataclass(frozen=True)
class CheckpointRef:
    """One checkpoint Tune kept: which trial and epoch, where, and its validation neg-ELBO."""

    trial_id: str
    epoch: int
    path: Path
    val_neg_elbo: float


@dataclass(frozen=True)
class TrialProgress:
    trial_id: str
    hyperparameters: dict[str, Any]
    reports: tuple[dict[str, Any], ...]  # one per epoch (the last report of each training iteration)
    status: str | None  # Tune's status (RUNNING, TERMINATED, ERROR, ...) or the export's, when known

    @property
    def values(self) -> list[float]:
        return [r[METRIC] for r in self.reports if _finite(r.get(METRIC))]

    @property
    def best(self) -> float | None:
        return min(self.values, default=None)

    def checkpoints(self, directory: Path) -> list[CheckpointRef]:
        refs = []
        for report in self.reports:
            name, value = report.get("checkpoint_dir_name"), report.get(METRIC)
            if isinstance(name, str) and name.startswith("checkpoint_") and "/" not in name and _finite(value):
                path = directory / name
                if (path / "checkpoint.json").is_file():
                    refs.append(CheckpointRef(self.trial_id, int(report.get("epoch", 0)), path, float(value)))
        return refs


@dataclass(frozen=True)
class SearchProgress:
    experiment: Path
    trials: tuple[TrialProgress, ...]
    max_epochs: int | None = None
    exported: bool = False  # best/leaderboard.json exists: the search ended and was exported
    importances: dict[str, float] = field(default_factory=dict)
    num_trials: int | None = None  # the search's trial budget, when its config says

    @property
    def hyperparameters(self) -> list[str]:
        names: dict[str, None] = {}
        for trial in self.trials:
            names.update(dict.fromkeys(trial.hyperparameters))
        return sorted(names)

    @property
    def trial_epochs(self) -> int:
        return sum(len(t.reports) for t in self.trials)

    def leaderboard(self) -> pd.DataFrame:
        """One row per trial, best validation neg-ELBO first (trials without a report last)."""
        rows = []
        order = self.started()
        for trial in self.trials:
            last = trial.reports[-1] if trial.reports else {}
            rows.append({
                "trial_id": trial.trial_id, "started": order.get(trial.trial_id), "status": trial.status or "unknown",
                "best_val_neg_elbo": trial.best,
                "last_val_neg_elbo": last.get(METRIC) if _finite(last.get(METRIC)) else None,
                "epochs": len(trial.reports), **trial.hyperparameters,
                "parameters": last.get("parameters"), "time_s": _round(last.get("time_total_s")),
            })
        columns = ["rank", "trial_id", "started", "status", "best_val_neg_elbo", "last_val_neg_elbo", "epochs",
                   *self.hyperparameters, "parameters", "time_s"]
        frame = pd.DataFrame(rows, columns=columns[1:])
        frame = frame.sort_values("best_val_neg_elbo", na_position="last", kind="stable").reset_index(drop=True)
        frame.insert(0, "rank", range(1, len(frame) + 1))
        return frame

    def started(self) -> dict[str, int]:
        """Each trial's number in the order the trials started (by their first report): 1, 2, ..."""
        first = sorted((float(t.reports[0].get("reported_at", 0.0)), t.trial_id) for t in self.trials if t.reports)
        return {trial_id: k for k, (_, trial_id) in enumerate(first, 1)}

    def reports(self) -> pd.DataFrame:
        """Every report: trial_id, trial ("trial k", k = started()), epoch, val_neg_elbo, reported_at (s since the
        epoch), wall_s (since the start)."""
        order = self.started()
        rows = [{"trial_id": t.trial_id, "trial": f"trial {order[t.trial_id]}", "epoch": int(r.get("epoch", i + 1)),
                 METRIC: float(r[METRIC]), "reported_at": float(r.get("reported_at", r.get("timestamp", 0.0)))}
                for t in self.trials for i, r in enumerate(t.reports) if _finite(r.get(METRIC))]
        frame = pd.DataFrame(rows, columns=["trial_id", "trial", "epoch", METRIC, "reported_at"])
        start = self._start_time()
        frame["wall_s"] = frame["reported_at"] - start if start is not None else 0.0
        return frame.sort_values(["reported_at", "trial_id"], kind="stable").reset_index(drop=True)

    def best_so_far(self) -> pd.DataFrame:
        """After each trial-epoch (all trials' reports in the order they came): the best val neg-ELBO so far.
        A running minimum, so it never increases."""
        frame = self.reports()
        return pd.DataFrame({
            "trial_epochs": range(1, len(frame) + 1),
            "wall_s": frame["wall_s"].round(2),
            "best_val_neg_elbo": frame[METRIC].cummin(),
            "trial_id": frame["trial_id"],
        })

    def pareto(self) -> pd.DataFrame:
        """Each trial's parameter count and best val neg-ELBO; ``front`` says whether no other trial is
        both smaller and better ("Pareto front" or "dominated")."""
        board = self.leaderboard()
        board = board[board["best_val_neg_elbo"].notna() & board["parameters"].notna()]
        board = board.sort_values(["parameters", "best_val_neg_elbo"], kind="stable")
        best, front = math.inf, []
        for value in board["best_val_neg_elbo"]:
            front.append("Pareto front" if value < best else "dominated")
            best = min(best, value)
        return pd.DataFrame({"trial_id": board["trial_id"], "parameters": board["parameters"].astype(float),
                             "best_val_neg_elbo": board["best_val_neg_elbo"], "front": front})

    def importance_frame(self) -> pd.DataFrame:
        items = sorted(self.importances.items(), key=lambda kv: -kv[1])
        return pd.DataFrame(items, columns=["hyperparameter", "importance"])

    def best_checkpoint(self) -> CheckpointRef | None:
        """The kept checkpoint with the lowest validation neg-ELBO (the earliest of equals), or None."""
        refs = [ref for t in self.trials for ref in t.checkpoints(self.experiment / f"{TRIAL_PREFIX}{t.trial_id}")]
        return min(refs, key=lambda r: r.val_neg_elbo, default=None)

    def _start_time(self) -> float | None:
        starts = [float(t.reports[0].get("reported_at", 0.0)) - float(t.reports[0].get("time_this_iter_s", 0.0))
                  for t in self.trials if t.reports]
        return min(starts, default=None)


def is_search_folder(path: str | Path) -> bool:
    """Whether ``path`` looks like a search's experiment folder (running or ended)."""
    path = Path(path)
    return path.is_dir() and ((path / SEARCH_FILE).is_file() or any(path.glob(f"{TRIAL_PREFIX}*/params.json")))


def read_progress(experiment: str | Path) -> SearchProgress:
    """Everything the Search view shows, read afresh from ``experiment`` (missing pieces are just absent)."""
    experiment = Path(experiment)
    statuses = {**_tune_statuses(experiment), **_exported_statuses(experiment)}
    trials = []
    for directory in sorted(experiment.glob(f"{TRIAL_PREFIX}*")):
        params = _read_json(directory / "params.json")
        if not directory.is_dir() or not isinstance(params, dict):
            continue
        trial_id = directory.name.removeprefix(TRIAL_PREFIX)
        hyper = {k: v for k, v in params.items() if k != RUN_KEY and isinstance(v, (int, float, str, bool))}
        trials.append(TrialProgress(trial_id, hyper, _read_results(directory / "result.json"), statuses.get(trial_id)))
    config = _read_json(experiment / SEARCH_FILE)
    max_epochs = (config.get("config") or {}).get("max_epochs") if isinstance(config, dict) else None
    num_trials = config.get("num_samples") if isinstance(config, dict) else None
    importances = read_importances(experiment / BEST_DIR)
    return SearchProgress(experiment, tuple(trials), max_epochs if isinstance(max_epochs, int) else None,
                          (experiment / BEST_DIR / LEADERBOARD_JSON).is_file(), importances,
                          num_trials if isinstance(num_trials, int) else None)


def search_settings(experiment: str | Path) -> dict[str, Any]:
    """The search's stored config (data set, data folder, seed, ...), or {} when there is none."""
    stored = _read_json(Path(experiment) / SEARCH_FILE)
    config = stored.get("config") if isinstance(stored, dict) else None
    return config if isinstance(config, dict) else {}


# ---- helpers -----------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _read_results(path: Path) -> tuple[dict[str, Any], ...]:
    """result.json's reports, one per training iteration (a retried trial reports an epoch again: the last wins)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return ()
    by_iteration: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            report = json.loads(line)
        except json.JSONDecodeError:
            continue  # the line being written right now
        if isinstance(report, dict) and _finite(report.get(METRIC)):
            by_iteration[int(report.get("training_iteration", len(by_iteration) + 1))] = report
    return tuple(by_iteration[k] for k in sorted(by_iteration))


def _tune_statuses(experiment: Path) -> dict[str, str]:
    """Trial statuses from Tune's newest experiment_state-*.json (JSON strings inside JSON; nothing unpickled)."""
    states = sorted(experiment.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime if p.exists() else 0)
    if not states:
        return {}
    data = _read_json(states[-1])
    statuses = {}
    for entry in (data or {}).get("trial_data", []) if isinstance(data, dict) else []:
        try:
            trial = json.loads(entry[0])
            statuses[str(trial["trial_id"])] = str(trial["status"])
        except (TypeError, KeyError, IndexError, json.JSONDecodeError):
            continue
    return statuses


def _exported_statuses(experiment: Path) -> dict[str, str]:
    rows = _read_json(experiment / BEST_DIR / LEADERBOARD_JSON)
    if not isinstance(rows, list):
        return {}
    return {str(r["trial_id"]): str(r.get("status")) for r in rows if isinstance(r, dict) and "trial_id" in r}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _round(value: Any) -> Any:
    return round(float(value), 2) if _finite(value) else None
