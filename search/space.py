"""The search space, kept in one place: ranges for the two widths, the depth, the learning rate and
the KL warm-up, and the convolutional stems, batch sizes and learning-rate schedules to choose from. Ranges can be
overridden from the CLI or a small YAML/JSON file; a range whose low equals its high (or a single
choice) fixes that parameter.

Optuna samples it "define-by-run" (``suggest``): ``reparam_width`` is drawn after ``latent_width``
with its upper bound clipped to the latent width, so a code never gets wider than the hidden layer.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from search.options import option
from vae.config import LR_SCHEDULES, MAX_CONV_CHANNELS, MAX_DEPTH, ModelConfig

# Known points every search evaluates first (where they lie in the space), before the searcher samples, in
# this order: a small convolutional VAE (a 16-channel stem, 256 hidden units, a 32-dimensional code, Adam at
# 1e-3 decayed by a cosine, batch 64), the article's best pair at its learning rate, and the canonical PyTorch
# VAE (pytorch/examples vae/main.py: 400 hidden units, a 20-dimensional code, Adam at lr 1e-3, batch 128). The
# last two are the article's MLP: one hidden layer, no stem, constant lr, no KL warm-up (PLAIN_TRAINING,
# filled in by ``seed_point``). The convolutional point uses batch 64 because ASHA judges it at 10 epochs:
# at batch 128 it is still behind the MLPs there (val 128 against 122 nats) though far ahead at 30 (107
# against 111); at batch 64 it leads from epoch 10 (116 nats).
CONV_RECIPE = {"latent_width": 256, "reparam_width": 32, "lr": 1e-3, "conv_channels": 16, "lr_schedule": "cosine",
               "batch_size": 64}
ARTICLE_BEST = {"latent_width": 512, "reparam_width": 64, "lr": 3e-4}
PYTORCH_EXAMPLE = {"latent_width": 400, "reparam_width": 20, "lr": 1e-3}
PLAIN_TRAINING = {"depth": 1, "lr_schedule": "constant", "kl_warmup_epochs": 0, "conv_channels": 0}
WARM_START = (CONV_RECIPE, ARTICLE_BEST, PYTORCH_EXAMPLE)
# The article's hand-written "search": five (latent, reparam) pairs at lr 3e-4.
ARTICLE_GRID = tuple({"latent_width": 2**k, "reparam_width": 2 ** (k - 3), "lr": 3e-4} for k in range(5, 10))
PARAMS = ("latent_width", "reparam_width", "depth", "conv_channels", "lr", "lr_schedule", "kl_warmup_epochs",
          "batch_size")
INT_RANGES = ("latent_width", "reparam_width", "depth", "kl_warmup_epochs")
CHOICES = ("conv_channels", "lr_schedule", "batch_size")
MAX_SPACE_FILE_BYTES = 64 * 1024


class SpaceError(ValueError):
    """A search space or a point in it is invalid; the message says which bound and why."""


@dataclass(frozen=True)
class SearchSpace:
    """Inclusive ranges; integers and the learning rate are sampled on a log scale. Each field is also a
    command-line option of ``python -m search.run`` (search.options)."""

    latent_width: tuple[int, int] = option((16, 1024), help="hidden layer width range")
    reparam_width: tuple[int, int] = option((2, 128), help="code z dimension range, never above the latent width")
    depth: tuple[int, int] = option((1, MAX_DEPTH), help="hidden layers on each side of the bottleneck; "
                                    "1 1: the article's one-layer LinearVAE")
    conv_channels: tuple[int, ...] = option(
        (0, 16), flag="--conv-channels", metavar="C",
        help="convolutional stems to choose from: 0 none (the article's MLP), C: two 4x4 stride-2 convolutions of "
        f"C and 2C channels before the first hidden layer (and their transposes after the last), C <= "
        f"{MAX_CONV_CHANNELS}")
    lr: tuple[float, float] = option((1e-4, 3e-2), help="Adam learning rate range")
    lr_schedule: tuple[str, ...] = option(
        LR_SCHEDULES, flag="--lr-schedules", metavar="S",
        help="learning-rate schedules to choose from; cosine: over the trial's max epochs")
    kl_warmup_epochs: tuple[int, int] = option(
        (0, 20), help="KL warm-up length range in epochs, sampled uniformly: the KL weight rises linearly from 0 "
        "to 1 over this many epochs; 0 0: none")
    batch_size: tuple[int, ...] = option((64, 128, 256), flag="--batch-sizes", metavar="B",
                                         help="batch sizes to choose from")

    def __post_init__(self) -> None:
        for name in INT_RANGES:
            low, high = getattr(self, name)
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
                raise SpaceError(f"{name} bounds must be integers, got {low!r}..{high!r}")
            minimum = 0 if name == "kl_warmup_epochs" else 1
            if not minimum <= low <= high:
                raise SpaceError(f"{name} bounds must satisfy {minimum} <= low <= high, got {low}..{high}")
        if self.depth[1] > MAX_DEPTH:
            raise SpaceError(f"depth bounds must lie in 1..{MAX_DEPTH}, got {self.depth[0]}..{self.depth[1]}")
        if not self.lr_schedule or any(s not in LR_SCHEDULES for s in self.lr_schedule):
            raise SpaceError(f"lr_schedule choices must be among {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        low, high = self.lr
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise SpaceError(f"lr bounds must satisfy 0 < low <= high, got {low}..{high}")
        if not self.batch_size or any(not isinstance(b, int) or isinstance(b, bool) or b < 1
                                      for b in self.batch_size):
            raise SpaceError(f"batch_size choices must be positive integers, got {_short(self.batch_size)}")
        if not self.conv_channels or any(not isinstance(c, int) or isinstance(c, bool)
                                         or not 0 <= c <= MAX_CONV_CHANNELS for c in self.conv_channels):
            raise SpaceError(f"conv_channels choices must be integers from 0 to {MAX_CONV_CHANNELS}, "
                             f"got {_short(self.conv_channels)}")
        if self.reparam_width[0] > self.latent_width[1]:
            raise SpaceError(
                f"reparam_width low {self.reparam_width[0]} exceeds latent_width high {self.latent_width[1]}: "
                "no model with reparam_width <= latent_width fits"
            )

    # --- building -------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: dict[str, Any], base: SearchSpace | None = None) -> SearchSpace:
        """Override ``base`` (default ranges) with ``{"latent_width": [16, 512], "lr": [1e-4, 1e-2],
        "batch_size": [128]}``; unknown keys are an error."""
        base = base or cls()
        if not isinstance(data, dict):
            raise SpaceError(f"a search space must be a mapping of parameter to range, got {type(data).__name__}")
        unknown = sorted(k if isinstance(k, str) else _short(k) for k in set(data) - set(PARAMS))
        if unknown:
            raise SpaceError(f"unknown search space parameter(s) {', '.join(unknown)}; known: {', '.join(PARAMS)}")
        changes: dict[str, Any] = {}
        for name, value in data.items():
            if not isinstance(value, (list, tuple)):
                raise SpaceError(f"{name} must be a list, got {_short(value)}")
            if name in CHOICES:
                changes[name] = tuple(value)
                continue
            if len(value) != 2:
                raise SpaceError(f"{name} must be [low, high], got {_short(value)}")
            try:
                cast = float if name == "lr" else _as_int
                changes[name] = (cast(value[0]), cast(value[1]))
            except (TypeError, ValueError, OverflowError) as exc:
                raise SpaceError(f"{name} bounds {_short(value)} are not numbers ({exc})") from exc
        return replace(base, **changes)

    @classmethod
    def from_file(cls, path: str | Path, base: SearchSpace | None = None) -> SearchSpace:
        """Read overrides from a YAML or JSON file (JSON is valid YAML) of at most MAX_SPACE_FILE_BYTES."""
        path = Path(path)
        try:
            if path.is_file() and path.stat().st_size > MAX_SPACE_FILE_BYTES:
                raise SpaceError(f"search space file {path} is larger than {MAX_SPACE_FILE_BYTES // 1024} KB")
            data = yaml.safe_load(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise SpaceError(f"search space file {path} is not UTF-8 text (a YAML or JSON file is expected)") from exc
        except (OSError, yaml.YAMLError, RecursionError) as exc:
            reason = " ".join(str(exc).split())[:200]  # YAML's messages span several lines
            raise SpaceError(f"cannot read search space file {path} ({type(exc).__name__}: {reason})") from exc
        return cls.from_mapping(data or {}, base)

    def to_dict(self) -> dict[str, list]:
        return {k: list(v) for k, v in asdict(self).items()}

    # --- sampling -------------------------------------------------------------------------------

    def fixed(self) -> dict[str, Any]:
        """Parameters with a single value in this space (not searched: passed to every trial as is)."""
        values: dict[str, Any] = {}
        for name in ("depth", "kl_warmup_epochs"):
            low, high = getattr(self, name)
            if low == high:
                values[name] = low
        for name in CHOICES:
            if len(getattr(self, name)) == 1:
                values[name] = getattr(self, name)[0]
        return values

    def suggest(self, trial: Any) -> dict[str, Any] | None:
        """Optuna define-by-run space (``trial`` is an ``optuna.Trial``); returns the fixed parameters."""
        fixed = self.fixed()
        latent = trial.suggest_int("latent_width", *self.latent_width, log=True)
        trial.suggest_int("reparam_width", self.reparam_width[0], min(self.reparam_width[1], latent), log=True)
        if "depth" not in fixed:
            trial.suggest_int("depth", *self.depth)
        if "conv_channels" not in fixed:
            trial.suggest_categorical("conv_channels", list(self.conv_channels))
        trial.suggest_float("lr", *self.lr, log=True)
        if "lr_schedule" not in fixed:
            trial.suggest_categorical("lr_schedule", list(self.lr_schedule))
        if "kl_warmup_epochs" not in fixed:
            trial.suggest_int("kl_warmup_epochs", *self.kl_warmup_epochs)
        if "batch_size" not in fixed:
            trial.suggest_categorical("batch_size", list(self.batch_size))
        return fixed or None

    def seed_point(self, point: dict[str, Any] | None = None) -> dict[str, Any]:
        """A warm-start point for the searcher (default: the article's best), checked against the space;
        depth 1, no convolutional stem, constant lr and no KL warm-up unless given; batch size 128 where it is
        a choice, else the first choice."""
        point = {**PLAIN_TRAINING, **dict(point or ARTICLE_BEST)}
        point.setdefault("batch_size", 128 if 128 in self.batch_size else self.batch_size[0])
        self.check(point)
        for name in self.fixed():
            point.pop(name)  # fixed value, not a searched parameter
        return point

    def warm_start_points(self) -> list[dict[str, Any]]:
        """The baselines of ``WARM_START`` that lie in this space, as seed points (a narrowed space keeps
        the ones inside it)."""
        points = []
        for baseline in WARM_START:
            try:
                points.append(self.seed_point(baseline))
            except SpaceError:
                continue
        return points

    def check(self, point: dict[str, Any]) -> None:
        """Raise SpaceError unless ``point`` lies in the space."""
        def inside(name: str, low: float, high: float) -> None:
            if not low <= point[name] <= high:
                raise SpaceError(f"point {point} has {name}={point[name]} outside the space {low}..{high}")
        inside("latent_width", *self.latent_width)
        inside("reparam_width", self.reparam_width[0], min(self.reparam_width[1], point["latent_width"]))
        inside("lr", *self.lr)
        for name in ("depth", "kl_warmup_epochs"):
            if name in point:
                inside(name, *getattr(self, name))
        for name in CHOICES:
            if point.get(name, getattr(self, name)[0]) not in getattr(self, name):
                raise SpaceError(f"point {point} has a {name} outside the choices {getattr(self, name)}")

    def describe(self) -> str:
        """The space as printed at the start of a search."""
        rows = [
            ("latent_width", "int, log scale", f"{self.latent_width[0]} .. {self.latent_width[1]}"),
            ("reparam_width", "int, log scale",
             f"{self.reparam_width[0]} .. {self.reparam_width[1]} (and <= latent_width)"),
            ("depth", "int", f"{self.depth[0]} .. {self.depth[1]} (hidden layers on each side of the code)"),
            ("conv_channels", "choice", f"{', '.join(map(str, self.conv_channels))} (convolutional stem; 0: none)"),
            ("lr", "float, log scale", f"{self.lr[0]:g} .. {self.lr[1]:g}"),
            ("lr_schedule", "choice", f"{', '.join(self.lr_schedule)} (over the trial's max epochs)"),
            ("kl_warmup_epochs", "int",
             f"{self.kl_warmup_epochs[0]} .. {self.kl_warmup_epochs[1]} (KL weight rises 0 -> 1 over these epochs)"),
            ("batch_size", "choice", ", ".join(map(str, self.batch_size))),
        ]
        return "search space:\n" + "\n".join(f"  {name:<17}{kind:<17}{values}" for name, kind, values in rows)


def _short(value: Any) -> str:
    """repr of a user's value, bounded (a YAML file's aliases can nest a small file into a huge value)."""
    return reprlib.repr(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or float(value) != int(value):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)



# What a trial config lacks when it comes from an experiment started before these were searched.
PARAM_DEFAULTS = {"depth": 1, "lr_schedule": "constant", "kl_warmup_epochs": 0, "conv_channels": 0}


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """The searched values (``PARAMS``) of a trial's config, with the defaults of those older experiments lacked."""
    return {k: config.get(k, PARAM_DEFAULTS.get(k)) for k in PARAMS}


def model_config(hyper: dict[str, Any]) -> ModelConfig:
    """The model a trial's searched values (``hyperparameters``) describe."""
    return ModelConfig(int(hyper["latent_width"]), int(hyper["reparam_width"]), depth=int(hyper["depth"]),
                       conv_channels=int(hyper["conv_channels"]))
