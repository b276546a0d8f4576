"""Turn a finished search (Tune's ResultGrid) into what a person and ``serve/`` use: the leaderboard,
the best model evaluated on the held-out test split, every finished trial's best checkpoint, the
Pareto front of loss versus parameter count, and plots. See search/layout.py for the folder layout.

Checkpoints are fetched through Ray's Checkpoint API (``as_directory``), so this works the same when
the experiment lives in a URI storage; best/ is then written locally (``./results/<name>/best``) and
uploaded next to the experiment.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter
from ray import tune

from search import layout, storage
from search.config import SearchConfig
from search.space import SearchSpace, hyperparameters, model_config
from search.trial_config import BEST_METRIC, METRIC, MODE
from vae.checkpoint import load_checkpoint, save_checkpoint
from vae.class_gaussians import fit_class_gaussians
from vae.config import TrainConfig
from vae.data import DATASETS, DataSplits
from vae.iwae import iwae
from vae.model import count_parameters
from vae.train import evaluate

SUMMARY_JSON = "summary.json"
PARETO_CSV = "pareto.csv"
CURVE_CSV = "curve.csv"
CURVE_PNG = "best_so_far.png"
SPACE_PNG = "trials_space.png"
PARETO_PNG = "pareto.png"
IMPORTANCE_PNG = "importance.png"
TERMINATED, EARLY_STOPPED, ERROR = "TERMINATED", "EARLY_STOPPED", "ERROR"


@dataclass
class ExportSummary:
    best_dir: Path  # local folder
    leaderboard: list[dict[str, Any]]
    best: dict[str, Any] | None  # the best leaderboard row
    test_metrics: dict[str, float]  # the best model on the test split
    curve: list[tuple[int, float]]  # (trial-epochs spent, best val neg-ELBO so far)
    pareto: list[dict[str, Any]] = field(default_factory=list)
    uploaded_to: str | None = None


# --- rows --------------------------------------------------------------------------------------


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
    while getattr(cause, "cause", None) is not None and cause.cause is not cause:  # RayTaskError / TuneError
        cause = cause.cause
    text = str(cause).strip().splitlines()
    message = next((line for line in reversed(text) if "Error" in line and ":" in line), text[-1] if text else "")
    return message if message.startswith(type(cause).__name__) else f"{type(cause).__name__}: {message}"


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def leaderboard_rows(results: tune.ResultGrid, config: SearchConfig) -> list[dict[str, Any]]:
    """One row per trial (LEADERBOARD_FIELDS), ranked by best val neg-ELBO, failed trials last."""
    rows = []
    for result in results:
        if not (result.config or {}).get("latent_width"):
            continue  # created but never started (the search's time budget ran out first)
        hyper = hyperparameters(result.config or {})
        metrics = result.metrics or {}
        frame = result.metrics_dataframe
        history = frame[frame[METRIC].notna()] if frame is not None and METRIC in frame else None
        best = history.loc[history[METRIC].idxmin()] if history is not None and len(history) else None
        epochs = int(metrics.get("epoch", 0))
        diverged = bool(metrics.get("diverged"))  # search.trainable: reported once, not retried
        status = ERROR if result.error or diverged else TERMINATED if epochs >= config.max_epochs else EARLY_STOPPED
        model = model_config(hyper)
        rows.append({
            "rank": None, "trial_id": trial_id_of(result), "status": status, "is_best": False,
            "latent_width": model.latent_width, "reparam_width": model.reparam_width, "depth": model.depth,
            "conv_channels": model.conv_channels,
            "lr": float(hyper["lr"]), "lr_schedule": str(hyper["lr_schedule"]),
            "kl_warmup_epochs": int(hyper["kl_warmup_epochs"]), "batch_size": int(hyper["batch_size"]),
            "best_val_neg_elbo": float(best[METRIC]) if best is not None else None,
            "last_val_neg_elbo": _finite(metrics.get(METRIC)),
            "epochs": epochs, "best_epoch": int(best["epoch"]) if best is not None else None,
            "time_s": round(float(metrics.get("time_total_s", 0.0)), 2),
            "parameters": count_parameters(model),
            "val_active_units": int(best["val_active_units"]) if best is not None else None,
            "node": f"{metrics['node_ip']}/{str(metrics.get('node_id', ''))[:8]}" if "node_ip" in metrics else None,
            "error": str(metrics["error"]) if diverged else error_line(result.error), "checkpoint": None,
        })
    rank_rows(rows)
    return rows


def rank_rows(rows: list[dict[str, Any]]) -> None:
    """Sort by best val neg-ELBO, failed trials and trials without a value last, and number the ranks."""
    rows.sort(key=lambda r: (r["status"] == ERROR or r["best_val_neg_elbo"] is None,
                             r["best_val_neg_elbo"] if r["best_val_neg_elbo"] is not None else math.inf))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank


def trial_epoch_curve(results: tune.ResultGrid) -> list[tuple[int, float]]:
    """Best val neg-ELBO so far after each trial-epoch, all trials' epochs in the order they were reported."""
    reports: list[tuple[float, float]] = []
    for result in results:
        frame = result.metrics_dataframe
        if frame is None or METRIC not in frame:
            continue
        clock = "reported_at" if "reported_at" in frame else "timestamp"
        reports.extend(zip(frame[clock].astype(float), frame[METRIC].astype(float), strict=True))
    curve, best = [], math.inf
    for spent, (_, value) in enumerate(sorted(reports, key=lambda r: r[0]), 1):
        best = min(best, value) if math.isfinite(value) else best
        curve.append((spent, best))
    return curve


def pareto_front(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials that no other trial beats on both parameter count and best val neg-ELBO (smallest first)."""
    finished = sorted((r for r in rows if r["status"] != ERROR and r["best_val_neg_elbo"] is not None),
                      key=lambda r: (r["parameters"], r["best_val_neg_elbo"]))
    front, best = [], math.inf
    for row in finished:
        if row["best_val_neg_elbo"] < best:
            front.append(row)
            best = row["best_val_neg_elbo"]
    return front


def format_leaderboard(rows: list[dict[str, Any]], top: int = 10) -> str:
    header = (f"{'#':>3} {'trial':<10} {'latent':>6} {'reparam':>7} {'depth':>5} {'conv':>4} {'lr':>9} {'sched':>8} "
              f"{'warmup':>6} {'batch':>5} {'val nats':>9} {'epochs':>6} {'time s':>7} {'status':<13}")
    lines = [header]
    for r in rows[:top]:
        val = f"{r['best_val_neg_elbo']:.2f}" if r["best_val_neg_elbo"] is not None else "-"
        lines.append(f"{r['rank']:>3} {r['trial_id']:<10} {r['latent_width']:>6} {r['reparam_width']:>7} "
                     f"{r['depth']:>5} {r['conv_channels']:>4} {r['lr']:>9.2e} {r['lr_schedule']:>8} "
                     f"{r['kl_warmup_epochs']:>6} {r['batch_size']:>5} {val:>9} {r['epochs']:>6} "
                     f"{r['time_s']:>7.1f} "
                     f"{r['status']:<13}{'  ' + r['error'] if r['error'] else ''}")
    if len(rows) > top:
        lines.append(f"... and {len(rows) - top} more in leaderboard.csv")
    return "\n".join(lines)


# --- files -------------------------------------------------------------------------------------


def _write_csv(path: Path, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _export_trial(result: tune.Result, row: dict[str, Any], config: SearchConfig, data: DataSplits,
                  destination: Path) -> dict[str, float]:
    """Copy the trial's best checkpoint as a vae.checkpoint (with test metrics, test examples and the class
    Gaussians fitted on the training split)."""
    checkpoint = result.get_best_checkpoint(BEST_METRIC, MODE) or result.checkpoint
    with checkpoint.as_directory() as directory:
        saved = load_checkpoint(directory)
    test = evaluate(saved.model, data.test.images, seed=config.seed)
    metrics = {**saved.meta.get("metrics", {}), **{f"test_{k}": v for k, v in test.items()}}
    train_config = saved.meta.get("train_config") or {}
    save_checkpoint(destination, saved.model, dataset=config.dataset, metrics=metrics,
                    train_config=TrainConfig(**train_config) if train_config else None,
                    extra={"trial_id": row["trial_id"], "status": row["status"], "epochs": row["epochs"]},
                    examples=data.test, class_gaussians=fit_class_gaussians(
                        saved.model, data.train.images, data.train.labels, len(DATASETS[config.dataset].class_names)))
    return metrics


def export_results(results: tune.ResultGrid, config: SearchConfig, name: str, data: DataSplits, *,
                   log: Callable[[str], None] = print) -> ExportSummary:
    rows = leaderboard_rows(results, config)
    by_id = {trial_id_of(r): r for r in results}
    best_dir = layout.best_dir(config.local_experiment_dir(name))
    trials_dir = best_dir / layout.TRIALS_DIR
    if trials_dir.exists():
        shutil.rmtree(trials_dir)
    trials_dir.mkdir(parents=True)

    test_by_trial: dict[str, dict[str, float]] = {}
    for row in rows:
        result = by_id[row["trial_id"]]
        if row["status"] == ERROR or result.checkpoint is None:
            continue
        metrics = _export_trial(result, row, config, data, trials_dir / row["trial_id"])
        test_by_trial[row["trial_id"]] = metrics
        row["checkpoint"] = f"{layout.TRIALS_DIR}/{row['trial_id']}"
        if METRIC in metrics:
            # What is served is the checkpoint: a trial stopped by the time budget between two checkpoint
            # writes reported a better epoch than the one it saved, and is ranked by the saved one.
            row["best_val_neg_elbo"] = float(metrics[METRIC])
            row["best_epoch"] = int(metrics.get("epoch", row["best_epoch"] or 0))
    rank_rows(rows)

    best = next((r for r in rows if r["checkpoint"] is not None), None)
    test_metrics: dict[str, float] = {}
    if best is not None:
        best["is_best"] = True
        source = trials_dir / best["trial_id"]
        for item in source.iterdir():
            shutil.copy2(item, best_dir / item.name)
        test_metrics = {k: v for k, v in test_by_trial[best["trial_id"]].items() if k.startswith("test_")}
        # The tight likelihood figure, for the served model only (selection used validation alone).
        test_metrics["test_iwae"] = iwae(load_checkpoint(best_dir).model, data.test.images, k=config.iwae_k,
                                         seed=config.seed)
        test_metrics["iwae_k"] = config.iwae_k

    curve = trial_epoch_curve(results)
    front = pareto_front(rows)
    _write_csv(best_dir / layout.LEADERBOARD_CSV, rows, layout.LEADERBOARD_FIELDS)
    _write_csv(best_dir / PARETO_CSV, front, ("trial_id", "parameters", "best_val_neg_elbo", "latent_width",
                                              "reparam_width", "lr", "batch_size"))
    _write_csv(best_dir / CURVE_CSV, [{"trial_epochs": s, "best_val_neg_elbo": b} for s, b in curve],
               ("trial_epochs", "best_val_neg_elbo"))
    (best_dir / SUMMARY_JSON).write_text(json.dumps({
        "experiment": name, "experiment_path": config.experiment_path(name), "searcher": config.searcher,
        "early_stopping": config.early_stopping, "trials": len(rows), "trial_epochs": len(curve),
        "best_trial": best["trial_id"] if best else None,
        "best_val_neg_elbo": best["best_val_neg_elbo"] if best else None, **test_metrics,
        "statuses": {s: sum(r["status"] == s for r in rows) for s in (TERMINATED, EARLY_STOPPED, ERROR)},
        "space": config.space.to_dict(),
    }, indent=2))
    plot_curve(curve, best_dir / CURVE_PNG)
    plot_space(rows, best_dir / SPACE_PNG)
    plot_pareto(rows, front, best_dir / PARETO_PNG)
    importances = write_importances(rows, config.space, best_dir)
    # Last, and whole (renamed into place): leaderboard.json marks the export as done for readers (the app).
    marker = best_dir / f".{layout.LEADERBOARD_JSON}.tmp"
    marker.write_text(json.dumps(rows, indent=2))
    marker.replace(best_dir / layout.LEADERBOARD_JSON)

    uploaded = None
    if config.storage_is_uri:
        uploaded = f"{config.experiment_path(name)}/{layout.BEST_DIR}"
        storage.upload_dir(best_dir, uploaded)

    log("leaderboard (best val neg-ELBO in nats per image):\n" + format_leaderboard(rows))
    if best is not None:
        log(f"best trial {best['trial_id']}: latent {best['latent_width']}, reparam {best['reparam_width']}, "
            f"depth {best['depth']}, conv stem {best['conv_channels'] or 'none'}, "
            f"lr {best['lr']:.3g} {best['lr_schedule']}, "
            f"KL warm-up {best['kl_warmup_epochs']} epochs, batch {best['batch_size']}, "
            f"best epoch {best['best_epoch']}: val {best['best_val_neg_elbo']:.2f} nats, "
            f"test {test_metrics['test_neg_elbo']:.2f} nats (recon {test_metrics['test_recon']:.2f} + "
            f"KL {test_metrics['test_kl']:.2f}, {test_metrics['test_active_units']:.0f} active units), "
            f"test IWAE (k={config.iwae_k}) {test_metrics['test_iwae']:.2f} nats")
    else:
        log("no trial finished with a checkpoint: nothing to export as the best model")
    log("importance (optuna.importance, for best val neg-ELBO): "
        + (", ".join(f"{k} {v:.2f}" for k, v in importances.items()) or "not enough finished trials"))
    log(f"exported {best_dir}{' and uploaded it to ' + uploaded if uploaded else ''}")
    return ExportSummary(best_dir, rows, best, test_metrics, curve, front, uploaded)


# --- importances -------------------------------------------------------------------------------


def search_distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """The space's searched parameters as Optuna distributions (``reparam_width`` with its full range: the
    define-by-run clip to the latent width is per trial); fixed parameters are left out."""
    fixed = space.fixed()
    distributions: dict[str, optuna.distributions.BaseDistribution] = {
        "latent_width": optuna.distributions.IntDistribution(*space.latent_width, log=True),
        "reparam_width": optuna.distributions.IntDistribution(*space.reparam_width, log=True),
        "depth": optuna.distributions.IntDistribution(*space.depth),
        "conv_channels": optuna.distributions.CategoricalDistribution(list(space.conv_channels)),
        "lr": optuna.distributions.FloatDistribution(*space.lr, log=True),
        "lr_schedule": optuna.distributions.CategoricalDistribution(list(space.lr_schedule)),
        "kl_warmup_epochs": optuna.distributions.IntDistribution(*space.kl_warmup_epochs),
        "batch_size": optuna.distributions.CategoricalDistribution(list(space.batch_size)),
    }
    return {k: v for k, v in distributions.items() if k not in fixed and not v.single()}


def importance_study(rows: list[dict[str, Any]], space: SearchSpace) -> optuna.Study:
    """An in-memory Optuna study of the finished trials (value: best val neg-ELBO), built with Optuna's
    public API from the leaderboard, for ``optuna.importance``."""
    distributions = search_distributions(space)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(direction="minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for row in rows:
        if row["status"] == ERROR or row["best_val_neg_elbo"] is None:
            continue
        try:
            trial = optuna.trial.create_trial(params={k: row[k] for k in distributions}, distributions=distributions,
                                              value=row["best_val_neg_elbo"])
        except ValueError:
            continue  # a value outside the space (a resumed experiment whose space was changed)
        study.add_trial(trial)
    return study


def write_importances(rows: list[dict[str, Any]], space: SearchSpace, best_dir: Path) -> dict[str, float]:
    """Hyperparameter importances with ``optuna.importance.get_param_importances`` (its default evaluator,
    PED-ANOVA in Optuna 5: deterministic, and needs no scikit-learn, which fANOVA would) as importance.json
    and Optuna's bar chart importance.png; empty (and no PNG) when fewer than two trials finished or
    nothing was searched."""
    study = importance_study(rows, space)
    importances: dict[str, float] = {}
    if len(study.trials) >= 2 and search_distributions(space):
        importances = dict(optuna.importance.get_param_importances(study))
    (best_dir / layout.IMPORTANCE_JSON).write_text(json.dumps(
        {"method": "optuna.importance.get_param_importances (default evaluator)", "objective": "best_val_neg_elbo",
         "trials": len(study.trials), "importances": importances}, indent=2))
    if importances:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = optuna.visualization.matplotlib.plot_param_importances(study)
        ax.figure.set_size_inches(7, 4)
        ax.figure.tight_layout()
        ax.figure.savefig(best_dir / IMPORTANCE_PNG, dpi=110)
        import matplotlib.pyplot as plt

        plt.close(ax.figure)
    return importances


# --- plots -------------------------------------------------------------------------------------


def plot_curve(curve: list[tuple[int, float]], path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    if curve:
        ax.step([c[0] for c in curve], [c[1] for c in curve], where="post")
    ax.set_xlabel("trial-epochs spent")
    ax.set_ylabel("best val neg-ELBO so far (nats)")
    ax.set_title("search progress")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_space(rows: list[dict[str, Any]], path: Path) -> None:
    """The trials in (latent, reparam, lr), as three 2-D projections coloured by best val neg-ELBO."""
    ok = [r for r in rows if r["best_val_neg_elbo"] is not None and r["status"] != ERROR]
    failed = [r for r in rows if r not in ok]
    pairs = (("latent_width", "reparam_width"), ("latent_width", "lr"), ("reparam_width", "lr"))
    fig = Figure(figsize=(13, 4))
    axes = fig.subplots(1, 3)
    scatter = None
    for ax, (x, y) in zip(axes, pairs, strict=True):
        if ok:
            scatter = ax.scatter([r[x] for r in ok], [r[y] for r in ok], c=[r["best_val_neg_elbo"] for r in ok],
                                 cmap="viridis", s=40, edgecolors="k", linewidths=0.3)
        if failed:
            ax.scatter([r[x] for r in failed], [r[y] for r in failed], marker="x", c="red", label="failed")
            ax.legend(loc="best", fontsize=8)
        for name, axis, set_scale in ((x, ax.xaxis, ax.set_xscale), (y, ax.yaxis, ax.set_yscale)):
            if name == "lr":
                set_scale("log")
            else:  # widths: powers of two, labelled as plain numbers
                set_scale("log", base=2)
                axis.set_major_formatter(ScalarFormatter())
                axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    if scatter is not None:
        fig.colorbar(scatter, ax=list(axes), label="best val neg-ELBO (nats)")
    fig.suptitle("trials in the search space (darker = lower loss)")
    fig.savefig(path, dpi=110)


def plot_pareto(rows: list[dict[str, Any]], front: list[dict[str, Any]], path: Path) -> None:
    ok = [r for r in rows if r["best_val_neg_elbo"] is not None and r["status"] != ERROR]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.scatter([r["parameters"] for r in ok], [r["best_val_neg_elbo"] for r in ok], s=20, alpha=0.6, label="trials")
    if front:
        ax.plot([r["parameters"] for r in front], [r["best_val_neg_elbo"] for r in front], "o-", c="C3",
                label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("best val neg-ELBO (nats)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
