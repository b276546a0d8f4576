"""A trial's checkpoint is a vae.checkpoint folder plus what resumes its TrainState; a snapshot is the best
epoch, not the current one; BestEpochCheckpoints writes the best epoch only when due and changed."""

from __future__ import annotations

import math

import pytest
import torch

from search.trial_state import BestEpochCheckpoints, TrialSnapshot, load_trial_checkpoint
from vae.checkpoint import load_checkpoint
from vae.config import ModelConfig, TrainConfig
from vae.train import TrainState

CPU = torch.device("cpu")


def _step(state: TrainState, val_neg_elbo: float) -> None:
    """One fake epoch: an optimizer step, a scheduler step and a shuffle, recorded in the history."""
    x = torch.rand(32, 784)
    state.optimizer.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(state.model(x).logits, x).backward()
    state.optimizer.step()
    state.scheduler.step()
    torch.randperm(10, generator=state.generator)
    state.epoch += 1
    state.history.append({"epoch": state.epoch, "val_neg_elbo": val_neg_elbo})


def test_a_trial_checkpoint_round_trip_restores_the_whole_train_state(tmp_path):
    train_config = TrainConfig(lr=1e-3, epochs=10, lr_schedule="cosine")
    state = TrainState.fresh(ModelConfig(32, 4), train_config, CPU)
    _step(state, 123.0)
    TrialSnapshot.take(state).save(tmp_path, dataset="mnist", train_config=train_config, extra={"trial_id": "t1"})

    assert load_checkpoint(tmp_path).meta["trial_id"] == "t1"  # a plain vae.checkpoint as well
    fresh = TrainState.fresh(ModelConfig(32, 4), TrainConfig(lr=1e-3, epochs=10, lr_schedule="cosine", seed=5), CPU)
    load_trial_checkpoint(tmp_path, fresh)
    assert fresh.epoch == 1 and fresh.best_val_neg_elbo == 123.0 and fresh.best_epoch == 1
    for p, q in zip(state.model.parameters(), fresh.model.parameters(), strict=True):
        assert torch.equal(p, q)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(state.optimizer.state_dict()["state"][0][key], fresh.optimizer.state_dict()["state"][0][key])
    assert fresh.scheduler.last_epoch == 1
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(state.optimizer.param_groups[0]["lr"])
    assert torch.equal(torch.randperm(100, generator=state.generator), torch.randperm(100, generator=fresh.generator))


def test_a_snapshot_saves_the_best_epoch_not_the_current_one(tmp_path):
    train_config = TrainConfig(lr=1e-3, epochs=10, lr_schedule="cosine")
    state = TrainState.fresh(ModelConfig(16, 2, depth=2), train_config, CPU)
    for loss in (100.0, 99.0):
        _step(state, loss)
    snapshot = TrialSnapshot.take(state)
    best_weights = {k: v.clone() for k, v in state.model.state_dict().items()}
    _step(state, 98.5)  # the live state moves on; the snapshot must not
    snapshot.save(tmp_path, dataset="mnist", train_config=train_config, extra={})

    restored = load_trial_checkpoint(tmp_path, TrainState.fresh(ModelConfig(16, 2, depth=2), train_config, CPU))
    assert restored.epoch == 2 and len(restored.history) == 2
    for key, value in best_weights.items():
        assert torch.equal(restored.model.state_dict()[key], value)
    assert restored.scheduler.last_epoch == 2
    assert restored.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 2 / 10)) / 2)
    assert restored.optimizer.param_groups[0]["lr"] > state.optimizer.param_groups[0]["lr"]  # the live one is at 3


def test_best_epoch_checkpoints_are_written_when_due_and_only_when_the_best_changed():
    train_config = TrainConfig(epochs=7)
    state = TrainState.fresh(ModelConfig(16, 2), train_config, CPU)
    checkpoints = BestEpochCheckpoints(every=3, last_epoch=7, written_epoch=0, dataset="mnist",
                                       train_config=train_config, trial_id="t")
    written = {}
    for loss in (10.0, 9.0, 9.5, 9.7, 8.0, 8.5, 8.9):  # best epochs: 1, 2, 2, 2, 5, 5, 5
        _step(state, loss)
        with checkpoints.for_report(state) as checkpoint:
            if checkpoint is not None:
                with checkpoint.as_directory() as directory:
                    written[state.epoch] = load_checkpoint(directory).meta["epoch"]
    # due at 3 and 6 (every 3) and 7 (the last): epoch 3 writes the best (2), 6 writes 5, 7 has nothing new
    assert written == {3: 2, 6: 5}
