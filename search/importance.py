"""Hyperparameter importances of a finished search, with Optuna's own evaluator, from the leaderboard."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
from matplotlib.figure import Figure

from search import layout
from search.hyperparams import HYPERPARAMETERS
from search.live import ERROR
from search.space import SearchSpace

IMPORTANCE_PNG = "importance.png"


def search_distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """The space's searched parameters as Optuna distributions (one capped by another, ``reparam_width``, with
    its full range: the define-by-run clip is per trial); fixed parameters are left out."""
    distributions: dict[str, optuna.distributions.BaseDistribution] = {}
    for h in HYPERPARAMETERS:
        if space.is_fixed(h.name):
            continue
        values = space[h.name]
        if h.kind == "choice":
            distributions[h.name] = optuna.distributions.CategoricalDistribution(list(values))
        elif h.kind == "int":
            distributions[h.name] = optuna.distributions.IntDistribution(values[0], values[1], log=h.log)
        else:
            distributions[h.name] = optuna.distributions.FloatDistribution(values[0], values[1], log=h.log)
    return distributions


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
        figure = ax.get_figure(root=True)
        assert isinstance(figure, Figure)  # an Axes made by pyplot belongs to a whole Figure
        figure.set_size_inches(7, 4)
        figure.tight_layout()
        figure.savefig(best_dir / IMPORTANCE_PNG, dpi=110)
        import matplotlib.pyplot as plt

        plt.close(figure)
    return importances
