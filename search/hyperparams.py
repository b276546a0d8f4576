"""Every searched hyperparameter, declared once.

A ``Hyperparameter`` says what the search needs to know about one: its kind and default range, how it is
sampled, its command-line flag and help, which field of ``vae.config.ModelConfig`` or ``TrainConfig`` it
sets, the value trials of older experiments had, and how the leaderboard shows it. The search space
(search.space), the command line (vae.options), the export's importances and leaderboard, and the
console all derive from ``HYPERPARAMETERS``; the app reads the hyperparameter names from the files a search
writes. Adding one is one entry here, plus the ``vae/`` code that uses its field.

This module imports nothing from Ray or Optuna, so that anything (the app, benchmarks) may read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from vae.config import LR_SCHEDULES, MAX_CONV_CHANNELS, MAX_DEPTH, MAX_LATENT_WIDTH, MAX_REPARAM_WIDTH

Kind = Literal["int", "float", "choice"]
Target = Literal["model", "train"]


@dataclass(frozen=True)
class Hyperparameter:
    """One searched hyperparameter.

    ``kind``: "int" and "float" are ranges ``(low, high)``, inclusive, sampled on a log scale when ``log``;
    "choice" is a tuple of values (ints or strings). ``limits``: the bounds any range or numeric choice must
    lie in; ``allowed``: the values a choice may take, when they are a closed set.
    ``at_most``: another hyperparameter whose sampled value caps this one (a code never wider than the
    hidden layer). ``target`` / ``field``: the ``vae.config`` dataclass and field the value becomes.
    ``legacy``: the value of a trial whose experiment did not search it yet (and of the plain known points
    that do not name it). ``column`` / ``fmt``: the console's and leaderboard's header and number format.
    """

    name: str
    kind: Kind
    default: tuple[Any, ...]
    help: str
    target: Target
    field: str
    legacy: Any
    limits: tuple[float, float] = (0, float("inf"))
    allowed: tuple[Any, ...] | None = None  # a choice's closed set of values, when it has one
    log: bool = False
    at_most: str | None = None
    flag: str | None = None
    metavar: str | None = None
    column: str | None = None
    fmt: str = ""
    note: str = ""  # what the printed space adds after the values

    @property
    def value_type(self) -> type:
        """int, float or str: the type of one value."""
        if self.kind == "float":
            return float
        if self.kind == "int":
            return int
        return type(self.default[0])

    @property
    def header(self) -> str:
        return self.column or self.name

    def format(self, value: Any) -> str:
        """``value`` as the console and the leaderboard print it."""
        if value is None:
            return "-"
        return format(value, self.fmt) if self.fmt and not isinstance(value, str) else str(value)


HYPERPARAMETERS: tuple[Hyperparameter, ...] = (
    Hyperparameter(
        "latent_width", "int", (32, 1024), "hidden layer width range", "model", "latent_width", legacy=None,
        limits=(1, MAX_LATENT_WIDTH), log=True, column="latent"),
    Hyperparameter(
        "reparam_width", "int", (4, 64), "code z dimension range, never above the latent width", "model",
        "reparam_width", legacy=None, limits=(1, MAX_REPARAM_WIDTH), log=True, at_most="latent_width",
        column="reparam", note="(and <= latent_width)"),
    Hyperparameter(
        "depth", "int", (1, 2), "hidden layers on each side of the bottleneck; 1 1: the article's "
        "one-layer LinearVAE", "model", "depth", legacy=1, limits=(1, MAX_DEPTH),
        note="(hidden layers on each side of the code)"),
    Hyperparameter(
        "conv_channels", "choice", (0, 16), "convolutional stems to choose from: 0 none (the article's MLP), C: "
        f"two 4x4 stride-2 convolutions of C and 2C channels before the first hidden layer (and their transposes "
        f"after the last), C <= {MAX_CONV_CHANNELS}", "model", "conv_channels", legacy=0,
        limits=(0, MAX_CONV_CHANNELS), flag="--conv-channels", metavar="C", column="conv",
        note="(convolutional stem; 0: none)"),
    Hyperparameter(
        "lr", "float", (2e-4, 4e-3), "AdamW learning rate range", "train", "lr", legacy=None,
        limits=(1e-7, 1.0), log=True, fmt=".2e"),
    Hyperparameter(
        "lr_schedule", "choice", ("cosine",), "learning-rate schedules to choose from (constant, cosine); cosine: "
        "decays to near 0 by the trial's last round (sooner when the time budget would cut it)", "train",
        "lr_schedule", legacy="constant", allowed=LR_SCHEDULES, flag="--lr-schedules", metavar="S", column="sched",
        note="(cosine: to near 0 by --max-rounds, or by the time budget)"),
    Hyperparameter(
        "kl_warmup_rounds", "int", (0, 0), "KL warm-up length range in rounds, sampled uniformly: the KL weight "
        "rises linearly from 0 to 1 over this many rounds; e.g. 0 20 to search it", "train", "warmup_rounds", legacy=0,
        limits=(0, 10_000), column="warmup", note="(KL weight rises 0 -> 1 over these rounds)"),
    Hyperparameter(
        "batch_size", "choice", (64, 128, 256), "batch sizes to choose from", "train", "batch_size", legacy=128,
        limits=(1, 65_536), flag="--batch-sizes", metavar="B", column="batch"),
)

BY_NAME: Mapping[str, Hyperparameter] = {h.name: h for h in HYPERPARAMETERS}
NAMES: tuple[str, ...] = tuple(BY_NAME)
# Names of the hyperparameters of older experiments: what a trial stored under a name since renamed.
RENAMED = {"kl_warmup_epochs": "kl_warmup_rounds"}


def hyperparameters(config: Mapping[str, Any]) -> dict[str, Any]:
    """The searched values of a trial's config, in registry order, with the ``legacy`` value of those its
    experiment did not search (and the current name of a renamed one)."""
    values = {RENAMED.get(k, k): v for k, v in config.items()}
    return {h.name: values.get(h.name, h.legacy) for h in HYPERPARAMETERS}


def config_fields(values: Mapping[str, Any], target: Target) -> dict[str, Any]:
    """The ``vae.config`` fields (of ``target``) that ``values`` (by hyperparameter name) set."""
    return {h.field: h.value_type(values[h.name]) for h in HYPERPARAMETERS
            if h.target == target and values.get(h.name) is not None}


def plain_values() -> dict[str, Any]:
    """The article's plain training and model, for the hyperparameters a known point leaves out: every
    ``legacy`` value that is set (depth 1, no stem, constant lr, no KL warm-up, batch 128)."""
    return {h.name: h.legacy for h in HYPERPARAMETERS if h.legacy is not None}
