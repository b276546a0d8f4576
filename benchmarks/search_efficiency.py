"""Search efficiency at an equal budget: the article's grid versus random search versus TPE + ASHA.

All three run in one process, on the same data split and seed, and are charged in trial-epochs
(one epoch of one trial). The budget is B = 5 * E, what the article's grid costs:

(a) grid: the article's five (latent, reparam) pairs (32,4) ... (512,64) at lr 3e-4 and batch 128,
    E epochs each, no early stopping;
(b) random: Optuna's RandomSampler over the product's default search space, no early stopping, B / E
    trials of E epochs; like (c) it first evaluates the product's two warm-start baselines, the
    article's best point (512, 64, lr 3e-4) and pytorch/examples' VAE (400, 20, lr 1e-3);
(c) tpe: the product's default search (TPE + ASHA, SearchConfig defaults: 20 trials, grace period 2,
    reduction factor 3) with max_epochs E; 20 trials spend more than B, and only the first B
    trial-epochs are counted (see below). TPE models the space after max(5, min(10, trials // 4))
    startup trials (the two baselines, then random draws that with the same seed are the random
    search's), so within a small budget (c) differs from (b) by ASHA and by a few TPE-guided trials.

Accounting. Every trial reports once per epoch. The reports of all trials are put in the order they
happened and numbered 1, 2, ...: the n-th report means n trial-epochs were spent. Tune's ``timestamp``
is whole seconds, so each report is placed at ``start + time_total_s``, where the trial's start is
pinned down to well under a second by intersecting ``[timestamp - time_total_s, timestamp + 1 -
time_total_s)`` over its reports. "Best within B" is the lowest validation neg-ELBO among the first B
reports; its checkpoint (every improving epoch is checkpointed and kept for this, ``checkpoint_every = 1``,
``keep_checkpoints = E``) is
loaded through vae.checkpoint and evaluated on the held-out test split with vae.train.evaluate.
"Trial-epochs to the grid's best" is the first report count at which the best-so-far is at least as
good as the grid's best validation neg-ELBO.

One paired comparison per seed (``--seeds``; the seed sets the data split, the weight init and the
samplers), then the means: a single seed decides little, since within B the searchers try only a
dozen configurations.

    VAESEARCH_DATA_DIR=../shared/mnist python benchmarks/search_efficiency.py --epochs 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reporting import add_output_args, write_reports

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
GRID_TRIALS = 5  # the article's five pairs: the budget is what they cost
METHODS = ("grid", "random", "tpe")
LABELS = {"grid": "article grid (5 pairs, lr 3e-4)", "random": "random search", "tpe": "TPE + ASHA (product)"}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="IDX folder (default: $VAESEARCH_DATA_DIR)")
    parser.add_argument("--epochs", type=int, default=20, help="E: epochs per grid trial; budget B = 5 E")
    parser.add_argument("--tpe-trials", type=int, default=None,
                        help="trials TPE + ASHA may start (default: SearchConfig's, 20); only B trial-epochs count")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="one paired comparison per seed (data split, trial init, samplers)")
    parser.add_argument("--no-warm-start", action="store_true",
                        help="random and TPE do not start from the two baselines (article's best, pytorch/examples)")
    parser.add_argument("--storage", default=None, help="experiment folder (default: a temporary one, removed)")
    add_output_args(parser, "search_efficiency")
    parser.add_argument("--png", default=str(HERE / "out" / "search_efficiency.png"))
    parser.add_argument("--docs-png", default=str(REPO / "docs" / "search_efficiency.png"))
    return parser.parse_args(argv)


# --- accounting ----------------------------------------------------------------------------------


def best_so_far_curve(results: Any, config: Any) -> tuple[list[dict[str, Any]], list[float]]:
    """Every report of every trial in the order they came (search.leaderboard.best_so_far), and the best so far
    after each one."""
    from search.export import trial_record
    from search.leaderboard import best_so_far

    curve = best_so_far(trial_record(result, config, budget_over=False) for result in results)
    return curve, [c["best_val_neg_elbo"] for c in curve]


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """Trial-epochs spent when the best-so-far first reached ``target`` (None: never)."""
    return next((n for n, value in enumerate(curve, 1) if value <= target + 1e-9), None)


def checkpoint_of(results: Any, trial_id: str, round_: int) -> str:
    """The local folder of ``trial_id``'s checkpoint after round ``round_``."""
    for result in results:
        for checkpoint, metrics in result.best_checkpoints:
            if str(metrics.get("trial_id")) == trial_id and int(metrics.get("round", -1)) == round_:
                return checkpoint.path
    raise LookupError(f"no checkpoint kept for trial {trial_id} round {round_} (keep_checkpoints too small?)")


# --- one method ----------------------------------------------------------------------------------


def run_method(method: str, config: Any, budget: int, data: Any, seed: int) -> dict[str, Any]:
    from search.export import trial_record
    from search.live import STATUSES
    from search.tuner import run_search
    from vae.checkpoint import load_checkpoint
    from vae.train import evaluate

    print(f"[{method}] {config.num_samples} trials, max {config.max_rounds} rounds, "
          f"{'ASHA' if config.early_stopping else 'no early stopping'}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    outcome = run_search(config, log=lambda _: None)
    wall_s = time.perf_counter() - start
    reports, curve = best_so_far_curve(outcome.results, config)
    within = reports[:budget]
    best = within[-1]  # the best so far after B trial-rounds: which trial and round reported it
    records = {r.trial_id: r for r in (trial_record(t, config, budget_over=False) for t in outcome.results)}
    best_round = next(int(r["round"]) for r in records[best["trial_id"]].reports
                      if r["val_neg_elbo"] == best["best_val_neg_elbo"])
    saved = load_checkpoint(checkpoint_of(outcome.results, best["trial_id"], best_round))
    test = evaluate(saved.model, data.test.images, seed=seed)
    rows = {row["trial_id"]: row for row in outcome.leaderboard}
    hyper = rows[best["trial_id"]]
    trials_started = len({r["trial_id"] for r in within})
    exported = outcome.export.test_metrics.get("test_neg_elbo")
    print(f"[{method}] done in {wall_s:.0f} s: {len(reports)} trial-rounds, best within B val "
          f"{best['best_val_neg_elbo']:.2f}, test {test['neg_elbo']:.2f}", file=sys.stderr, flush=True)
    return {
        "method": method, "label": LABELS[method], "searcher": config.searcher, "early_stopping": config.early_stopping,
        "warm_start": config.warm_start if config.searcher != "grid" else None,
        "trials_run": len(outcome.leaderboard), "trials_within_budget": trials_started,
        "trial_epochs_run": len(reports), "wall_s": wall_s,
        "best_val_neg_elbo": best["best_val_neg_elbo"], "best_trial": best["trial_id"], "best_epoch": best_round,
        "best_config": {k: hyper[k] for k in ("latent_width", "reparam_width", "lr", "batch_size", "parameters")},
        "test_neg_elbo": test["neg_elbo"], "test_recon": test["recon"], "test_kl": test["kl"],
        "test_active_units": test["active_units"],
        "exported_best_trial": outcome.export.best["trial_id"] if outcome.export.best else None,
        "exported_test_neg_elbo": exported,
        "best_val_neg_elbo_all_epochs": min(curve) if curve else None,
        "curve": curve,
        "statuses": {s: sum(r["status"] == s for r in outcome.leaderboard) for s in STATUSES},
        "leaderboard": [{k: row[k] for k in ("trial_id", "status", "latent_width", "reparam_width", "lr",
                                             "batch_size", "rounds", "best_val_neg_elbo")}
                        for row in outcome.leaderboard],
    }


# --- one seed ------------------------------------------------------------------------------------


def run_seed(seed: int, args: argparse.Namespace, budget: int, data_dir: str | None, storage: Path) -> dict[str, Any]:
    """The three methods on the data split and trial seeds of ``seed``; the comparison is paired."""
    from search.config import SearchConfig
    from search.space import ARTICLE_GRID
    from vae.data import load_splits

    data = load_splits("mnist", data_dir, seed=seed, log_fn=lambda m: print(m, file=sys.stderr))
    run_id = f"s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    common = common_settings(args, data_dir, storage, seed)
    warm = not args.no_warm_start
    configs = {
        # Batch 128 written out: the article's grid points carry no batch size, and the searcher would draw one.
        "grid": SearchConfig(**common, name=f"grid-{run_id}", searcher="grid", early_stopping=False,
                             grid=tuple({**p, "batch_size": 128} for p in ARTICLE_GRID)),
        "random": SearchConfig(**common, name=f"random-{run_id}", searcher="random", early_stopping=False,
                               warm_start=warm, trials=budget // args.epochs),
        "tpe": SearchConfig(**common, name=f"tpe-{run_id}", searcher="tpe", warm_start=warm, trials=args.tpe_trials),
    }
    results = {m: run_method(m, configs[m], budget, data, seed) for m in METHODS}
    grid_best = results["grid"]["best_val_neg_elbo"]
    for r in results.values():
        r["trial_epochs_to_grid_best"] = epochs_to_reach(r["curve"][:budget], grid_best)
    tpe, grid = results["tpe"], results["grid"]
    reach = tpe["trial_epochs_to_grid_best"]
    return {
        "seed": seed, "data": data.describe(), "grid_best_val_neg_elbo": grid_best,
        "tpe_test_gain_over_grid_nats": grid["test_neg_elbo"] - tpe["test_neg_elbo"],
        "tpe_fraction_of_budget_to_grid_best": reach / budget if reach is not None else None,
        "targets_met": {
            "tpe_reaches_grid_best_within_third_of_budget": reach is not None and reach <= budget / 3,
            "tpe_test_at_least_2_nats_better_than_grid": grid["test_neg_elbo"] - tpe["test_neg_elbo"] >= 2.0,
        },
        "methods": results,
    }


def common_settings(args: argparse.Namespace, data_dir: str | None, storage: Path, seed: int) -> dict[str, Any]:
    return {
        "max_rounds": args.epochs, "max_concurrent": 2, "cpus_per_trial": 1, "num_cpus": 2, "time_budget_s": None,
        "data_dir": str(Path(data_dir).absolute()) if data_dir else None, "storage": str(storage),
        "seed": seed, "wandb_mode": "disabled", "verbose": 0, "keep_checkpoints": args.epochs, "checkpoint_every": 1,
    }


def summarize(seeds: list[dict[str, Any]], budget: int) -> dict[str, Any]:
    """Means over seeds, and the targets judged per seed and on the means."""
    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    methods = {}
    for method in METHODS:
        rows = [s["methods"][method] for s in seeds]
        reaches = [r["trial_epochs_to_grid_best"] for r in rows]
        methods[method] = {
            "label": LABELS[method],
            "mean_best_val_neg_elbo": mean([r["best_val_neg_elbo"] for r in rows]),
            "mean_test_neg_elbo": mean([r["test_neg_elbo"] for r in rows]),
            "trial_epochs_to_grid_best": reaches,
            "per_seed": [{k: r[k] for k in ("trials_within_budget", "best_val_neg_elbo", "test_neg_elbo",
                                            "trial_epochs_to_grid_best", "best_config", "wall_s")} for r in rows],
        }
    gain = mean([s["tpe_test_gain_over_grid_nats"] for s in seeds])
    tpe_reaches = methods["tpe"]["trial_epochs_to_grid_best"]
    reached = sorted(r if r is not None else math.inf for r in tpe_reaches)
    median_reach = reached[len(reached) // 2] if len(reached) % 2 else (reached[len(reached) // 2 - 1]
                                                                      + reached[len(reached) // 2]) / 2
    return {
        "budget_trial_epochs": budget, "seeds": [s["seed"] for s in seeds],
        "grid_best_val_neg_elbo": [s["grid_best_val_neg_elbo"] for s in seeds],
        "methods": methods,
        "tpe_mean_test_gain_over_grid_nats": gain,
        "tpe_median_trial_epochs_to_grid_best": median_reach if math.isfinite(median_reach) else None,
        "targets_met": {
            "per_seed": {str(s["seed"]): s["targets_met"] for s in seeds},
            "median_reach_within_third_of_budget": median_reach <= budget / 3,
            "mean_test_gain_at_least_2_nats": gain >= 2.0,
        },
    }


# --- output --------------------------------------------------------------------------------------


def plot(seeds: list[dict[str, Any]], budget: int, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2 * len(seeds), 4.6))
    axes = fig.subplots(1, len(seeds), squeeze=False)[0]
    widths = {"grid": 1.6, "random": 3.2, "tpe": 1.6}  # random drawn wide: it often shares TPE's first trials
    for ax, seed in zip(axes, seeds, strict=True):
        results, grid_best = seed["methods"], seed["grid_best_val_neg_elbo"]
        for index, method in enumerate(METHODS):
            curve = results[method]["curve"]
            color = f"C{index}"
            ax.step(range(1, min(len(curve), budget) + 1), curve[:budget], where="post", color=color,
                    linewidth=widths[method], label=LABELS[method])
            if len(curve) > budget:  # spent beyond the budget: shown, not counted
                ax.step(range(budget, len(curve) + 1), curve[budget - 1:], where="post", color=color, alpha=0.45,
                        linewidth=1.2, linestyle="--", label=f"{LABELS[method]}, beyond B (not counted)")
        ax.axhline(grid_best, color="k", linestyle="--", linewidth=1, label=f"grid's best val ({grid_best:.1f})")
        ax.axvline(budget, color="grey", linestyle=":", linewidth=1, label=f"budget B = {budget} trial-epochs")
        finite = [v for m in METHODS for v in results[m]["curve"] if math.isfinite(v)]
        ax.set_ylim(min(finite) - 3, min(max(finite), grid_best + 60))
        ax.set_xlabel("trial-epochs spent (all trials, in report order)")
        ax.set_title(f"seed {seed['seed']}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("best val neg-ELBO so far (nats)")
    fig.suptitle("search efficiency on MNIST at an equal budget of trial-epochs")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def print_table(seeds: list[dict[str, Any]], summary: dict[str, Any], budget: int) -> None:
    print(f"\nbudget B = {budget} trial-epochs per method and seed (neg-ELBO in nats per image; lower is better)\n")
    print("| seed | method | trials in B | best val | test | trial-epochs to grid's best "
          "| best (latent, reparam, lr, batch) | wall time |")
    print("|---:|---|---:|---:|---:|---:|---|---:|")
    for seed in seeds:
        for method in METHODS:
            r = seed["methods"][method]
            c = r["best_config"]
            reach = r["trial_epochs_to_grid_best"]
            print(f"| {seed['seed']} | {r['label']} | {r['trials_within_budget']} | {r['best_val_neg_elbo']:.2f} "
                  f"| {r['test_neg_elbo']:.2f} | {reach if reach is not None else 'not reached'} "
                  f"| {c['latent_width']}, {c['reparam_width']}, {c['lr']:.2g}, {c['batch_size']} "
                  f"| {r['wall_s']:.0f} s |")
    for method in METHODS:
        m = summary["methods"][method]
        print(f"| mean | {m['label']} | | {m['mean_best_val_neg_elbo']:.2f} | {m['mean_test_neg_elbo']:.2f} "
              f"| {', '.join(str(r) if r is not None else '-' for r in m['trial_epochs_to_grid_best'])} | | |")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    from search.config import ConfigError, SearchConfig
    from vae.data import DataError, load_splits

    if args.epochs < 2:
        print("error: --epochs must be at least 2 (ASHA's grace period)", file=sys.stderr)
        return 2
    if not args.seeds or len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        print("error: --seeds must be distinct integers >= 0", file=sys.stderr)
        return 2
    budget = GRID_TRIALS * args.epochs
    data_dir = args.data_dir or os.environ.get("VAESEARCH_DATA_DIR")
    storage = Path(args.storage).absolute() if args.storage else Path(tempfile.mkdtemp(prefix="vaesearch-eff-"))
    try:
        load_splits("mnist", data_dir, seed=args.seeds[0], log_fn=lambda _: None)
        base = SearchConfig(**common_settings(args, data_dir, storage, args.seeds[0]), trials=args.tpe_trials)
    except (DataError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    import ray
    import torch

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    started = time.perf_counter()
    try:
        seeds = [run_seed(seed, args, budget, data_dir, storage) for seed in args.seeds]
    finally:
        ray.shutdown()
        if not args.storage:
            shutil.rmtree(storage, ignore_errors=True)
    total_s = time.perf_counter() - started

    summary = summarize(seeds, budget)
    warm = not args.no_warm_start
    headline = {"epochs_per_grid_trial": args.epochs, "tpe_trials": base.num_samples,
                "warm_start_random_and_tpe": warm, "total_wall_s": total_s, **summary}
    report = {
        "environment": {"torch": torch.__version__, "ray": ray.__version__, "python": platform.python_version(),
                        "cpus": os.cpu_count(), "load_avg_at_end": os.getloadavg()},
        "settings": {"epochs_per_grid_trial": args.epochs, "budget_trial_epochs": budget, "seeds": args.seeds,
                     "tpe_trials": base.num_samples, "warm_start_random_and_tpe": warm, "max_concurrent": 2,
                     "cpus_per_trial": 1, "grace_period": base.grace_period,
                     "reduction_factor": base.reduction_factor, "space": base.space.to_dict()},
        "total_wall_s": total_s, "summary": summary, "per_seed": seeds,
    }
    print_table(seeds, summary, budget)
    for seed in seeds:
        spent = seed["methods"]["tpe"]["trial_epochs_run"]
        if spent < budget:
            print(f"note: seed {seed['seed']}: TPE + ASHA spent only {spent} of {budget} trial-epochs "
                  "(raise --tpe-trials)")
    print(f"\nTPE + ASHA vs the grid: test neg-ELBO {summary['tpe_mean_test_gain_over_grid_nats']:+.2f} nats "
          f"better on average; trial-epochs to the grid's best: "
          f"{summary['methods']['tpe']['trial_epochs_to_grid_best']} of {budget} per seed. Random and TPE "
          f"{'start from' if warm else 'do not get'} the two baselines. Targets: {summary['targets_met']}")
    print(f"total {total_s:.0f} s")

    write_reports(args.out, report, args.results, headline)
    plot(seeds, budget, Path(args.png))
    Path(args.docs_png).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.png, args.docs_png)
    print(f"wrote {args.png} and {args.docs_png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
