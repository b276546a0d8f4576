"""What a trial's Tune checkpoint holds, so that a restarted trial continues where it stopped.

A trial checkpoint is a vae.checkpoint folder (``model.safetensors`` + ``checkpoint.json``, with an
examples bank and the class Gaussians, so that ``serve/`` and the export can serve it as is) plus two files
only a resuming trial needs: ``optimizer.safetensors`` (the optimizer's moments and the shuffling generator's
state) and ``progress.json`` (rounds done, metric history, the optimizer's param groups, the lr scheduler's
state): together a ``vae.train.TrainState``. Everything is safetensors or JSON: nothing stored is ever
executed when it is read back.
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
from vae.class_gaussians import fit_class_gaussians
from vae.config import TrainConfig
from vae.data import DataSplits
from vae.model import VAE
from vae.train import TrainState

CLASS_GAUSSIAN_IMAGES = 500  # per class: what a trial checkpoint's class Gaussians are fitted on

OPTIMIZER_FILE = "optimizer.safetensors"
PROGRESS_FILE = "progress.json"


@dataclass
class TrialSnapshot:
    """A copy, in memory, of a ``TrainState`` at one round (weights, optimizer, generator, schedule, history).

    Why: a trial checkpoints its best round by validation, but writing a Tune checkpoint at every
    improvement makes Tune snapshot the whole experiment each time (it does so with ``num_to_keep`` set). The trial
    keeps the best round here instead and writes it only at rungs and every few rounds (``save``)."""

    model: VAE
    optimizer_state: dict[str, Any]
    generator_state: torch.Tensor
    scheduler_state: dict[str, Any]
    round: int
    history: list[dict[str, float]]

    @classmethod
    def take(cls, state: TrainState) -> TrialSnapshot:
        optimizer = state.optimizer.state_dict()
        slots = {i: {k: v.detach().clone() for k, v in slot.items()} for i, slot in optimizer["state"].items()}
        groups = copy.deepcopy(optimizer["param_groups"])
        return cls(copy.deepcopy(state.model), {"state": slots, "param_groups": groups},
                   state.generator.get_state().clone(), copy.deepcopy(state.scheduler.state_dict()),
                   state.round, [dict(h) for h in state.history])

    def save(self, directory: str | Path, *, data: DataSplits, train_config: TrainConfig,
             extra: dict[str, Any]) -> Path:
        """Write the snapshot as a trial checkpoint, with the test split's examples bank, the class names and (for
        labelled data) class Gaussians fitted on at most CLASS_GAUSSIAN_IMAGES per class of the training split, as
        the app serves it."""
        directory = Path(directory)
        gaussians = fit_class_gaussians(self.model, data.train.images, data.train.labels, len(data.class_names),
                                        max_per_class=CLASS_GAUSSIAN_IMAGES) if data.labelled else None
        save_checkpoint(directory, self.model, dataset=data.dataset, metrics=self.history[-1],
                        train_config=train_config, extra=extra, examples=data.test, class_gaussians=gaussians,
                        class_names=data.class_names)
        tensors = {f"state.{index}.{key}": value.detach().cpu().contiguous()
                   for index, slots in self.optimizer_state["state"].items() for key, value in slots.items()}
        tensors["generator"] = self.generator_state.cpu()
        save_file(tensors, str(directory / OPTIMIZER_FILE))
        (directory / PROGRESS_FILE).write_text(json.dumps(
            {"round": self.round, "history": self.history,
             "param_groups": self.optimizer_state["param_groups"], "scheduler": self.scheduler_state}, default=float))
        return directory


def load_trial_checkpoint(directory: str | Path, state: TrainState) -> TrainState:
    """Load weights, optimizer, generator, schedule, rounds done and history into ``state`` (in place)."""
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
    state.round, state.history = int(data["round"]), list(data["history"])
    return state


class BestRoundCheckpoints:
    """The checkpoint a trial hands to Tune with a round's report: its best round by validation so far,
    copied in memory when it improves and written at each rung (where ASHA may stop the trial), every
    ``every`` rounds and at the trial's last round, only when it changed since the last write. So a
    trial's checkpoint is its best round, and a trial stopped between writes loses at most ``every``
    rounds."""

    def __init__(self, *, every: int, rungs: tuple[int, ...], written_round: int, data: DataSplits,
                 train_config: TrainConfig, trial_id: str) -> None:
        self.every, self.rungs, self.written_round = every, set(rungs), written_round
        self._data, self._train_config = data, train_config
        self._trial_id = trial_id
        self._best: TrialSnapshot | None = None

    @contextmanager
    def for_report(self, state: TrainState, *, last: bool) -> Iterator[tune.Checkpoint | None]:
        """The checkpoint to report with ``state``'s last round (None: none due); ``last``: the trial trains
        no further round. Valid inside the block."""
        if state.best_round == state.round:
            self._best = TrialSnapshot.take(state)
        due = last or state.round % self.every == 0 or state.round in self.rungs
        if not (due and self._best is not None and self._best.round > self.written_round):
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="vaesearch-ckpt-") as directory:
            self._best.save(directory, data=self._data, train_config=self._train_config,
                            extra={"trial_id": self._trial_id, "round": self._best.round})
            self.written_round = self._best.round
            # Ray types from_directory as returning ray.train's Checkpoint, the base class tune.Checkpoint extends
            yield tune.Checkpoint.from_directory(directory)  # type: ignore[misc]
