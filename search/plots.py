"""The export's figures: best so far against trial-rounds spent, the trials in the space, the Pareto front."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter

from search.hyperparams import BY_NAME
from search.live import ERROR

CURVE_PNG = "best_so_far.png"
SPACE_PNG = "trials_space.png"
PARETO_PNG = "pareto.png"


def plot_curve(curve: list[dict[str, Any]], path: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    if curve:
        ax.step([c["trial_rounds"] for c in curve], [c["best_val_neg_elbo"] for c in curve], where="post")
    ax.set_xlabel("trial-rounds spent")
    ax.set_ylabel("best val neg-ELBO so far (nats)")
    ax.set_title("search progress")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_space(rows: list[dict[str, Any]], searched: tuple[str, ...], path: Path) -> None:
    """The trials in the first three searched numeric hyperparameters, as 2-D projections coloured by best val
    neg-ELBO (no figure is drawn when fewer than two are searched)."""
    numeric = [name for name in searched if BY_NAME[name].kind != "choice"][:3]
    pairs = list(combinations(numeric, 2))
    fig = Figure(figsize=(4.3 * max(len(pairs), 1), 4))
    if not pairs:
        fig.text(0.5, 0.5, "fewer than two numeric hyperparameters were searched", ha="center")
        fig.savefig(path, dpi=110)
        return
    ok = [r for r in rows if r["best_val_neg_elbo"] is not None and r["status"] != ERROR]
    failed = [r for r in rows if r not in ok]
    axes = fig.subplots(1, len(pairs), squeeze=False)[0]
    scatter = None
    for ax, (x, y) in zip(axes, pairs, strict=True):
        if ok:
            scatter = ax.scatter([r[x] for r in ok], [r[y] for r in ok], c=[r["best_val_neg_elbo"] for r in ok],
                                 cmap="viridis", s=40, edgecolors="k", linewidths=0.3)
        if failed:
            ax.scatter([r[x] for r in failed], [r[y] for r in failed], marker="x", c="red", label="failed")
            ax.legend(loc="best", fontsize=8)
        for name, axis, set_scale in ((x, ax.xaxis, ax.set_xscale), (y, ax.yaxis, ax.set_yscale)):
            h = BY_NAME[name]
            if h.log and h.kind == "int":  # widths: powers of two, labelled as plain numbers
                set_scale("log", base=2)
                axis.set_major_formatter(ScalarFormatter())
                axis.set_minor_formatter(NullFormatter())
            elif h.log:
                set_scale("log")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    if scatter is not None:
        fig.colorbar(scatter, ax=list(axes), label="best val neg-ELBO (nats)")
    fig.suptitle("trials in the search space (darker = lower loss)")
    fig.savefig(path, dpi=110)


def plot_pareto(rows: list[dict[str, Any]], front: list[dict[str, Any]], path: Path) -> None:
    ok = [r for r in rows if r["best_val_neg_elbo"] is not None and r["status"] != ERROR and r["parameters"]]
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
