"""Weights & Biases tracking of each trial, through Ray's ``setup_wandb``: one W&B run per trial,
grouped by experiment, with the config, the per-epoch metrics and a grid of generated digits 0..9.

W&B is never required: with no key configured runs are written offline (``wandb sync`` uploads them
later), ``disabled`` turns it off, and any W&B failure becomes a warning, never a failed trial.
"""

from __future__ import annotations

import logging
import netrc
import os
from dataclasses import asdict, dataclass
from typing import Any

import torch

from vae.data import Split
from vae.model import VAE
from vae.sample import generate_class, grid_to_uint8

log = logging.getLogger(__name__)

WANDB_HOST = "api.wandb.ai"
SAMPLES_PER_CLASS = 8


def wandb_key_configured() -> bool:
    """Whether a W&B API key is set in the environment or in ~/.netrc (the key itself is never read out)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def default_wandb_mode() -> str:
    return "online" if wandb_key_configured() else "offline"


@dataclass(frozen=True)
class WandbSettings:
    project: str
    mode: str  # online | offline | disabled
    group: str  # the experiment name
    dir: str  # WANDB_DIR: a local folder of the experiment

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class TrialTracker:
    """The W&B run of one trial. Every method swallows W&B errors (logged as warnings)."""

    def __init__(self, settings: WandbSettings, config: dict[str, Any], *, trial_id: str | None = None,
                 trial_name: str | None = None) -> None:
        self.run = None
        if settings.mode == "disabled":
            return
        try:
            from ray.air.integrations.wandb import setup_wandb

            os.makedirs(settings.dir, exist_ok=True)
            os.environ["WANDB_DIR"] = settings.dir
            os.environ["WANDB_MODE"] = settings.mode
            os.environ.setdefault("WANDB_SILENT", "true")
            ids: dict[str, Any] = {k: v for k, v in {"trial_id": trial_id, "trial_name": trial_name}.items() if v}
            self.run = setup_wandb(config, project=settings.project, group=settings.group, mode=settings.mode,
                                   dir=settings.dir, **ids)
        except Exception as exc:  # W&B must never fail a trial
            log.warning("W&B disabled for this trial: %s: %s", type(exc).__name__, exc)
            self.run = None

    def log(self, metrics: dict[str, Any], *, step: int, model: VAE | None = None,
            examples: Split | None = None) -> None:
        if self.run is None:
            return
        try:
            payload = dict(metrics)
            if model is not None and examples is not None:
                import wandb

                payload["samples"] = wandb.Image(digit_grid(model, examples).numpy(),
                                                 caption="posterior samples of test images, one row per class")
            self.run.log(payload, step=step)
        except Exception as exc:
            log.warning("W&B log failed: %s: %s", type(exc).__name__, exc)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is None:
            return
        import wandb

        run, self.run = self.run, None
        try:
            run.finish(exit_code=exit_code)
        except Exception as exc:
            log.warning("W&B finish failed: %s: %s", type(exc).__name__, exc)
        try:
            wandb.teardown()  # close the W&B service now, not in an atexit hook of a process Tune is ending
        except Exception as exc:
            log.warning("W&B teardown failed: %s: %s", type(exc).__name__, exc)


def digit_grid(model: VAE, examples: Split, per_class: int = SAMPLES_PER_CLASS, seed: int = 0) -> torch.Tensor:
    """[H, W, 3] uint8: one row per class present in ``examples``, ``per_class`` posterior samples each."""
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    rows = [generate_class(model, examples.images, examples.labels, int(cls), per_class, generator=generator).samples
            for cls in torch.unique(examples.labels).tolist()]
    return grid_to_uint8(torch.cat(rows), nrow=per_class).cpu()
