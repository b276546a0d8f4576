"""Turn a finished search (Tune's ResultGrid) into what a person and ``serve/`` use: the leaderboard, the best
model evaluated on the held-out test split, every trial's best checkpoint, the Pareto front of loss against
parameter count, the importances and plots. See search/layout.py for the folder layout.

Whatever state the trials are in (finished, stopped by ASHA or the time budget, errored, never started), the
trials that reported are exported. The cost is bounded: trial checkpoints already hold what the app needs
(examples bank, class Gaussians), so they are copied, not recomputed; only the best model is evaluated on the
test split, and its IWAE bound runs on as many test images as fit in ``config.iwae_budget_s``.

Checkpoints are fetched through Ray's Checkpoint API (``as_directory``), so this works the same when the
experiment lives in a URI storage; best/ is then written locally (``./results/<name>/best``) and uploaded next
to the experiment.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from search import layout, storage
from search.config import SearchConfig
from search.hyperparams import BY_NAME, hyperparameters
from search.importance import write_importances
from search.leaderboard import best_so_far, format_table, pareto_front, rank, trial_row
from search.live import ERROR, NO_RESULT, STATUSES, TrialLive, finite, trial_status
from search.plots import CURVE_PNG, PARETO_PNG, SPACE_PNG, plot_curve, plot_pareto, plot_space
from search.trial_config import BEST_METRIC, METRIC, MODE, RUN_KEY
from search.trial_state import CLASS_GAUSSIAN_IMAGES
from vae.checkpoint import CHECKPOINT_FILES, load_checkpoint, save_checkpoint
from vae.class_gaussians import fit_class_gaussians
from vae.config import TrainConfig
from vae.data import DataSplits
from vae.iwae import iwae_within
from vae.train import evaluate

SUMMARY_JSON = "summary.json"
PARETO_CSV = "pareto.csv"
CURVE_CSV = "curve.csv"
REPORT_KEYS = ("round", "images", "epochs", METRIC, "reported_at")

__all__ = ["CURVE_PNG", "ERROR", "PARETO_PNG", "SPACE_PNG", "SUMMARY_JSON", "ExportSummary", "export_results"]


@dataclass
class ExportSummary:
    best_dir: Path  # local folder
    leaderboard: list[dict[str, Any]]
    best: dict[str, Any] | None  # the best leaderboard row
    test_metrics: dict[str, Any]  # the best model on the test split
    curve: list[dict[str, Any]]  # search.leaderboard.best_so_far
    pareto: list[dict[str, Any]] = field(default_factory=list)
    uploaded_to: str | None = None
    export_s: float = 0.0


# --- trials --------------------------------------------------------------------------------------


def results_of(grid: tune.ResultGrid) -> list[tune.Result]:
    """The results of a ResultGrid, one per trial (it has ``len`` and indexing, no declared ``__iter__``)."""
    return [grid[index] for index in range(len(grid))]


def trial_id_of(result: tune.Result) -> str:
    """The trial ID, from the metrics or (for a trial that never reported) its folder ``trial_<id>``."""
    if result.metrics and result.metrics.get("trial_id"):
        return str(result.metrics["trial_id"])
    return Path(str(result.path)).name.removeprefix("trial_")


def error_line(error: BaseException | None) -> str | None:
    """One line for a trial's error: the original exception inside Ray's wrappers."""
    if error is None:
        return None
    cause: BaseException = error
    while isinstance(inner := getattr(cause, "cause", None), BaseException) and inner is not cause:  # Ray's wrappers
        cause = inner
    text = str(cause).strip().splitlines()
    message = next((line for line in reversed(text) if "Error" in line and ":" in line), text[-1] if text else "")
    return message if message.startswith(type(cause).__name__) else f"{type(cause).__name__}: {message}"


def trial_record(result: tune.Result, config: SearchConfig, *, budget_over: bool) -> TrialLive:
    """What a trial reported, as the live status describes a trial (search.live.TrialLive)."""
    metrics = result.metrics or {}
    frame = result.metrics_dataframe
    by_round: dict[int, dict[str, Any]] = {}
    if frame is not None and METRIC in frame and "round" in frame:
        for record in frame.to_dict("records"):
            if finite(record.get(METRIC)) and finite(record.get("round")):
                by_round[int(record["round"])] = {k: record[k] for k in REPORT_KEYS if k in record}
    reports = tuple(dict(by_round[k], round=k) for k in sorted(by_round))
    status = trial_status("TERMINATED", metrics if "round" in metrics else None, max_rounds=config.max_rounds,
                          rungs=config.rungs, errored=result.error is not None, budget_over=budget_over)
    diverged = bool(metrics.get("diverged"))  # search.trainable: reported once, not retried
    error = str(metrics["error"]) if diverged else error_line(result.error)
    searched = {k: v for k, v in (result.config or {}).items() if k != RUN_KEY}
    parameters = metrics.get("parameters")
    return TrialLive(trial_id_of(result), status, hyperparameters(searched), reports,
                     parameters=int(parameters) if isinstance(parameters, (int, float)) else None, error=error)


def _value(value: Any) -> float | None:
    return float(value) if finite(value) else None


def _node(metrics: dict[str, Any]) -> str | None:
    return f"{metrics['node_ip']}/{str(metrics.get('node_id', ''))[:8]}" if "node_ip" in metrics else None


def _active_units(trial: TrialLive, result: tune.Result) -> int | None:
    frame = result.metrics_dataframe
    if frame is None or "val_active_units" not in frame or not trial.reports:
        return None
    best_round = min(trial.reports, key=lambda r: r[METRIC])["round"]
    rows = frame[frame["round"] == best_round]["val_active_units"]
    return int(rows.iloc[-1]) if len(rows) else None


# --- checkpoints ---------------------------------------------------------------------------------


def _copy_trial_checkpoint(result: tune.Result, data: DataSplits, destination: Path) -> dict[str, Any]:
    """Copy the trial's best checkpoint (a vae.checkpoint folder) to ``destination``; returns its metrics. A
    checkpoint of an older experiment, without class Gaussians or examples, gets them here."""
    checkpoint = result.get_best_checkpoint(BEST_METRIC, MODE) or result.checkpoint
    if checkpoint is None:
        raise ValueError(f"trial {trial_id_of(result)} left no checkpoint")
    with checkpoint.as_directory() as directory:
        saved = load_checkpoint(directory)
        if saved.examples is not None and (saved.class_gaussians is not None or not data.labelled):
            destination.mkdir(parents=True, exist_ok=True)
            for name in CHECKPOINT_FILES:  # the vae.checkpoint files; not the trial's optimizer state
                if (Path(directory) / name).is_file():
                    shutil.copy2(Path(directory) / name, destination / name)
            return dict(saved.meta.get("metrics", {}))
    gaussians = fit_class_gaussians(saved.model, data.train.images, data.train.labels, len(data.class_names),
                                    max_per_class=CLASS_GAUSSIAN_IMAGES) if data.labelled else None
    train_config = saved.meta.get("train_config")
    save_checkpoint(destination, saved.model, dataset=data.dataset, metrics=saved.meta.get("metrics", {}),
                    train_config=TrainConfig.from_dict(train_config) if train_config else None,
                    extra={k: saved.meta[k] for k in ("trial_id", "round") if k in saved.meta},
                    examples=data.test, class_gaussians=gaussians, class_names=data.class_names)
    return dict(saved.meta.get("metrics", {}))


def _evaluate_best(best_dir: Path, row: dict[str, Any], config: SearchConfig, data: DataSplits,
                   log: Callable[[str], None]) -> dict[str, Any]:
    """The best model on the test split (neg-ELBO on all of it, IWAE on what fits in the IWAE budget), written
    into best/'s checkpoint description."""
    saved = load_checkpoint(best_dir)
    test = evaluate(saved.model, data.test.images, seed=config.seed)
    bound = iwae_within(saved.model, data.test.images, k=config.iwae_k, seconds=config.iwae_budget_s,
                        seed=config.seed)
    metrics: dict[str, Any] = {f"test_{k}": v for k, v in test.items()}
    metrics.update(test_iwae=bound.mean, test_iwae_se=bound.standard_error, iwae_images=bound.images,
                   iwae_k=bound.k)
    train_config = saved.meta.get("train_config")
    save_checkpoint(best_dir, saved.model, dataset=saved.dataset, metrics={**saved.meta.get("metrics", {}), **metrics},
                    train_config=TrainConfig.from_dict(train_config) if train_config else None,
                    extra={"trial_id": row["trial_id"], "status": row["status"], "rounds": row["rounds"]},
                    examples=saved.examples, class_gaussians=saved.class_gaussians, class_names=saved.class_names)
    log(f"test split: neg-ELBO {test['neg_elbo']:.2f} nats ({test['bits_per_dim']:.4f} bits/dim) on {len(data.test)} "
        f"images; IWAE (k={bound.k}) {bound.mean:.2f} +- {bound.standard_error:.2f} nats on {bound.images} of them")
    return metrics


# --- the export ----------------------------------------------------------------------------------


def export_results(results: tune.ResultGrid, config: SearchConfig, name: str, data: DataSplits, *,
                   deadline: float | None = None, stop_reason: str | None = None,
                   log: Callable[[str], None] = print) -> ExportSummary:
    started = time.perf_counter()
    budget_over = deadline is not None and time.time() >= deadline
    records = [(trial_record(result, config, budget_over=budget_over), result) for result in results_of(results)]
    reported = [(trial, result) for trial, result in records if trial.reports or trial.status == ERROR]
    rows = [trial_row(trial, time_s=round(float((result.metrics or {}).get("time_total_s", 0.0)), 2),
                      node=_node(result.metrics or {}), val_active_units=_active_units(trial, result),
                      rounds=int((result.metrics or {}).get("round", trial.rounds)),  # a diverged round too
                      last_val_neg_elbo=_value((result.metrics or {}).get(METRIC)),
                      origin="grid" if config.searcher == "grid" else config.space.origin(trial.hyperparameters))
            for trial, result in reported]
    by_id = {trial.trial_id: result for trial, result in reported}
    best_dir = layout.best_dir(config.local_experiment_dir(name))
    trials_dir = best_dir / layout.TRIALS_DIR
    if trials_dir.exists():
        shutil.rmtree(trials_dir)
    trials_dir.mkdir(parents=True)

    for row in rows:
        result = by_id[row["trial_id"]]
        if row["status"] == ERROR or result.checkpoint is None:
            continue
        metrics = _copy_trial_checkpoint(result, data, trials_dir / row["trial_id"])
        row["checkpoint"] = f"{layout.TRIALS_DIR}/{row['trial_id']}"
        if finite(metrics.get(METRIC)):
            # What is served is the checkpoint: a trial stopped between two checkpoint writes reported a better
            # round than the one it saved, and is ranked by the saved one.
            row["best_val_neg_elbo"] = float(metrics[METRIC])
            row["best_round"] = int(metrics.get("round", row["best_round"] or 0))
    rank(rows)

    best = next((r for r in rows if r["checkpoint"] is not None), None)
    test_metrics: dict[str, Any] = {}
    if best is not None:
        best["is_best"] = True
        for item in (trials_dir / best["trial_id"]).iterdir():
            shutil.copy2(item, best_dir / item.name)
        test_metrics = _evaluate_best(best_dir, best, config, data, log)

    curve = best_so_far(trial for trial, _ in reported)
    front = pareto_front(rows)
    _write_csv(best_dir / layout.LEADERBOARD_CSV, rows, layout.LEADERBOARD_FIELDS)
    _write_csv(best_dir / PARETO_CSV, front, ("trial_id", "parameters", "best_val_neg_elbo", *config.space.searched()))
    _write_csv(best_dir / CURVE_CSV, curve, ("trial_rounds", "reported_at", "trial_id", "best_val_neg_elbo"))
    plot_curve(curve, best_dir / CURVE_PNG)
    plot_space(rows, config.space.searched(), best_dir / SPACE_PNG)
    plot_pareto(rows, front, best_dir / PARETO_PNG)
    importances = write_importances(rows, config.space, best_dir)
    export_s = time.perf_counter() - started
    (best_dir / SUMMARY_JSON).write_text(json.dumps({
        "experiment": name, "experiment_path": config.experiment_path(name), "searcher": config.searcher,
        "early_stopping": config.early_stopping, "stop_reason": stop_reason, "trials": len(rows),
        "trials_without_results": len(records) - len(reported), "trial_rounds": len(curve),
        "round_images": config.round_images, "max_rounds": config.max_rounds, "rungs": list(config.rungs),
        "best_trial": best["trial_id"] if best else None, "best_origin": best["origin"] if best else None,
        "top3_from": [r["origin"] for r in rows[:3]],
        "best_val_neg_elbo": best["best_val_neg_elbo"] if best else None, **test_metrics,
        "statuses": {s: sum(r["status"] == s for r in rows) for s in STATUSES if s != NO_RESULT},
        "export_s": round(export_s, 1), "space": config.space.to_dict(),
    }, indent=2))
    # Last, and whole (renamed into place): leaderboard.json marks the export as done for readers (the app).
    marker = best_dir / f".{layout.LEADERBOARD_JSON}.tmp"
    marker.write_text(json.dumps(rows, indent=2))
    marker.replace(best_dir / layout.LEADERBOARD_JSON)

    uploaded = None
    if config.storage_is_uri:
        uploaded = f"{config.experiment_path(name)}/{layout.BEST_DIR}"
        storage.upload_dir(best_dir, uploaded)

    log("leaderboard (best val neg-ELBO in nats per image):\n" + format_table(rows))
    if best is not None:
        values = ", ".join(f"{n} {BY_NAME[n].format(best[n])}" for n in BY_NAME)
        log(f"best trial {best['trial_id']} ({best['origin']}; {values}), best round {best['best_round']}: val "
            f"{best['best_val_neg_elbo']:.2f} nats, test {test_metrics['test_neg_elbo']:.2f} nats (recon "
            f"{test_metrics['test_recon']:.2f} + KL {test_metrics['test_kl']:.2f}, "
            f"{test_metrics['test_active_units']:.0f} active units), test IWAE (k={test_metrics['iwae_k']}) "
            f"{test_metrics['test_iwae']:.2f} +- {test_metrics['test_iwae_se']:.2f}")
    else:
        log("no trial left a checkpoint: nothing to serve as the best model")
    log("importance (optuna.importance, for best val neg-ELBO): "
        + (", ".join(f"{k} {v:.2f}" for k, v in importances.items()) or "not enough finished trials"))
    log(f"exported {best_dir} in {export_s:.0f} s{' and uploaded it to ' + uploaded if uploaded else ''}")
    return ExportSummary(best_dir, rows, best, test_metrics, curve, front, uploaded, export_s)


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
