"""Where a search leaves its results: the contract between `search/` (writer) and `serve/` (reader).

Kept free of Ray imports so that `serve/` can read an experiment without loading Ray.

    <storage>/<name>/                  Ray Tune's experiment folder (restorable with --resume)
    <storage>/<name>/live.json         the search's live status, while it runs and after (search.live)
    <storage>/<name>/vaesearch_search.json   this run's trial total, deadline and config (search.budget)
    <storage>/<name>/best/             the export, written by the driver when the search ends:
        model.safetensors, checkpoint.json   the best trial's model (vae.checkpoint format)
        leaderboard.json, leaderboard.csv    every trial, best first (LEADERBOARD_FIELDS); leaderboard.json is
                                             written last, whole: it marks the export as done
        trials/<trial_id>/                   each finished trial's best checkpoint (vae.checkpoint)
        importance.json                      hyperparameter importances (IMPORTANCE_JSON: read_importances)
        pareto.csv, *.png                    Pareto front and plots
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from search.hyperparams import NAMES

DEFAULT_STORAGE = Path("results")  # relative to the working directory; made absolute before Ray sees it
BUDGET_FILE = "vaesearch_search.json"  # the run's trial total, deadline and config (search.budget)
BEST_DIR = "best"
TRIALS_DIR = "trials"
LEADERBOARD_JSON = "leaderboard.json"
LEADERBOARD_CSV = "leaderboard.csv"
# {"method": ..., "objective": ..., "trials": <how many>, "importances": {<hyperparameter>: <importance>, ...}}
IMPORTANCE_JSON = "importance.json"

# One row per trial that reported (search.leaderboard), sorted by best_val_neg_elbo (failed trials last): its
# status (search.live.STATUSES), its value of each hyperparameter (search.hyperparams), where it came from
# ("known point: <name>", "searcher" or "grid"). `checkpoint` is a path relative to best/ (e.g.
# "trials/<trial_id>") or null when the trial left none.
LEADERBOARD_FIELDS = (
    "rank", "trial_id", "status", "is_best", "origin", *NAMES, "best_val_neg_elbo", "last_val_neg_elbo", "rounds",
    "best_round", "images", "epochs", "time_s", "parameters", "val_active_units", "node", "error", "checkpoint",
)


def best_dir(experiment_dir: str | Path) -> Path:
    return Path(experiment_dir) / BEST_DIR


def latest_experiment(storage: str | Path = DEFAULT_STORAGE) -> Path | None:
    """The most recently exported experiment under a local ``storage`` folder, or None."""
    root = Path(storage)
    if not root.is_dir():
        return None
    exported = [p for p in root.iterdir() if (p / BEST_DIR / LEADERBOARD_JSON).is_file()]
    return max(exported, key=lambda p: (p / BEST_DIR / LEADERBOARD_JSON).stat().st_mtime, default=None)


def read_importances(best: str | Path) -> dict[str, float]:
    """The hyperparameter importances of an export's ``best/`` folder (its importance.json's "importances"),
    or {} when there are none yet or the file is unreadable."""
    try:
        stored = json.loads((Path(best) / IMPORTANCE_JSON).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    importances = stored.get("importances") if isinstance(stored, dict) else None
    if not isinstance(importances, dict):
        return {}
    return {str(name): float(value) for name, value in importances.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)}
