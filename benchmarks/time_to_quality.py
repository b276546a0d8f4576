"""Time to quality: does the default search earn its time against the best known recipe trained alone for it?

One data set per run (``--dataset mnist``: the offline 8000/1000/1000 MNIST split; ``--dataset fashion-mnist``: the
full Fashion-MNIST, 54,000 / 6,000 / 10,000), one process, the same 2 cores throughout:

(a) search: the default ``python -m search.run --trials 20`` (SearchConfig's defaults on that data set, through
    ``search.tuner.run_search``, W&B in its default mode). T is its wall time from the call to the end of the
    export (Ray start, data, every trial, test split, IWAE, plots). Figures: the served model's test neg-ELBO
    and IWAE (with its standard error), where the top three trials came from (a known point or the searcher),
    the trials' statuses, and the export's share of T.
(b) the same search with ``warm_start=False`` (no known points first), with its own wall time.
(c) anchors, one after another: each known recipe (search.space.KNOWN_POINTS: the 16-channel convolutional
    256/32 at lr 1e-3, batch 64; the article's 512/64 at 3e-4; pytorch/examples' 400/20 at 1e-3, batch 128)
    trained alone by ``vae.train.fit`` with torch on 2 threads for T seconds: rounds of the search's size, the
    cosine schedule sized to T (fit's deadline re-plans it to end by then), keeping its best round by
    validation (``restore_best``); then its test neg-ELBO and IWAE as the export computes them (not charged
    to T, as the search's export is).

Writes benchmarks/results/time_to_quality.json (headline; each run replaces its data set's entry and keeps the
other's) and benchmarks/out/time_to_quality.json (with every curve), and docs/time_to_quality_<dataset>.png:
the search's best-so-far validation neg-ELBO against wall time, and each anchor's validation curve.

    .venv/bin/python benchmarks/time_to_quality.py --dataset mnist --data-dir ../shared/mnist
    .venv/bin/python benchmarks/time_to_quality.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist
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
from pathlib import Path
from typing import Any

from reporting import add_output_args

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from search.config import DEFAULT_TRIALS, SearchConfig  # noqa: E402
from search.export import SUMMARY_JSON  # noqa: E402
from search.hyperparams import config_fields, plain_values  # noqa: E402
from search.space import KNOWN_POINTS, model_config  # noqa: E402
from search.tracking import default_wandb_mode  # noqa: E402
from vae.config import TrainConfig  # noqa: E402
from vae.data import DATASETS, load_splits  # noqa: E402
from vae.iwae import iwae_within  # noqa: E402
from vae.train import evaluate, fit  # noqa: E402

ANCHOR_THREADS = 2
TARGET_NATS = 1.0  # the search must serve a model at least this much better than the best anchor
WALL_LIMIT_S = {"mnist": 600.0, "fashion-mnist": 900.0}
RESULTS = HERE / "results" / "time_to_quality.json"


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run_search_timed(dataset: str, data_dir: str, storage: str, name: str, trials: int, warm_start: bool,
                     time_budget_s: float | None) -> dict[str, Any]:
    from search.tuner import run_search

    config = SearchConfig(trials=trials, dataset=dataset, data_dir=data_dir, storage=storage, name=name,
                          wandb_mode=default_wandb_mode(), warm_start=warm_start, verbose=0)
    if time_budget_s is not None:
        config = config.replace(time_budget_s=time_budget_s)
    load_before = load_average()
    started = time.time()
    outcome = run_search(config, log=lambda m: print(m, flush=True))
    wall_s = time.time() - started
    summary = json.loads((outcome.best_dir / SUMMARY_JSON).read_text())
    curve = [(round(c["reported_at"] - started, 2), c["best_val_neg_elbo"]) for c in outcome.export.curve]
    best = outcome.export.best or {}
    rows = outcome.leaderboard
    return {
        "test_neg_elbo": summary.get("test_neg_elbo"), "test_iwae": summary.get("test_iwae"),
        "test_iwae_se": summary.get("test_iwae_se"), "iwae_images": summary.get("iwae_images"),
        "iwae_k": summary.get("iwae_k"), "best_val_neg_elbo": summary.get("best_val_neg_elbo"),
        "wall_s": round(wall_s, 1), "export_s": summary.get("export_s"),
        "export_share": round(summary.get("export_s", 0.0) / wall_s, 3), "stop_reason": outcome.stop_reason,
        "top3_from": summary.get("top3_from"), "best_origin": summary.get("best_origin"),
        "trials_reported": len(rows), "trials_without_results": summary.get("trials_without_results"),
        "trials_past_first_rung": sum(1 for r in rows if r["rounds"] > config.grace_period),
        "trial_rounds": summary.get("trial_rounds"), "statuses": summary.get("statuses"),
        "best": {k: best.get(k) for k in ("trial_id", *config.space.searched(), "rounds", "best_round", "epochs",
                                          "parameters")},
        "time_budget_s": config.time_budget_s, "max_rounds": config.max_rounds,
        "round_images": summary["round_images"],  # the images per round the trials ran (the data's, when unset)
        "grace_period": config.grace_period, "rungs": list(config.rungs), "space": config.space.to_dict(),
        "load_average_before": load_before, "load_average_after": load_average(), "curve": curve,
    }


def run_anchor(name: str, point: dict[str, Any], data: Any, budget_s: float, search: dict[str, Any],
               seed: int = 0) -> dict[str, Any]:
    """One known recipe trained alone for ``budget_s`` seconds on ANCHOR_THREADS threads."""
    torch.set_num_threads(ANCHOR_THREADS)
    values = {**plain_values(), **point, "lr_schedule": "cosine"}
    train_config = TrainConfig(**config_fields(values, "train"), rounds=100_000, round_images=search["round_images"],
                               val_images=2000, seed=seed)
    load_before = load_average()
    started = time.time()
    result = fit(model_config(values), train_config, data, restore_best=True, deadline=started + budget_s,
                 device=torch.device("cpu"))
    wall_s = time.time() - started
    test = evaluate(result.model, data.test.images, seed=seed)
    bound = iwae_within(result.model, data.test.images, k=search["iwae_k"], seconds=0.05 * search["time_budget_s"],
                        seed=seed)
    history = result.history
    print(f"{name}: {len(history)} rounds ({history[-1]['epochs']:.1f} epochs) in {wall_s:.0f} s, best round "
          f"{result.best_round} (val {result.best_val_neg_elbo:.2f}), test neg-ELBO {test['neg_elbo']:.2f}, test "
          f"IWAE {bound.mean:.2f} +- {bound.standard_error:.2f}", flush=True)
    return {
        "name": name, **values, "threads": ANCHOR_THREADS, "test_neg_elbo": test["neg_elbo"],
        "test_iwae": bound.mean, "test_iwae_se": bound.standard_error, "iwae_images": bound.images,
        "best_val_neg_elbo": result.best_val_neg_elbo, "wall_s": round(wall_s, 1), "rounds": len(history),
        "epochs": round(history[-1]["epochs"], 2), "best_round": result.best_round,
        "load_average_before": load_before, "load_average_after": load_average(),
        "curve": [(round(h["elapsed_s"], 2), h["val_neg_elbo"]) for h in history],
    }


def plot(dataset: str, search: dict[str, Any], anchors: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.step([c[0] for c in search["curve"]], [c[1] for c in search["curve"]], where="post", lw=2, c="C3",
            label=f"search, best so far (test {search['test_neg_elbo']:.1f})")
    for i, anchor in enumerate(anchors):
        ax.plot([c[0] for c in anchor["curve"]], [c[1] for c in anchor["curve"]], lw=1, alpha=0.8, c=f"C{i}",
                label=f"{anchor['name']} alone ({anchor['epochs']:g} epochs, test {anchor['test_neg_elbo']:.1f})")
    ax.axvline(search["wall_s"], c="grey", ls=":", label=f"T = {search['wall_s']:.0f} s")
    lows = [c[1] for c in search["curve"]] + [c[1] for a in anchors for c in a["curve"]]
    if lows:
        ax.set_ylim(min(lows) - 1, min(lows) + 25)
    ax.set_xlabel("wall time (s), 2 CPU cores")
    ax.set_ylabel("validation neg-ELBO (nats per image)")
    ax.set_title(f"{dataset}: the default search vs the known recipes alone", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def without_curves(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_curves(v) for k, v in value.items() if k != "curve"}
    if isinstance(value, list):
        return [without_curves(v) for v in value]
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    parser.add_argument("--data-dir", default=os.environ.get("VAESEARCH_DATA_DIR"),
                        help="the data set's IDX folder (default $VAESEARCH_DATA_DIR)")
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS)
    parser.add_argument("--time-budget", type=float, default=None,
                        help="override the search's time budget (default: the product's default); for a dry run")
    add_output_args(parser, "time_to_quality")
    args = parser.parse_args()
    if not args.data_dir or not Path(args.data_dir).is_dir():
        print("error: --data-dir (or $VAESEARCH_DATA_DIR) must be the data set's IDX folder", file=sys.stderr)
        return 2
    data_dir = str(Path(args.data_dir).absolute())
    with tempfile.TemporaryDirectory(prefix="vaesearch-ttq-") as storage:
        search = run_search_timed(args.dataset, data_dir, storage, "search", args.trials, True, args.time_budget)
        cold = run_search_timed(args.dataset, data_dir, storage, "cold", args.trials, False, args.time_budget)
    data = load_splits(args.dataset, data_dir, seed=0)
    anchors = [run_anchor(name, point, data, search["wall_s"], search) for name, point in KNOWN_POINTS.items()]
    best_anchor = min(anchors, key=lambda a: a["test_neg_elbo"])
    margin = search["test_neg_elbo"] - best_anchor["test_neg_elbo"]
    entry = {
        "search": search, "anchors": anchors,
        "no_warm_start": {k: cold[k] for k in ("test_neg_elbo", "test_iwae", "wall_s", "top3_from", "best",
                                               "trials_reported", "statuses")},
        "target": {"search_minus_best_anchor_test_neg_elbo": round(margin, 2), "best_anchor": best_anchor["name"],
                   "goal": f"<= -{TARGET_NATS:g} nats with wall_s <= {WALL_LIMIT_S[args.dataset]:g}",
                   "met": bool(margin <= -TARGET_NATS and search["wall_s"] <= WALL_LIMIT_S[args.dataset]),
                   "missed_by_nats": round(max(0.0, margin + TARGET_NATS), 2)},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
        "load_average_end": load_average(),
    }
    plot(args.dataset, search, anchors, REPO / "docs" / f"time_to_quality_{args.dataset}.png")
    for path, content in ((Path(args.out), entry), (Path(args.results), without_curves(entry))):
        stored = json.loads(path.read_text()) if path.is_file() else {}
        datasets = stored.get("datasets", {}) if isinstance(stored.get("datasets"), dict) else {}
        datasets[args.dataset] = content
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"benchmark": "time_to_quality", "datasets": datasets}, indent=2) + "\n")
    print(f"search {search['test_neg_elbo']:.2f} vs best anchor ({best_anchor['name']}) "
          f"{best_anchor['test_neg_elbo']:.2f}: {margin:+.2f} nats; T = {search['wall_s']:.0f} s; "
          f"target {'met' if entry['target']['met'] else 'missed'}; wrote {args.results}")
    return 0 if math.isfinite(margin) else 1


if __name__ == "__main__":
    sys.exit(main())
