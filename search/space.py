"""The search space: a range or a set of choices for each hyperparameter of search.hyperparams, the known
points every search evaluates first, and the trial configs built from sampled values.

Ranges can be overridden from the CLI (one option per hyperparameter, derived from the registry) or a small
YAML/JSON file; a range whose low equals its high (or a single choice) fixes that parameter. Optuna samples
the space "define-by-run" (``suggest``): a hyperparameter with ``at_most`` (``reparam_width``) is drawn
after the one that caps it, with its upper bound clipped to that value, so a code is never wider than the
hidden layer.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from search.hyperparams import BY_NAME, HYPERPARAMETERS, NAMES, Hyperparameter, config_fields, plain_values
from vae.config import ModelConfig
from vae.options import Option

# Known points every search evaluates first (where they lie in the space), before the searcher samples, in
# this order: a small convolutional VAE (a 16-channel stem, 256 hidden units, a 32-dimensional code, Adam at
# 1e-3, batch 64), the article's best pair at its learning rate, and the canonical PyTorch VAE
# (pytorch/examples vae/main.py: 400 hidden units, a 20-dimensional code, Adam at lr 1e-3, batch 128). Each is
# a recipe for the budget it gets: its learning rate follows the cosine schedule, which anneals to the end of
# what the trial is given (its rounds, or the time budget). A hyperparameter a point leaves out takes its plain
# value (search.hyperparams.plain_values: the article's one-layer MLP, no KL warm-up, batch 128). The
# convolutional point uses batch 64: ASHA judges it at the first rung, and at batch 128 it is still behind the
# MLPs there (benchmarks/README.md).
CONV_RECIPE = {"latent_width": 256, "reparam_width": 32, "lr": 1e-3, "conv_channels": 16, "lr_schedule": "cosine",
               "batch_size": 64}
ARTICLE_BEST = {"latent_width": 512, "reparam_width": 64, "lr": 3e-4, "lr_schedule": "cosine"}
PYTORCH_EXAMPLE = {"latent_width": 400, "reparam_width": 20, "lr": 1e-3, "lr_schedule": "cosine"}
KNOWN_POINTS = {"convolutional 256/32": CONV_RECIPE, "article 512/64": ARTICLE_BEST,
                "pytorch/examples 400/20": PYTORCH_EXAMPLE}
WARM_START = tuple(KNOWN_POINTS.values())
SEARCHER = "searcher"  # the origin of a trial that is no known point
# The article's hand-written "search": five (latent, reparam) pairs at lr 3e-4.
ARTICLE_GRID = tuple({"latent_width": 2**k, "reparam_width": 2 ** (k - 3), "lr": 3e-4} for k in range(5, 10))
MAX_SPACE_FILE_BYTES = 64 * 1024


class SpaceError(ValueError):
    """A search space or a point in it is invalid; the message says which bound and why."""


class SearchSpace(Mapping[str, tuple[Any, ...]]):
    """For each hyperparameter (search.hyperparams, in its order) an inclusive range ``(low, high)`` or a
    tuple of choices; immutable. ``SearchSpace(lr=(1e-4, 1e-2))`` is the default space with that range;
    ``space["lr"]`` reads one."""

    def __init__(self, **ranges: Any) -> None:
        unknown = sorted(set(ranges) - set(NAMES))
        if unknown:
            raise SpaceError(f"unknown search space parameter(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
        self._ranges = {h.name: _checked(h, ranges.get(h.name, h.default)) for h in HYPERPARAMETERS}
        for h in HYPERPARAMETERS:
            if h.at_most is not None and self._ranges[h.name][0] > self._ranges[h.at_most][1]:
                raise SpaceError(f"{h.name} low {self._ranges[h.name][0]} exceeds {h.at_most} high "
                                 f"{self._ranges[h.at_most][1]}: no model with {h.name} <= {h.at_most} fits")

    # --- a read-only mapping --------------------------------------------------------------------

    def __getitem__(self, name: str) -> tuple[Any, ...]:
        return self._ranges[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ranges)

    def __len__(self) -> int:
        return len(self._ranges)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self._ranges == other._ranges

    def __hash__(self) -> int:
        return hash(tuple(self._ranges.items()))

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(f'{k}={v!r}' for k, v in self._ranges.items())})"

    def replace(self, **changes: Any) -> SearchSpace:
        return SearchSpace(**{**self._ranges, **changes})

    # --- building -------------------------------------------------------------------------------

    @classmethod
    def cli_options(cls) -> list[tuple[str, Option, Any, Any]]:
        """One command-line option per hyperparameter (vae.options): (name, Option, type hint, default)."""
        hints: dict[tuple[str, type], Any] = {("choice", int): tuple[int, ...], ("choice", str): tuple[str, ...],
                                              ("int", int): tuple[int, int], ("float", float): tuple[float, float]}
        return [(h.name, Option(help=h.help, flag=h.flag, metavar=h.metavar), hints[h.kind, h.value_type], h.default)
                for h in HYPERPARAMETERS]

    @classmethod
    def from_mapping(cls, data: Any, base: SearchSpace | None = None) -> SearchSpace:
        """Override ``base`` (default ranges) with ``{"latent_width": [16, 512], "lr": [1e-4, 1e-2],
        "batch_size": [128]}``; unknown keys are an error."""
        base = base or cls()
        if not isinstance(data, dict):
            raise SpaceError(f"a search space must be a mapping of parameter to range, got {type(data).__name__}")
        unknown = sorted(k if isinstance(k, str) else _short(k) for k in set(data) - set(NAMES))
        if unknown:
            raise SpaceError(f"unknown search space parameter(s) {', '.join(unknown)}; known: {', '.join(NAMES)}")
        changes: dict[str, Any] = {}
        for name, value in data.items():
            if not isinstance(value, (list, tuple)):
                raise SpaceError(f"{name} must be a list, got {_short(value)}")
            h = BY_NAME[name]
            if h.kind == "choice":
                changes[name] = tuple(value)
                continue
            if len(value) != 2:
                raise SpaceError(f"{name} must be [low, high], got {_short(value)}")
            try:
                cast = float if h.kind == "float" else _as_int
                changes[name] = (cast(value[0]), cast(value[1]))
            except (TypeError, ValueError, OverflowError) as exc:
                raise SpaceError(f"{name} bounds {_short(value)} are not numbers ({exc})") from exc
        return base.replace(**changes)

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

    def to_dict(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in self._ranges.items()}

    # --- sampling -------------------------------------------------------------------------------

    def is_fixed(self, name: str) -> bool:
        values = self._ranges[name]
        return len(values) == 1 or (BY_NAME[name].kind != "choice" and values[0] == values[1])

    def fixed(self) -> dict[str, Any]:
        """Parameters with a single value in this space (not searched: passed to every trial as is)."""
        return {name: values[0] for name, values in self._ranges.items() if self.is_fixed(name)}

    def searched(self) -> tuple[str, ...]:
        """The hyperparameters with more than one value in this space."""
        return tuple(name for name in self._ranges if not self.is_fixed(name))

    def suggest(self, trial: Any) -> dict[str, Any] | None:
        """Optuna define-by-run space (``trial`` is an ``optuna.Trial``); returns the fixed parameters."""
        values: dict[str, Any] = {}
        for h in HYPERPARAMETERS:
            if self.is_fixed(h.name):
                values[h.name] = self._ranges[h.name][0]
                continue
            if h.kind == "choice":
                values[h.name] = trial.suggest_categorical(h.name, list(self._ranges[h.name]))
                continue
            low, high = self._ranges[h.name]
            if h.at_most is not None:
                high = min(high, values[h.at_most])
            suggest = trial.suggest_int if h.kind == "int" else trial.suggest_float
            values[h.name] = suggest(h.name, low, high, log=h.log)
        return self.fixed() or None

    def seed_point(self, point: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A warm-start point for the searcher (default: the article's best), checked against the space. A
        hyperparameter the point leaves out takes its plain value (``plain_values``), but a training setting
        given as choices (the batch size, the schedule) whose plain value the space does not offer takes the
        space's first choice; fixed parameters are left out of the point."""
        named = dict(point or ARTICLE_BEST)
        filled = plain_values()
        for h in HYPERPARAMETERS:
            offered = self[h.name]
            if h.name not in named and h.target == "train" and h.kind == "choice" and filled[h.name] not in offered:
                filled[h.name] = offered[0]
        point = {**filled, **named}
        self.check(point)
        return {k: v for k, v in point.items() if not self.is_fixed(k)}

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

    def origin(self, values: Mapping[str, Any]) -> str:
        """Where a trial with these searched values came from: "known point: <name>" for a warm-start point
        of this space, else SEARCHER."""
        for name, known in KNOWN_POINTS.items():
            try:
                point = self.seed_point(known)
            except SpaceError:
                continue
            if all(values.get(k) == v for k, v in point.items()):
                return f"known point: {name}"
        return SEARCHER

    def check(self, point: Mapping[str, Any]) -> None:
        """Raise SpaceError unless ``point`` lies in the space."""
        for h in HYPERPARAMETERS:
            if h.name not in point:
                continue
            value, allowed = point[h.name], self._ranges[h.name]
            if h.kind == "choice":
                if value not in allowed:
                    raise SpaceError(f"point {dict(point)} has a {h.name} outside the choices {allowed}")
                continue
            low, high = allowed
            if h.at_most is not None and h.at_most in point:
                high = min(high, point[h.at_most])
            if not low <= value <= high:
                raise SpaceError(f"point {dict(point)} has {h.name}={value} outside the space {low}..{high}")

    def describe(self) -> str:
        """The space as printed at the start of a search."""
        rows = []
        for h in HYPERPARAMETERS:
            values = self._ranges[h.name]
            if h.kind == "choice":
                shown = ", ".join(map(str, values))
                kind = "choice"
            else:
                shown = f"{values[0]:g} .. {values[1]:g}"
                kind = f"{h.kind}{', log scale' if h.log else ''}"
            rows.append(f"  {h.name:<17}{kind:<17}{shown}{' ' + h.note if h.note else ''}")
        return "search space:\n" + "\n".join(rows)


def model_config(hyper: Mapping[str, Any], image_shape: tuple[int, int, int] = (1, 28, 28)) -> ModelConfig:
    """The model a trial's searched values (search.hyperparams.hyperparameters) describe, for images of
    ``image_shape`` (C, H, W)."""
    channels, height, width = image_shape
    return ModelConfig(**config_fields(hyper, "model"), channels=channels, height=height, width=width)


def _checked(h: Hyperparameter, values: Any) -> tuple[Any, ...]:
    """``values`` as a valid range or choice tuple of ``h``, else SpaceError."""
    values = tuple(values) if isinstance(values, (list, tuple)) else values
    if not isinstance(values, tuple):
        raise SpaceError(f"{h.name} must be a list, got {_short(values)}")
    low_limit, high_limit = h.limits
    if h.kind == "choice":
        ok = bool(values) and all(_is_value(v, h.value_type) for v in values)
        if ok and h.allowed is not None:
            ok = all(v in h.allowed for v in values)
        elif ok and h.value_type is not str:
            ok = all(low_limit <= v <= high_limit for v in values)
        if not ok:
            allowed = f"among {', '.join(map(str, h.allowed))}" if h.allowed is not None else \
                f"integers from {low_limit:g} to {high_limit:g}"
            raise SpaceError(f"{h.name} choices must be {allowed}, got {_short(values)}")
        return values
    if len(values) != 2:
        raise SpaceError(f"{h.name} must be [low, high], got {_short(values)}")
    low, high = values
    if h.kind == "int" and not all(_is_value(v, int) for v in values):
        raise SpaceError(f"{h.name} bounds must be integers, got {low!r}..{high!r}")
    if h.kind == "float":
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise SpaceError(f"{h.name} bounds must be finite numbers, got {_short(values)}")
        low, high = float(low), float(high)
    if not (max(low_limit, 0) <= low <= high <= high_limit) or (h.log and low <= 0):
        minimum = "0 < low" if h.log else f"{low_limit:g} <= low"
        raise SpaceError(f"{h.name} bounds must satisfy {minimum} <= high <= {high_limit:g}, got {low}..{high}")
    return (low, high)


def _is_value(value: Any, kind: type) -> bool:
    if kind is str:
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    """repr of a user's value, bounded (a YAML file's aliases can nest a small file into a huge value)."""
    return reprlib.repr(value)


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or float(value) != int(value):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)
