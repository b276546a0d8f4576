"""SearchConfig: every option of a search as one typed, frozen value, validated once (at the CLI edge
or by a Python caller such as a benchmark) and then passed down unchanged."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from search.layout import DEFAULT_STORAGE
from search.space import ARTICLE_GRID, SearchSpace, SpaceError
from vae.data import DATASETS

Searcher = Literal["tpe", "random", "grid"]
WandbMode = Literal["online", "offline", "disabled"]
SEARCHERS: tuple[str, ...] = ("tpe", "random", "grid")
WANDB_MODES: tuple[str, ...] = ("online", "offline", "disabled")
DEFAULT_TRIALS = 20
# Safety net for the default search (seconds of Tune's own time budget, TuneConfig.time_budget_s): with the
# start (Ray, data) and the export (test split, IWAE, plots) the default search ends within 10 minutes on
# 2 CPU cores even when the sampler draws many large models. Trials still running at the budget are stopped
# and the search exports what it has.
DEFAULT_TIME_BUDGET_S = 450.0
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ConfigError(ValueError):
    """An invalid option; the message is one line meant for the user."""


@dataclass(frozen=True)
class NanInjection:
    """Fault injection for tests: trials whose ``latent_width`` matches (any trial when None) get a
    NaN weight at the start of ``epoch``, so that their loss really becomes non-finite. Settable
    from Python only; never exposed on the CLI."""

    epoch: int
    latent_width: int | None = None

    def applies(self, latent_width: int, epoch: int) -> bool:
        return epoch == self.epoch and self.latent_width in (None, latent_width)


@dataclass(frozen=True)
class SearchConfig:
    """All options of one search. Paths are absolute (or a URI for ``storage``) once validated."""

    trials: int | None = None  # None: DEFAULT_TRIALS, or on resume the experiment's own number
    max_epochs: int = 100  # good models here still improve at 100 epochs; ASHA stops the rest early
    grace_period: int = 10  # ASHA: epochs every trial runs before it can be stopped (rungs at 10, 30, 90)
    reduction_factor: int = 3  # ASHA: keep the top 1/reduction_factor at each rung
    time_budget_s: float | None = DEFAULT_TIME_BUDGET_S  # None: no limit; else stop the search after this long
    max_concurrent: int = 4
    cpus_per_trial: int = 1  # also the number of torch threads in each trial
    gpus_per_trial: float = 0.0
    dataset: str = "mnist"
    data_dir: str | None = None  # None: VAESEARCH_DATA_DIR, else torchvision download
    address: str | None = None  # None: start a local Ray; else join this cluster ("auto", "host:port")
    num_cpus: int | None = None  # CPUs of the local Ray (None: all); ignored with ``address``
    storage: str = str(DEFAULT_STORAGE.absolute())
    name: str | None = None  # None: a fresh timestamped name, or with ``resume`` the latest experiment
    resume: bool = False
    seed: int = 0
    wandb_project: str = "vaesearch"
    wandb_mode: WandbMode = "offline"
    space: SearchSpace = field(default_factory=SearchSpace)
    searcher: Searcher = "tpe"  # "random": same space, Optuna's RandomSampler; "grid": one trial per grid point
    early_stopping: bool = True  # ASHA on or off (off: every trial runs max_epochs)
    warm_start: bool = True  # evaluate the known baselines in the space first (tpe and random)
    grid: tuple[dict[str, Any], ...] = ARTICLE_GRID
    max_failures: int = 2  # retries of a failed trial (from its last checkpoint), FailureConfig
    keep_checkpoints: int = 1  # per trial, the best by val_neg_elbo (CheckpointConfig.num_to_keep)
    checkpoint_every: int | None = None  # epochs between writes of a trial's best epoch (None: grace_period)
    iwae_k: int = 1000  # importance samples of the best model's test IWAE bound
    reuse_actors: bool = True  # TuneConfig.reuse_actors: a new trial runs in a finished trial's actor
    verbose: int = 1  # Tune's console output: 0 silent, 1 progress table, 2 every result
    inject_nan: NanInjection | None = None

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        def positive_int(name: str, value: Any) -> None:
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")

        if self.trials is not None:
            positive_int("trials", self.trials)
        for name in ("max_epochs", "grace_period", "max_concurrent", "cpus_per_trial",
                     "keep_checkpoints", "iwae_k"):
            positive_int(name, getattr(self, name))
        if self.num_cpus is not None:
            positive_int("num_cpus", self.num_cpus)
        if self.checkpoint_every is not None:
            positive_int("checkpoint_every", self.checkpoint_every)
        need(self.grace_period <= self.max_epochs,
             f"--grace-period ({self.grace_period}) must not exceed --max-epochs ({self.max_epochs})")
        budget = self.time_budget_s
        need(budget is None or (isinstance(budget, (int, float)) and not isinstance(budget, bool)
                                and math.isfinite(budget) and budget > 0),
             f"--time-budget must be a positive number of seconds (0: no limit), got {budget!r}")
        need(isinstance(self.reduction_factor, int) and self.reduction_factor >= 2,
             f"reduction_factor must be an integer >= 2, got {self.reduction_factor!r}")
        gpus = self.gpus_per_trial
        need(isinstance(gpus, (int, float)) and math.isfinite(gpus) and gpus >= 0
             and (gpus <= 1 or float(gpus).is_integer()),
             f"--gpus-per-trial must be >= 0, a fraction up to 1 or a whole number, got {gpus!r}")
        need(self.dataset in DATASETS, f"unknown --dataset {self.dataset!r}; choose one of: {', '.join(DATASETS)}")
        need(self.data_dir is None or Path(self.data_dir).is_absolute(), "data_dir must be an absolute path")
        need(is_uri(self.storage) or Path(self.storage).is_absolute(),
             f"storage must be an absolute path or a URI, got {self.storage!r}")
        need(self.name is None or bool(_NAME.match(self.name)),
             f"--name {self.name!r} must be letters, digits, '.', '_' or '-' (no slashes)")
        need(isinstance(self.seed, int) and self.seed >= 0, f"--seed must be an integer >= 0, got {self.seed!r}")
        need(self.wandb_mode in WANDB_MODES, f"--wandb-mode must be one of {', '.join(WANDB_MODES)}")
        need(bool(self.wandb_project), "--wandb-project must not be empty")
        need(self.searcher in SEARCHERS, f"searcher must be one of {', '.join(SEARCHERS)}, got {self.searcher!r}")
        need(isinstance(self.max_failures, int) and self.max_failures >= 0, "max_failures must be >= 0")
        need(self.verbose in (0, 1, 2), "verbose must be 0, 1 or 2")
        need(self.address is None or bool(self.address.strip()), "--address must not be empty")
        need(isinstance(self.space, SearchSpace), "space must be a SearchSpace")
        try:
            if self.searcher == "grid":
                need(len(self.grid) > 0, "the grid is empty")
                for point in self.grid:
                    self.space.check(dict(point))
        except SpaceError as exc:
            raise ConfigError(str(exc)) from exc
        if self.inject_nan is not None:
            positive_int("inject_nan.epoch", self.inject_nan.epoch)

    @property
    def num_samples(self) -> int:
        """Trials Tune runs in total for a fresh search: ``trials``, or one per point for the grid."""
        if self.searcher == "grid":
            return len(self.grid)
        return DEFAULT_TRIALS if self.trials is None else self.trials

    @property
    def warm_start_points(self) -> list[dict[str, Any]]:
        """What random and TPE evaluate before sampling: the known baselines inside the space, or none."""
        return self.space.warm_start_points() if self.warm_start and self.searcher != "grid" else []

    @property
    def storage_is_uri(self) -> bool:
        return is_uri(self.storage)

    def experiment_path(self, name: str) -> str:
        """Where Tune keeps the experiment: a local folder or a URI."""
        return f"{self.storage.rstrip('/')}/{name}" if self.storage_is_uri else str(Path(self.storage) / name)

    def local_experiment_dir(self, name: str) -> Path:
        """A local folder for this experiment: the experiment itself for local storage, else
        ``./results/<name>`` (where best/ is written before it is uploaded, and W&B's files go)."""
        if self.storage_is_uri:
            return DEFAULT_STORAGE.absolute() / name
        return Path(self.storage) / name

    def replace(self, **changes: Any) -> SearchConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["space"] = self.space.to_dict()
        data["grid"] = [dict(p) for p in self.grid]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SearchConfig:
        """Inverse of ``to_dict`` (what an experiment stores about itself); unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["space"] = SearchSpace.from_mapping(values.get("space") or {})
        values["grid"] = tuple(dict(p) for p in values.get("grid", ARTICLE_GRID))
        if values.get("inject_nan"):
            values["inject_nan"] = NanInjection(**values["inject_nan"])
        return cls(**values)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


SMOKE_TEST = {
    "trials": 4, "max_epochs": 2, "grace_period": 1, "reduction_factor": 2, "max_concurrent": 2,
    "cpus_per_trial": 1,
}


def is_uri(path: str) -> bool:
    return "://" in str(path)
