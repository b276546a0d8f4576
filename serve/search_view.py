"""What the app's Search view shows, read afresh from a search's folder: the search's live status
(search.live, ``live.json``) while it runs, its export (``best/``) once it has ended. No Gradio here: frames and
text, which serve/app.py hands to its plots.

Ranking, the Pareto front and the best-so-far curve are search.leaderboard's, the same as the export's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from search.layout import BEST_DIR, BUDGET_FILE, LEADERBOARD_JSON, read_importances
from search.leaderboard import best_so_far, pareto_front, rank, trial_row
from search.live import LIVE_JSON, RUNNING, SearchLive, read_live

BOARD_COLUMNS = ("rank", "trial_id", "status", "origin", "best_val_neg_elbo", "last_val_neg_elbo", "rounds")
FRONTS = ("Pareto front", "dominated")


def is_search_folder(path: str | Path) -> bool:
    """Whether ``path`` is a search's experiment folder (running or ended): it has the run's budget file (written
    before any trial starts) or a live status file."""
    return (Path(path) / LIVE_JSON).is_file() or (Path(path) / BUDGET_FILE).is_file()


@dataclass(frozen=True)
class SearchView:
    experiment: Path
    live: SearchLive
    exported: bool = False  # best/leaderboard.json exists: the search ended and was exported
    rows: list[dict[str, Any]] = field(default_factory=list)  # the leaderboard (the export's once exported)
    importances: dict[str, float] = field(default_factory=dict)

    @property
    def hyperparameters(self) -> list[str]:
        return list(self.live.hyperparameters)

    @property
    def trial_rounds(self) -> int:
        return sum(len(t.reports) for t in self.live.trials)

    def status(self, refresh_s: float) -> str:
        """One line: where the search is, how far, the best so far."""
        trials = self.live.trials
        running = sum(t.status == RUNNING for t in trials)
        best = min((t.best for t in trials if t.best is not None), default=None)
        if self.exported:
            state = "ended and exported"
        elif self.live.ended:
            state = "ended; exporting"
        else:
            state = f"running ({running} trial(s) training now)"
        budget = f" of {self.live.num_trials}" if self.live.num_trials else ""
        most = f" of at most {self.live.max_rounds} each" if self.live.max_rounds else ""
        line = (f"Search `{self.experiment.name}`: {state}; {len(trials)}{budget} trial(s), {self.trial_rounds} "
                f"trial-rounds{most}" + (f"; best val neg-ELBO so far **{best:.2f}** nats." if best is not None
                                         else "."))
        if self.live.stop_reason:
            line += f" {self.live.stop_reason[0].upper()}{self.live.stop_reason[1:]}."
        if not self.exported:
            line += f" Refreshes every {refresh_s:g} s."
        if not self.importances:
            line += " Importances appear when the export writes best/importance.json."
        return line

    def leaderboard(self) -> pd.DataFrame:
        columns = [*BOARD_COLUMNS, *self.hyperparameters, "parameters", "time_s"]
        frame = pd.DataFrame([{k: row.get(k) for k in columns} for row in self.rows], columns=columns)
        return frame.round(4)

    def best_so_far(self) -> pd.DataFrame:
        """trial_rounds, wall_s (since the search started) and the best val neg-ELBO so far."""
        curve = best_so_far(self.live.trials)
        start = self.live.started_at or min((c["reported_at"] for c in curve), default=0.0)
        return pd.DataFrame({"trial_rounds": [c["trial_rounds"] for c in curve],
                             "wall_s": [round(c["reported_at"] - start, 2) for c in curve],
                             "best_val_neg_elbo": [c["best_val_neg_elbo"] for c in curve]},
                            columns=["trial_rounds", "wall_s", "best_val_neg_elbo"])

    def curves(self) -> pd.DataFrame:
        """Every report: trial ("trial k", k in the order the trials first reported), trial_id, round, val."""
        order = self.trial_labels()
        rows = [{"trial": order[t.trial_id], "trial_id": t.trial_id, "round": int(r["round"]),
                 "val_neg_elbo": float(r["val_neg_elbo"])} for t in self.live.trials for r in t.reports]
        return pd.DataFrame(rows, columns=["trial", "trial_id", "round", "val_neg_elbo"])

    def trial_labels(self) -> dict[str, str]:
        first = sorted((float(t.reports[0].get("reported_at", 0.0)), t.trial_id) for t in self.live.trials
                       if t.reports)
        return {trial_id: f"trial {k}" for k, (_, trial_id) in enumerate(first, 1)}

    def space(self, hyperparameter: str | None) -> pd.DataFrame:
        """Each trial's value of ``hyperparameter`` against its best val neg-ELBO, with its status."""
        columns = ["trial_id", "value", "best_val_neg_elbo", "status"]
        if hyperparameter not in self.hyperparameters:
            return pd.DataFrame(columns=columns)
        return pd.DataFrame([{"trial_id": r["trial_id"], "value": r.get(hyperparameter),
                              "best_val_neg_elbo": r["best_val_neg_elbo"], "status": r["status"]}
                             for r in self.rows if r["best_val_neg_elbo"] is not None], columns=columns)

    def pareto(self) -> pd.DataFrame:
        """Each trial's parameter count and best val neg-ELBO; ``front``: on the Pareto front or dominated."""
        front = {r["trial_id"] for r in pareto_front(self.rows)}
        ranked = [r for r in self.rows if r["best_val_neg_elbo"] is not None and r["parameters"] is not None]
        return pd.DataFrame([{"trial_id": r["trial_id"], "parameters": float(r["parameters"]),
                              "best_val_neg_elbo": r["best_val_neg_elbo"],
                              "front": FRONTS[0] if r["trial_id"] in front else FRONTS[1]} for r in ranked],
                            columns=["trial_id", "parameters", "best_val_neg_elbo", "front"])

    def importance(self) -> pd.DataFrame:
        items = sorted(self.importances.items(), key=lambda kv: -kv[1])
        return pd.DataFrame(items, columns=["hyperparameter", "importance"])


def read_view(experiment: str | Path) -> SearchView | None:
    """The Search view of the search at ``experiment``, or None when it has no live status (yet)."""
    experiment = Path(experiment)
    live = read_live(experiment)
    if live is None:
        return None
    exported = _exported_rows(experiment)
    rows = exported if exported is not None else rank([trial_row(t) for t in live.trials if t.reports])
    return SearchView(experiment, live, exported is not None, rows, read_importances(experiment / BEST_DIR))


def _exported_rows(experiment: Path) -> list[dict[str, Any]] | None:
    try:
        rows = json.loads((experiment / BEST_DIR / LEADERBOARD_JSON).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "trial_id" in r for r in rows):
        return None
    keys = ("best_val_neg_elbo", "parameters", "status")
    return [{**r, **{k: r.get(k) for k in keys}} for r in rows]
