"""A trial's config as Tune hands it to the trainable: the searched values (search.hyperparams) at the top
level and, under ``"run"``, the experiment-wide settings (``TrialSettings``); turned here into vae/'s typed
configs. Also the names of the metrics a trial reports that the rest of the search keys on."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from search.hyperparams import config_fields, hyperparameters
from search.space import model_config
from vae.config import ModelConfig, TrainConfig

METRIC = "val_neg_elbo"
BEST_METRIC = "best_val_neg_elbo"  # what a trial's checkpoint holds: its best round so far by METRIC
MODE = "min"
ROUND = "round"  # the rounds a trial has trained: ASHA's time attribute
RUN_KEY = "run"


@dataclass(frozen=True)
class TrialSettings:
    """The experiment-wide part of a trial's config (the same for every trial)."""

    max_rounds: int
    round_images: int
    val_images: int
    rungs: tuple[int, ...]  # where ASHA judges a trial: its checkpoint is written there
    image_shape: tuple[int, int, int]  # the data's C, H, W
    dataset: str
    seed: int
    threads: int
    wandb: dict[str, str]
    checkpoint_every: int = 1  # rounds between checkpoint writes of the best round (also at rungs and the end)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSettings:
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**values)


@dataclass(frozen=True)
class TrialConfig:
    settings: TrialSettings
    hyper: dict[str, Any]  # the searched values
    model: ModelConfig
    train: TrainConfig

    @classmethod
    def from_tune(cls, config: dict[str, Any]) -> TrialConfig:
        settings = TrialSettings.from_dict(config[RUN_KEY])
        hyper = hyperparameters({k: v for k, v in config.items() if k != RUN_KEY})
        train = TrainConfig(**config_fields(hyper, "train"), rounds=settings.max_rounds,
                            round_images=settings.round_images, val_images=settings.val_images, seed=settings.seed)
        return cls(settings, hyper, model_config(hyper, settings.image_shape), train)
