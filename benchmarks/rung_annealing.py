"""Should a trial's cosine anneal at each of ASHA's rungs? The convolutional known point (256/32, 16-channel stem,
lr 1e-3, batch 64) trained for 90 rounds of 8000 images three ways, on the offline MNIST split:

* ``one cosine``: one decay over the 90 rounds (what the search does; the time budget can shorten it);
* ``restart 1.0``: segments ending at ASHA's rungs (10, 30) and at 90, each decaying to near zero and the next
  restarting at the full learning rate, so that the model is annealed wherever ASHA judges it;
* ``restart 0.5``: the same, each restart at half the previous peak.

Printed and written to benchmarks/results/rung_annealing.json: the validation neg-ELBO at rounds 10, 30 and 90
and the test neg-ELBO of the best round. The runs are quality figures, not timings: they run two at a time, one
thread each.

    VAESEARCH_DATA_DIR=../shared/mnist .venv/bin/python benchmarks/rung_annealing.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

VARIANTS = {"one cosine": {}, "restart 1.0": {"lr_segment_ends": (10, 30)},
            "restart 0.5": {"lr_segment_ends": (10, 30), "lr_restart": 0.5}}
MARKS = (10, 30, 90)


def run(name: str, data_dir: str) -> dict[str, Any]:
    import torch

    from search.hyperparams import config_fields, plain_values
    from search.space import CONV_RECIPE, model_config
    from vae.config import TrainConfig
    from vae.data import load_splits
    from vae.train import evaluate, fit

    torch.set_num_threads(1)
    data = load_splits("mnist", data_dir, seed=0, log_fn=lambda _m: None)
    values = {**plain_values(), **CONV_RECIPE}
    train = TrainConfig(**config_fields(values, "train"), rounds=max(MARKS), round_images=8000, val_images=2000,
                        **VARIANTS[name])
    result = fit(model_config(values), train, data, restore_best=True, device=torch.device("cpu"))
    val = {h["round"]: h["val_neg_elbo"] for h in result.history}
    return {"variant": name, **{f"val_at_{m}": round(val[m], 2) for m in MARKS},
            "best_round": result.best_round, "best_val": round(result.best_val_neg_elbo, 2),
            "test_neg_elbo": round(evaluate(result.model, data.test.images)["neg_elbo"], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("VAESEARCH_DATA_DIR"))
    parser.add_argument("--results", default=str(HERE / "results" / "rung_annealing.json"))
    args = parser.parse_args()
    if not args.data_dir:
        print("error: --data-dir (or $VAESEARCH_DATA_DIR) must be the offline MNIST folder", file=sys.stderr)
        return 2
    with ProcessPoolExecutor(max_workers=2) as pool:
        rows = list(pool.map(run, VARIANTS, [args.data_dir] * len(VARIANTS)))
    for row in rows:
        print(row)
    Path(args.results).write_text(json.dumps({"benchmark": "rung_annealing", "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
