"""What a trial's Tune checkpoint holds, so that a restarted trial continues where it stopped.

A trial checkpoint is a vae.checkpoint folder (``model.safetensors`` + ``checkpoint.json``, which
``serve/`` and the export can read as is) plus two files only a resuming trial needs:
``optimizer.safetensors`` (Adam's moments and the shuffling generator's state) and ``progress.json``
(epochs done, metric history, Adam's param groups, the lr scheduler's state). Everything is safetensors or JSON: nothing
stored is ever executed when it is read back.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from vae.checkpoint import load_checkpoint, save_checkpoint
from vae.config import TrainConfig
from vae.model import LinearVAE

OPTIMIZER_FILE = "optimizer.safetensors"
PROGRESS_FILE = "progress.json"


@dataclass
class Progress:
    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def best_val_neg_elbo(self) -> float:
        return min((h["val_neg_elbo"] for h in self.history), default=float("inf"))

    @property
    def best_epoch(self) -> int:
        """The epoch with the lowest validation neg-ELBO so far (0 before the first)."""
        return int(min(self.history, key=lambda h: h["val_neg_elbo"])["epoch"]) if self.history else 0


@dataclass
class TrialSnapshot:
    """A trial's whole state at one epoch, copied in memory (weights, Adam, generator, scheduler, progress).

    Why: a trial checkpoints its best epoch by validation, but writing a Tune checkpoint at every
    improvement makes Tune snapshot the whole experiment each time (with ``num_to_keep=1``). The trial
    keeps the best epoch here instead and writes it only every few epochs (``save``)."""

    model: LinearVAE
    optimizer_state: dict[str, Any]
    generator_state: torch.Tensor
    scheduler_state: dict[str, Any] | None
    progress: Progress

    @classmethod
    def take(cls, model: LinearVAE, optimizer: torch.optim.Optimizer, generator: torch.Generator,
             progress: Progress, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> TrialSnapshot:
        state = optimizer.state_dict()
        slots = {i: {k: v.detach().clone() for k, v in per_param.items()} for i, per_param in state["state"].items()}
        return cls(copy.deepcopy(model), {"state": slots, "param_groups": copy.deepcopy(state["param_groups"])},
                   generator.get_state().clone(),
                   copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
                   Progress(progress.epoch, [dict(h) for h in progress.history]))

    def save(self, directory: str | Path, *, dataset: str, train_config: TrainConfig, extra: dict[str, Any]) -> Path:
        directory = Path(directory)
        progress = self.progress
        save_checkpoint(directory, self.model, dataset=dataset, metrics=progress.history[-1],
                        train_config=train_config, extra=extra)
        tensors = {f"state.{index}.{key}": value.detach().cpu().contiguous()
                   for index, slots in self.optimizer_state["state"].items() for key, value in slots.items()}
        tensors["generator"] = self.generator_state.cpu()
        save_file(tensors, str(directory / OPTIMIZER_FILE))
        (directory / PROGRESS_FILE).write_text(json.dumps(
            {"epoch": progress.epoch, "history": progress.history,
             "param_groups": self.optimizer_state["param_groups"], "scheduler": self.scheduler_state}, default=float))
        return directory


def save_trial_checkpoint(
    directory: str | Path,
    model: LinearVAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    progress: Progress,
    *,
    dataset: str,
    train_config: TrainConfig,
    extra: dict[str, Any],
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> Path:
    """Write the trial's current state as a checkpoint folder (see the module docstring)."""
    return TrialSnapshot.take(model, optimizer, generator, progress, scheduler).save(
        directory, dataset=dataset, train_config=train_config, extra=extra)


def load_trial_checkpoint(
    directory: str | Path,
    model: LinearVAE,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> Progress:
    """Load weights, optimizer, generator and scheduler state in place; return the progress so far."""
    directory = Path(directory)
    saved = load_checkpoint(directory, device=next(model.parameters()).device)
    model.load_state_dict(saved.model.state_dict())
    data = json.loads((directory / PROGRESS_FILE).read_text())
    tensors = load_file(str(directory / OPTIMIZER_FILE))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": slots, "param_groups": data["param_groups"]})
    generator.set_state(tensors["generator"].to(torch.uint8))
    if scheduler is not None and data.get("scheduler"):
        scheduler.load_state_dict(data["scheduler"])
    return Progress(epoch=int(data["epoch"]), history=list(data["history"]))
