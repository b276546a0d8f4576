"""Ranking trials: the leaderboard, the Pareto front of loss against size, and the best-so-far curve; one
implementation for the export, the app's live view and the benchmarks. Rows are plain dicts with the fields of
``LEADERBOARD_FIELDS`` (search.layout), built from a trial's live record (search.live.TrialLive), whether it
comes from the running search's status file or from Tune's results at the export.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from search.hyperparams import BY_NAME, HYPERPARAMETERS, hyperparameters
from search.layout import LEADERBOARD_FIELDS
from search.live import ERROR, TrialLive, finite
from search.space import model_config
from vae.model import count_parameters


def trial_row(trial: TrialLive, **extra: Any) -> dict[str, Any]:
    """One leaderboard row for ``trial`` (unranked), its fields in LEADERBOARD_FIELDS' order; ``extra`` sets fields
    the live status does not know (the export's checkpoint, node, timings, origin)."""
    values = hyperparameters(trial.hyperparameters)  # a trial of an older search lacks the newer ones
    reports = trial.reports
    best = min(reports, key=lambda r: float(r["val_neg_elbo"])) if reports else None
    last = reports[-1] if reports else {}
    parameters = trial.parameters
    if parameters is None:
        try:
            parameters = count_parameters(model_config(values))
        except (TypeError, ValueError):
            parameters = None
    row: dict[str, Any] = {
        "rank": None, "trial_id": trial.trial_id, "status": trial.status, "is_best": False, "origin": None,
        **values,
        "best_val_neg_elbo": float(best["val_neg_elbo"]) if best else None,
        "last_val_neg_elbo": float(last["val_neg_elbo"]) if finite(last.get("val_neg_elbo")) else None,
        "rounds": int(last.get("round", 0)), "best_round": int(best["round"]) if best else None,
        "images": int(last["images"]) if finite(last.get("images")) else None,
        "epochs": round(float(last["epochs"]), 2) if finite(last.get("epochs")) else None,
        "time_s": None, "parameters": parameters, "val_active_units": None, "node": None,
        "error": trial.error, "checkpoint": None,
    }
    row.update(extra)
    return {k: row[k] for k in LEADERBOARD_FIELDS}


def rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort by best val neg-ELBO, failed trials and trials without a value last, and number the ranks (in place;
    returns ``rows``)."""
    rows.sort(key=lambda r: (r["status"] == ERROR or r["best_val_neg_elbo"] is None,
                             r["best_val_neg_elbo"] if r["best_val_neg_elbo"] is not None else math.inf))
    for number, row in enumerate(rows, 1):
        row["rank"] = number
    return rows


def pareto_front(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Trials that no other trial beats on both parameter count and best val neg-ELBO (smallest first)."""
    finished = sorted((r for r in rows if r["status"] != ERROR and r["best_val_neg_elbo"] is not None
                       and r["parameters"] is not None), key=lambda r: (r["parameters"], r["best_val_neg_elbo"]))
    front, best = [], math.inf
    for row in finished:
        if row["best_val_neg_elbo"] < best:
            front.append(row)
            best = row["best_val_neg_elbo"]
    return front


def best_so_far(trials: Iterable[TrialLive]) -> list[dict[str, Any]]:
    """After each trial-round (all trials' reports in the order they came): rounds spent, when (``reported_at``),
    which trial reported, and the best val neg-ELBO so far (a running minimum)."""
    reports = sorted(((float(r.get("reported_at", 0.0)), t.trial_id, float(r["val_neg_elbo"]))
                      for t in trials for r in t.reports), key=lambda item: item[0])
    curve, best = [], math.inf
    for spent, (at, trial_id, value) in enumerate(reports, 1):
        best = min(best, value)
        curve.append({"trial_rounds": spent, "reported_at": at, "trial_id": trial_id, "best_val_neg_elbo": best})
    return curve


def format_table(rows: Sequence[dict[str, Any]], top: int = 10) -> str:
    """The leaderboard as the console prints it: the ``top`` rows, a column per hyperparameter."""
    columns: list[tuple[str, int, Callable[[dict[str, Any]], str]]] = [
        ("#", 3, lambda r: str(r["rank"])), ("trial", 10, lambda r: str(r["trial_id"]))]
    for h in HYPERPARAMETERS:
        columns.append((h.header, max(len(h.header), 6), functools.partial(_format_value, h.name)))
    columns += [("val nats", 9, lambda r: _nats(r["best_val_neg_elbo"])), ("rounds", 6, lambda r: str(r["rounds"])),
                ("time s", 7, lambda r: f"{r['time_s']:.1f}" if r.get("time_s") is not None else "-")]
    lines = [" ".join(f"{name:>{width}}" for name, width, _ in columns) + " status"]
    for row in rows[:top]:
        cells = " ".join(f"{show(row):>{width}}" for _, width, show in columns)
        lines.append(f"{cells} {row['status']}{'  ' + row['error'] if row.get('error') else ''}")
    if len(rows) > top:
        lines.append(f"... and {len(rows) - top} more in leaderboard.csv")
    return "\n".join(lines)


def _format_value(name: str, row: dict[str, Any]) -> str:
    return BY_NAME[name].format(row.get(name))


def _nats(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
