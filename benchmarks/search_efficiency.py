"""Search efficiency at an equal budget: the article's grid versus random search versus TPE + ASHA.

All three run in one process, on the same data split and seed, and are charged in trial-epochs
(one epoch of one trial). The budget is B = 5 * E, what the article's grid costs:

(a) grid: the article's five (latent, reparam) pairs (32,4) ... (512,64) at lr 3e-4 and batch 128,
    E epochs each, no early stopping;
(b) random: Optuna's RandomSampler over the product's default search space, no early stopping, B / E
    trials of E epochs; like (c) it evaluates the article's best point (512, 64, lr 3e-4) first;
(c) tpe: the product's default search (TPE + ASHA, SearchConfig defaults) with max_epochs E and more
    trials than B can pay for; only its first B trial-epochs are counted (see below).

Accounting. Every trial reports once per epoch. The reports of all trials are put in the order they
happened and numbered 1, 2, ...: the n-th report means n trial-epochs were spent. Tune's ``timestamp``
is whole seconds, so each report is placed at ``start + time_total_s``, where the trial's start is
pinned down to well under a second by intersecting ``[timestamp - time_total_s, timestamp + 1 -
time_total_s)`` over its reports. "Best within B" is the lowest validation neg-ELBO among the first B
reports; its checkpoint (every epoch's checkpoint is kept for this, ``keep_checkpoints = E``) is
loaded through vae.checkpoint and evaluated on the held-out test split with vae.train.evaluate.
"Trial-epochs to the grid's best" is the first report count at which the best-so-far is at least as
good as the grid's best validation neg-ELBO.

    VAESEARCH_DATA_DIR=../shared/mnist python benchmarks/search_efficiency.py --epochs 20
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GRID_TRIALS = 5  # the article's five pairs: the budget is what they cost
METHODS = ("grid", "random", "tpe")
LABELS = {"grid": "article grid (5 pairs, lr 3e-4)", "random": "random search", "tpe": "TPE + ASHA (product)"}


@dataclass(frozen=True)
class Report:
    """One epoch of one trial, placed on a common clock."""

    at: float  # estimated wall-clock time of the report (s since the epoch)
    trial_id: str
    epoch: int
    val_neg_elbo: float


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="IDX folder (default: $VAESEARCH_DATA_DIR)")
    parser.add_argument("--epochs", type=int, default=20, help="E: epochs per grid trial; budget B = 5 E")
    parser.add_argument("--tpe-trials", type=int, default=None,
                        help="trials TPE + ASHA may start (default 6 per grid trial = 30; only B trial-epochs count)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-warm-start", action="store_true",
                        help="random and TPE do not start from the article's best point")
    parser.add_argument("--storage", default=None, help="experiment folder (default: a temporary one, removed)")
    parser.add_argument("--out", default=str(HERE / "out" / "search_efficiency.json"))
    parser.add_argument("--results", default=str(HERE / "results" / "search_efficiency.json"))
    parser.add_argument("--png", default=str(HERE / "out" / "search_efficiency.png"))
    parser.add_argument("--docs-png", default=str(REPO / "docs" / "search_efficiency.png"))
    return parser.parse_args(argv)


# --- accounting ----------------------------------------------------------------------------------


def trial_reports(result: Any) -> list[Report]:
    """The per-epoch reports of one trial (a ray.tune.Result), on the common clock."""
    frame = result.metrics_dataframe
    if frame is None or "val_neg_elbo" not in frame or not len(frame):
        return []
    stamps = frame["timestamp"].astype(float).tolist()
    totals = frame["time_total_s"].astype(float).tolist()
    low = max(s - t for s, t in zip(stamps, totals, strict=True))
    high = min(s + 1.0 - t for s, t in zip(stamps, totals, strict=True))
    start = (low + high) / 2 if high > low else low
    trial_id = str(frame["trial_id"].iloc[0])
    return [Report(start + t, trial_id, int(e), float(v))
            for t, e, v in zip(totals, frame["epoch"], frame["val_neg_elbo"], strict=True)]


def ordered_reports(results: Any) -> list[Report]:
    reports = [r for result in results for r in trial_reports(result)]
    return sorted(reports, key=lambda r: r.at)


def best_so_far(reports: list[Report]) -> list[float]:
    curve, best = [], math.inf
    for report in reports:
        if math.isfinite(report.val_neg_elbo):
            best = min(best, report.val_neg_elbo)
        curve.append(best)
    return curve


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """Trial-epochs spent when the best-so-far first reached ``target`` (None: never)."""
    return next((n for n, value in enumerate(curve, 1) if value <= target + 1e-9), None)


def checkpoint_of(results: Any, trial_id: str, epoch: int) -> str:
    """The local folder of ``trial_id``'s checkpoint after ``epoch``."""
    for result in results:
        for checkpoint, metrics in result.best_checkpoints:
            if str(metrics.get("trial_id")) == trial_id and int(metrics.get("epoch", -1)) == epoch:
                return checkpoint.path
    raise LookupError(f"no checkpoint kept for trial {trial_id} epoch {epoch} (keep_checkpoints too small?)")


# --- one method ----------------------------------------------------------------------------------


def run_method(method: str, config: Any, budget: int, data: Any, seed: int) -> dict[str, Any]:
    from search.tuner import run_search
    from vae.checkpoint import load_checkpoint
    from vae.train import evaluate

    print(f"[{method}] {config.num_samples} trials, max {config.max_epochs} epochs, "
          f"{'ASHA' if config.early_stopping else 'no early stopping'}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    outcome = run_search(config, log=lambda _: None)
    wall_s = time.perf_counter() - start
    reports = ordered_reports(outcome.results)
    curve = best_so_far(reports)
    within = reports[:budget]
    best = min((r for r in within if math.isfinite(r.val_neg_elbo)), key=lambda r: r.val_neg_elbo)
    saved = load_checkpoint(checkpoint_of(outcome.results, best.trial_id, best.epoch))
    test = evaluate(saved.model, data.test.images, seed=seed)
    rows = {row["trial_id"]: row for row in outcome.leaderboard}
    hyper = rows[best.trial_id]
    trials_started = len({r.trial_id for r in within})
    exported = outcome.export.test_metrics.get("test_neg_elbo")
    print(f"[{method}] done in {wall_s:.0f} s: {len(reports)} trial-epochs, best within B val "
          f"{best.val_neg_elbo:.2f}, test {test['neg_elbo']:.2f}", file=sys.stderr, flush=True)
    return {
        "method": method, "label": LABELS[method], "searcher": config.searcher, "early_stopping": config.early_stopping,
        "warm_start": config.warm_start if config.searcher != "grid" else None,
        "trials_run": len(outcome.leaderboard), "trials_within_budget": trials_started,
        "trial_epochs_run": len(reports), "wall_s": wall_s,
        "best_val_neg_elbo": best.val_neg_elbo, "best_trial": best.trial_id, "best_epoch": best.epoch,
        "best_config": {k: hyper[k] for k in ("latent_width", "reparam_width", "lr", "batch_size", "parameters")},
        "test_neg_elbo": test["neg_elbo"], "test_recon": test["recon"], "test_kl": test["kl"],
        "test_active_units": test["active_units"],
        "exported_best_trial": outcome.export.best["trial_id"] if outcome.export.best else None,
        "exported_test_neg_elbo": exported,
        "best_val_neg_elbo_all_epochs": min(curve) if curve else None,
        "curve": curve,
        "statuses": {s: sum(r["status"] == s for r in outcome.leaderboard)
                     for s in ("TERMINATED", "EARLY_STOPPED", "ERROR")},
        "leaderboard": [{k: row[k] for k in ("trial_id", "status", "latent_width", "reparam_width", "lr",
                                             "batch_size", "epochs", "best_val_neg_elbo")}
                        for row in outcome.leaderboard],
    }


# --- output --------------------------------------------------------------------------------------


def plot(results: dict[str, dict[str, Any]], budget: int, grid_best: float, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for method in METHODS:
        curve = results[method]["curve"]
        ax.step(range(1, len(curve) + 1), curve, where="post", label=LABELS[method])
    ax.axhline(grid_best, color="k", linestyle="--", linewidth=1, label=f"grid's best val ({grid_best:.1f})")
    ax.axvline(budget, color="grey", linestyle=":", linewidth=1, label=f"budget B = {budget} trial-epochs")
    finite = [v for m in METHODS for v in results[m]["curve"] if math.isfinite(v)]
    ax.set_ylim(min(finite) - 3, min(max(finite), grid_best + 60))
    ax.set_xlabel("trial-epochs spent (all trials, in report order)")
    ax.set_ylabel("best val neg-ELBO so far (nats)")
    ax.set_title("search efficiency on MNIST at an equal budget")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def print_table(results: dict[str, dict[str, Any]], budget: int, grid_best: float) -> None:
    print(f"\nbudget B = {budget} trial-epochs; grid's best val neg-ELBO {grid_best:.2f} nats\n")
    print("| method | trials (within B) | best val neg-ELBO | test neg-ELBO | trial-epochs to grid's best "
          "| best config (latent, reparam, lr, batch) | wall time |")
    print("|---|---:|---:|---:|---:|---|---:|")
    for method in METHODS:
        r = results[method]
        c = r["best_config"]
        reach = r["trial_epochs_to_grid_best"]
        print(f"| {r['label']} | {r['trials_within_budget']} | {r['best_val_neg_elbo']:.2f} | {r['test_neg_elbo']:.2f} "
              f"| {reach if reach is not None else 'not reached'} | {c['latent_width']}, {c['reparam_width']}, "
              f"{c['lr']:.2g}, {c['batch_size']} | {r['wall_s']:.0f} s |")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from search.config import ConfigError, SearchConfig
    from search.space import ARTICLE_GRID
    from vae.data import DataError, load_splits

    if args.epochs < 2:
        print("error: --epochs must be at least 2 (ASHA's grace period)", file=sys.stderr)
        return 2
    budget = GRID_TRIALS * args.epochs
    data_dir = args.data_dir or os.environ.get("VAESEARCH_DATA_DIR")
    try:
        data = load_splits("mnist", data_dir, seed=args.seed, log_fn=lambda m: print(m, file=sys.stderr))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    storage = Path(args.storage).absolute() if args.storage else Path(tempfile.mkdtemp(prefix="vaesearch-eff-"))
    run_id = time.strftime("%Y%m%d-%H%M%S")
    common = {
        "max_epochs": args.epochs, "max_concurrent": 2, "cpus_per_trial": 1, "num_cpus": 2,
        "data_dir": str(Path(data_dir).absolute()) if data_dir else None, "storage": str(storage),
        "seed": args.seed, "wandb_mode": "disabled", "verbose": 0, "keep_checkpoints": args.epochs,
    }
    warm = not args.no_warm_start
    try:
        base = SearchConfig(**common)
        tpe_trials = args.tpe_trials or 6 * GRID_TRIALS
        configs = {
            # Batch 128 written out: the grid points carry no batch size, and the searcher would draw one.
            "grid": SearchConfig(**common, name=f"grid-{run_id}", searcher="grid", early_stopping=False,
                                 grid=tuple({**p, "batch_size": 128} for p in ARTICLE_GRID)),
            "random": SearchConfig(**common, name=f"random-{run_id}", searcher="random", early_stopping=False,
                                   warm_start=warm, trials=budget // args.epochs),
            "tpe": SearchConfig(**common, name=f"tpe-{run_id}", searcher="tpe", warm_start=warm, trials=tpe_trials),
        }
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import ray
    import torch

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    try:
        results = {m: run_method(m, configs[m], budget, data, args.seed) for m in METHODS}
    finally:
        ray.shutdown()
        if not args.storage:
            shutil.rmtree(storage, ignore_errors=True)
    total_s = time.perf_counter() - started

    grid_best = results["grid"]["best_val_neg_elbo"]
    for r in results.values():
        r["trial_epochs_to_grid_best"] = epochs_to_reach(r["curve"][:budget], grid_best)
    tpe, grid = results["tpe"], results["grid"]
    reach = tpe["trial_epochs_to_grid_best"]
    targets = {
        "tpe_reaches_grid_best_within_third_of_budget": reach is not None and reach <= budget / 3,
        "tpe_test_at_least_2_nats_better_than_grid": grid["test_neg_elbo"] - tpe["test_neg_elbo"] >= 2.0,
    }
    headline = {
        "budget_trial_epochs": budget, "epochs_per_grid_trial": args.epochs, "grid_best_val_neg_elbo": grid_best,
        "methods": {m: {k: results[m][k] for k in ("label", "trials_within_budget", "best_val_neg_elbo",
                                                    "test_neg_elbo", "trial_epochs_to_grid_best", "best_config",
                                                    "wall_s")} for m in METHODS},
        "tpe_test_gain_over_grid_nats": grid["test_neg_elbo"] - tpe["test_neg_elbo"],
        "tpe_fraction_of_budget_to_grid_best": reach / budget if reach is not None else None,
        "targets_met": targets,
    }
    report = {
        "environment": {"torch": torch.__version__, "ray": ray.__version__, "python": platform.python_version(),
                        "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg(), "data": data.describe()},
        "settings": {"epochs_per_grid_trial": args.epochs, "budget_trial_epochs": budget, "seed": args.seed,
                     "tpe_trials": tpe_trials, "warm_start_random_and_tpe": warm, "max_concurrent": 2,
                     "cpus_per_trial": 1, "grace_period": base.grace_period,
                     "reduction_factor": base.reduction_factor, "space": base.space.to_dict()},
        "total_wall_s": total_s, **headline, "details": results,
    }
    print_table(results, budget, grid_best)
    print(f"\nTPE + ASHA: grid's best after {reach} of {budget} trial-epochs "
          f"({'n/a' if reach is None else f'{reach / budget:.0%}'} of the grid's cost); test neg-ELBO "
          f"{headline['tpe_test_gain_over_grid_nats']:+.2f} nats better than the grid. Random and TPE "
          f"{'start from' if warm else 'do not get'} the article's best point. Targets: {targets}")
    print(f"total {total_s:.0f} s")

    for path, content in ((Path(args.out), report), (Path(args.results), headline)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n")
    plot(results, budget, grid_best, Path(args.png))
    Path(args.docs_png).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.png, args.docs_png)
    print(f"wrote {args.out}, {args.results}, {args.png}, {args.docs_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
