"""A trial's config as Tune hands it to the trainable: the searched values (``search.space.PARAMS``) at
the top level and, under ``"run"``, the experiment-wide settings (``TrialSettings``); turned here into
vae/'s typed configs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from search.space import hyperparameters, model_config
from vae.config import ModelConfig, TrainConfig

METRIC = "val_neg_elbo"
BEST_METRIC = "best_val_neg_elbo"  # what a trial's checkpoint holds: its best epoch so far by METRIC
MODE = "min"


@dataclass(frozen=True)
class TrialSettings:
    """The experiment-wide part of a trial's config (the same for every trial)."""

    max_epochs: int
    dataset: str
    data_dir: str | None
    seed: int
    threads: int
    wandb: dict[str, str]
    checkpoint_every: int = 1  # epochs between checkpoint writes of the best epoch (and at the last epoch)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSettings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}  # older experiments stored more
        return cls(**known)


@dataclass(frozen=True)
class TrialConfig:
    settings: TrialSettings
    hyper: dict[str, Any]  # the searched values
    model: ModelConfig
    train: TrainConfig

    @classmethod
    def from_tune(cls, config: dict[str, Any]) -> TrialConfig:
        settings = TrialSettings.from_dict(config["run"])
        hyper = hyperparameters(config)
        model = model_config(hyper)
        train = TrainConfig(lr=float(hyper["lr"]), batch_size=int(hyper["batch_size"]), epochs=settings.max_epochs,
                            seed=settings.seed, lr_schedule=str(hyper["lr_schedule"]),
                            warmup_epochs=int(hyper["kl_warmup_epochs"]))
        return cls(settings, hyper, model, train)
