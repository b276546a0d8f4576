"""Time to quality: the default search against the two known recipes given the same wall time.

One run, one process, one data split (vae.data's seeded 8000/1000/1000 split of the offline MNIST):

(a) search: the default ``python -m search.run --trials 20`` (SearchConfig defaults, through
    ``search.tuner.run_search``, W&B in its default mode). T is its wall time from the call to the end of
    the export (Ray start, data, all trials, test split, IWAE, plots). Figures: the served model's test
    neg-ELBO and test IWAE (k = 1000), and from the trials' own timings the share of the search's
    worker time (T x parallel trial slots) that was not spent training or evaluating.
(b) anchors, one after another on the same cores (torch with 2 threads): the pytorch/examples recipe
    (400/20, Adam 1e-3, batch 128) and the article's best (512/64, Adam 3e-4, batch 128), each trained by
    ``vae.train.fit`` for as many epochs as fit in T (``time_budget_s=T``), keeping its best epoch by
    validation (``restore_best``); then test neg-ELBO and test IWAE (k = 1000) of that epoch's weights.
    Their test evaluation is not charged to T (the search's is).

Writes benchmarks/results/time_to_quality.json (headline) and benchmarks/out/time_to_quality.json (with
every curve), and docs/time_to_quality.png: the search's best-so-far validation neg-ELBO against wall time,
and each anchor's validation curve on the same axes.

``--ablate conv|depth|schedule|warmup`` runs only a search with that dimension removed from the default space
(no convolutional stem / depth fixed 1 / constant lr only / no KL warm-up) and adds it to the results file under
"ablations".

    VAESEARCH_DATA_DIR=../shared/mnist python benchmarks/time_to_quality.py
    VAESEARCH_DATA_DIR=../shared/mnist python benchmarks/time_to_quality.py --ablate depth
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from reporting import add_output_args, write_reports

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from search.config import DEFAULT_TRIALS, SearchConfig  # noqa: E402
from search.space import ARTICLE_BEST, PYTORCH_EXAMPLE, SearchSpace  # noqa: E402
from search.tracking import default_wandb_mode  # noqa: E402
from vae.config import ModelConfig, TrainConfig  # noqa: E402
from vae.data import load_splits  # noqa: E402
from vae.iwae import DEFAULT_K, iwae  # noqa: E402
from vae.train import evaluate, fit  # noqa: E402

ANCHORS = (("pytorch/examples 400/20, lr 1e-3", PYTORCH_EXAMPLE), ("article best 512/64, lr 3e-4", ARTICLE_BEST))
ABLATIONS = {
    "conv": {"conv_channels": (0,)},
    "depth": {"depth": (1, 1)},
    "schedule": {"lr_schedule": ("constant",)},
    "warmup": {"kl_warmup_epochs": (0, 0)},
}
ANCHOR_THREADS = 2
PNG = REPO / "docs" / "time_to_quality.png"


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run_default_search(data_dir: str, storage: str, trials: int, space: SearchSpace,
                       time_budget_s: float | None = None) -> dict[str, Any]:
    from search.tuner import run_search

    config = SearchConfig(trials=trials, data_dir=data_dir, storage=storage, name="search",
                          wandb_mode=default_wandb_mode(), space=space, verbose=0)
    if time_budget_s is not None:
        config = config.replace(time_budget_s=time_budget_s)
    load_before = load_average()
    started = time.time()
    outcome = run_search(config, log=lambda m: print(m, flush=True))
    wall_s = time.time() - started
    reports = []
    trained_s = setup_s = checkpoint_s = 0.0
    for result in outcome.results:
        frame = result.metrics_dataframe
        if frame is None or "val_neg_elbo" not in frame:
            continue
        reports += [(float(t) - started, float(v)) for t, v in zip(frame["reported_at"], frame["val_neg_elbo"],
                                                                    strict=True)]
        trained_s += float(frame["train_time_s"].sum() + frame["val_time_s"].sum())
        setup_s += float(frame["setup_s"].iloc[0])
        if "checkpoint_write_s" in frame:
            checkpoint_s += float(frame["checkpoint_write_s"].fillna(0).sum())
    reports.sort()
    curve, best = [], math.inf
    for at, value in reports:
        best = min(best, value) if math.isfinite(value) else best
        curve.append((round(at, 2), best))
    slots = int(config.num_cpus or os.cpu_count() or 1) // config.cpus_per_trial
    test = outcome.export.test_metrics
    row = outcome.export.best or {}
    summary = json.loads((outcome.best_dir / "summary.json").read_text())
    importance = json.loads((outcome.best_dir / "importance.json").read_text())["importances"]
    return {
        "test_neg_elbo": test.get("test_neg_elbo"), "test_iwae": test.get("test_iwae"), "iwae_k": test.get("iwae_k"),
        "best_val_neg_elbo": row.get("best_val_neg_elbo"), "wall_s": round(wall_s, 1),
        "trials_run": len(outcome.results), "trials_asked": trials, "trial_epochs": len(reports),
        "statuses": summary["statuses"],
        "best": {k: row.get(k) for k in ("latent_width", "reparam_width", "depth", "conv_channels", "lr", "lr_schedule",
                                          "kl_warmup_epochs", "batch_size", "epochs", "best_epoch", "parameters")},
        "time_budget_s": config.time_budget_s, "max_epochs": config.max_epochs, "grace_period": config.grace_period,
        "reduction_factor": config.reduction_factor, "reuse_actors": config.reuse_actors,
        "keep_checkpoints": config.keep_checkpoints, "wandb_mode": config.wandb_mode,
        "overhead": {
            "parallel_trial_slots": slots, "worker_s": round(slots * wall_s, 1),
            "training_and_validation_s": round(trained_s, 1),
            "share_not_training": round(1 - trained_s / (slots * wall_s), 3),
            "trial_setup_s": round(setup_s, 1), "checkpoint_write_s": round(checkpoint_s, 1),
            "first_report_at_s": curve[0][0] if curve else None,
            "after_last_report_s": round(wall_s - curve[-1][0], 1) if curve else None,
        },
        "importance": importance, "space": config.space.to_dict(),
        "load_average_before": load_before, "load_average_after": load_average(), "curve": curve,
    }


def run_anchor(name: str, point: dict[str, Any], data: Any, budget_s: float, seed: int) -> dict[str, Any]:
    torch.set_num_threads(ANCHOR_THREADS)
    load_before = load_average()
    model_config = ModelConfig(point["latent_width"], point["reparam_width"])
    train_config = TrainConfig(lr=point["lr"], batch_size=128, epochs=100_000, seed=seed)
    result = fit(model_config, train_config, data, restore_best=True, time_budget_s=budget_s,
                 device=torch.device("cpu"))
    test = evaluate(result.model, data.test.images, seed=seed)
    test_iwae = iwae(result.model, data.test.images, k=DEFAULT_K, seed=seed)
    history = result.history
    print(f"{name}: {len(history)} epochs in {history[-1]['elapsed_s']:.0f} s, best epoch {result.best_epoch} "
          f"(val {result.best_val_neg_elbo:.2f}), test neg-ELBO {test['neg_elbo']:.2f}, test IWAE {test_iwae:.2f}",
          flush=True)
    return {
        "name": name, **point, "batch_size": 128, "threads": ANCHOR_THREADS,
        "test_neg_elbo": test["neg_elbo"], "test_iwae": test_iwae, "iwae_k": DEFAULT_K,
        "best_val_neg_elbo": result.best_val_neg_elbo, "epochs": len(history), "best_epoch": result.best_epoch,
        "train_s": round(history[-1]["elapsed_s"], 1),
        "load_average_before": load_before, "load_average_after": load_average(),
        "curve": [(round(h["elapsed_s"], 2), h["val_neg_elbo"]) for h in history],
    }


def plot(search: dict[str, Any], anchors: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.step([c[0] for c in search["curve"]], [c[1] for c in search["curve"]], where="post", lw=2, c="C3",
            label=f"search, best so far (test {search['test_neg_elbo']:.1f})")
    for i, anchor in enumerate(anchors):
        ax.plot([c[0] for c in anchor["curve"]], [c[1] for c in anchor["curve"]], lw=1, alpha=0.8, c=f"C{i}",
                label=f"{anchor['name']} (best epoch {anchor['best_epoch']}, test {anchor['test_neg_elbo']:.1f})")
    ax.axvline(search["wall_s"], c="grey", ls=":", label=f"T = {search['wall_s']:.0f} s")
    lows = [c[1] for c in search["curve"]] + [c[1] for a in anchors for c in a["curve"]]
    ax.set_ylim(min(lows) - 1, min(lows) + 15)
    ax.set_xlabel("wall time (s), 2 CPU cores")
    ax.set_ylabel("validation neg-ELBO (nats per image)")
    ax.set_title("time to quality: default search vs the known recipes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def headline(full: dict[str, Any]) -> dict[str, Any]:
    drop = {"curve"}
    out = {k: v for k, v in full.items() if k not in ("search", "anchors", "ablations")}
    if "search" in full:
        out["search"] = {k: v for k, v in full["search"].items() if k not in drop}
    if "anchors" in full:
        out["anchors"] = [{k: v for k, v in a.items() if k not in drop} for a in full["anchors"]]
    if "ablations" in full:
        out["ablations"] = {n: {k: v for k, v in a.items() if k not in drop} for n, a in full["ablations"].items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("VAESEARCH_DATA_DIR"),
                        help="offline MNIST folder (default $VAESEARCH_DATA_DIR)")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--ablate", choices=sorted(ABLATIONS), default=None,
                        help="run only a search without this dimension and add it to the results file")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="override the search's time budget (default: the product's default); for a dry run")
    parser.add_argument("--png", default=str(PNG), help=f"the figure (default {PNG.relative_to(REPO)})")
    add_output_args(parser, "time_to_quality")
    args = parser.parse_args()
    if not args.data_dir or not Path(args.data_dir).is_dir():
        print("error: --data-dir (or $VAESEARCH_DATA_DIR) must be the offline MNIST folder", file=sys.stderr)
        return 2
    data_dir = str(Path(args.data_dir).absolute())
    out_path = Path(args.out)
    full: dict[str, Any] = json.loads(out_path.read_text()) if args.ablate and out_path.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="vaesearch-ttq-") as storage:
        if args.ablate:
            space = replace(SearchSpace(), **ABLATIONS[args.ablate])
            full.setdefault("ablations", {})[args.ablate] = {
                "removed": args.ablate, **run_default_search(data_dir, storage, args.trials, space, args.time_budget)}
        else:
            machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
            full = {"benchmark": "time_to_quality", "machine": machine}
            search = run_default_search(data_dir, storage, args.trials, SearchSpace(), args.time_budget)
            data = load_splits("mnist", data_dir, seed=0)
            anchors = [run_anchor(name, point, data, search["wall_s"], seed=0) for name, point in ANCHORS]
            better = min(a["test_neg_elbo"] for a in anchors)
            full.update(search=search, anchors=anchors, target={
                "search_minus_better_anchor_test_neg_elbo": round(search["test_neg_elbo"] - better, 2),
                "goal": "<= -3 nats with wall_s <= 600",
                "met": bool(search["test_neg_elbo"] <= better - 3 and search["wall_s"] <= 600)})
            plot(search, anchors, Path(args.png))
            print(f"wrote {args.png}")
    full["load_average_end"] = load_average()
    write_reports(args.out, full, args.results, headline(full))
    return 0


if __name__ == "__main__":
    sys.exit(main())
