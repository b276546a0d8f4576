"""What a trial's Tune checkpoint holds, so that a restarted trial continues where it stopped.

A trial checkpoint is a vae.checkpoint folder (``model.safetensors`` + ``checkpoint.json``, which
``serve/`` and the export can read as is) plus two files only a resuming trial needs:
``optimizer.safetensors`` (Adam's moments and the shuffling generator's state) and ``progress.json``
(epochs done, metric history, Adam's param groups, the lr scheduler's state): together a
``vae.train.TrainState``. Everything is safetensors or JSON: nothing stored is ever executed when it is
read back.
"""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from ray import tune
from safetensors.torch import load_file, save_file

from vae.checkpoint import load_checkpoint, save_checkpoint
from vae.config import TrainConfig
from vae.model import LinearVAE
from vae.train import TrainState

OPTIMIZER_FILE = "optimizer.safetensors"
PROGRESS_FILE = "progress.json"


@dataclass
class TrialSnapshot:
    """A copy, in memory, of a ``TrainState`` at one epoch (weights, Adam, generator, schedule, history).

    Why: a trial checkpoints its best epoch by validation, but writing a Tune checkpoint at every
    improvement makes Tune snapshot the whole experiment each time (it does so with ``num_to_keep`` set). The trial
    keeps the best epoch here instead and writes it only every few epochs (``save``)."""

    model: LinearVAE
    optimizer_state: dict[str, Any]
    generator_state: torch.Tensor
    scheduler_state: dict[str, Any]
    epoch: int
    history: list[dict[str, float]]

    @classmethod
    def take(cls, state: TrainState) -> TrialSnapshot:
        optimizer = state.optimizer.state_dict()
        slots = {i: {k: v.detach().clone() for k, v in slot.items()} for i, slot in optimizer["state"].items()}
        groups = copy.deepcopy(optimizer["param_groups"])
        return cls(copy.deepcopy(state.model), {"state": slots, "param_groups": groups},
                   state.generator.get_state().clone(), copy.deepcopy(state.scheduler.state_dict()),
                   state.epoch, [dict(h) for h in state.history])

    def save(self, directory: str | Path, *, dataset: str, train_config: TrainConfig, extra: dict[str, Any]) -> Path:
        directory = Path(directory)
        save_checkpoint(directory, self.model, dataset=dataset, metrics=self.history[-1],
                        train_config=train_config, extra=extra)
        tensors = {f"state.{index}.{key}": value.detach().cpu().contiguous()
                   for index, slots in self.optimizer_state["state"].items() for key, value in slots.items()}
        tensors["generator"] = self.generator_state.cpu()
        save_file(tensors, str(directory / OPTIMIZER_FILE))
        (directory / PROGRESS_FILE).write_text(json.dumps(
            {"epoch": self.epoch, "history": self.history,
             "param_groups": self.optimizer_state["param_groups"], "scheduler": self.scheduler_state}, default=float))
        return directory


def load_trial_checkpoint(directory: str | Path, state: TrainState) -> TrainState:
    """Load weights, optimizer, generator, schedule, epochs done and history into ``state`` (in place)."""
    directory = Path(directory)
    saved = load_checkpoint(directory, device=next(state.model.parameters()).device)
    state.model.load_state_dict(saved.model.state_dict())
    data = json.loads((directory / PROGRESS_FILE).read_text())
    tensors = load_file(str(directory / OPTIMIZER_FILE))
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("state."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    state.optimizer.load_state_dict({"state": slots, "param_groups": data["param_groups"]})
    state.generator.set_state(tensors["generator"].to(torch.uint8))
    if data.get("scheduler"):
        state.scheduler.load_state_dict(data["scheduler"])
    state.epoch, state.history = int(data["epoch"]), list(data["history"])
    return state


class BestEpochCheckpoints:
    """The checkpoint a trial hands to Tune with an epoch's report: its best epoch by validation so far,
    copied in memory when it improves and written every ``every`` epochs (the ASHA grace period: every
    rung ASHA decides at is a multiple of it) and at the last epoch, only when it changed since the last
    write. So a trial's checkpoint is its best epoch, and a trial stopped between writes loses at most
    ``every`` epochs."""

    def __init__(self, *, every: int, last_epoch: int, written_epoch: int, dataset: str, train_config: TrainConfig,
                 trial_id: str) -> None:
        self.every, self.last_epoch, self.written_epoch = every, last_epoch, written_epoch
        self._save = {"dataset": dataset, "train_config": train_config}
        self._trial_id = trial_id
        self._best: TrialSnapshot | None = None

    @contextmanager
    def for_report(self, state: TrainState) -> Iterator[tune.Checkpoint | None]:
        """The checkpoint to report with ``state``'s last epoch (None: none due); valid inside the block."""
        if state.best_epoch == state.epoch:
            self._best = TrialSnapshot.take(state)
        due = state.epoch % self.every == 0 or state.epoch == self.last_epoch
        if not (due and self._best is not None and self._best.epoch > self.written_epoch):
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="vaesearch-ckpt-") as directory:
            self._best.save(directory, **self._save, extra={"trial_id": self._trial_id, "epoch": self._best.epoch})
            self.written_epoch = self._best.epoch
            yield tune.Checkpoint.from_directory(directory)
