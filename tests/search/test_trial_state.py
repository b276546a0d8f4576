"""A trial's checkpoint is a vae.checkpoint folder (with an examples bank and class Gaussians, so that it can be
served as is) plus what resumes its TrainState; a snapshot is the best round, not the current one;
BestRoundCheckpoints writes the best round only when due (every few rounds, at a rung, at the last round) and
changed."""

from __future__ import annotations

import math

import pytest
import torch

from search.trial_state import BestRoundCheckpoints, TrialSnapshot, load_trial_checkpoint
from vae.checkpoint import load_checkpoint
from vae.config import ModelConfig, TrainConfig
from vae.data import DataSplits, Split
from vae.train import TrainState

CPU = torch.device("cpu")


def _data() -> DataSplits:
    images = torch.rand(60, 784, generator=torch.Generator().manual_seed(0))
    split = Split(images, torch.arange(60) % 10)
    return DataSplits("mnist", split, split, split, "random")


def _step(state: TrainState, val_neg_elbo: float) -> None:
    """One fake round: an optimizer step, a scheduler step and a shuffle, recorded in the history."""
    x = torch.rand(32, 784)
    state.optimizer.zero_grad()
    torch.nn.functional.binary_cross_entropy_with_logits(state.model(x).logits, x).backward()
    state.optimizer.step()
    state.scheduler.step()
    torch.randperm(10, generator=state.generator)
    state.round += 1
    state.history.append({"round": state.round, "val_neg_elbo": val_neg_elbo})


def test_a_trial_checkpoint_round_trip_restores_the_whole_train_state(tmp_path):
    train_config = TrainConfig(lr=1e-3, rounds=10, lr_schedule="cosine")
    state = TrainState.fresh(ModelConfig(32, 4), train_config, CPU)
    _step(state, 123.0)
    TrialSnapshot.take(state).save(tmp_path, data=_data(), train_config=train_config, extra={"trial_id": "t1"})

    served = load_checkpoint(tmp_path)  # a plain vae.checkpoint as well, with what the app serves from
    assert served.meta["trial_id"] == "t1"
    assert served.class_gaussians is not None and served.class_gaussians.num_classes == 10
    assert served.examples is not None and set(served.examples.labels.tolist()) == set(range(10))
    fresh = TrainState.fresh(ModelConfig(32, 4), TrainConfig(lr=1e-3, rounds=10, lr_schedule="cosine", seed=5), CPU)
    load_trial_checkpoint(tmp_path, fresh)
    assert fresh.round == 1 and fresh.best_val_neg_elbo == 123.0 and fresh.best_round == 1
    for p, q in zip(state.model.parameters(), fresh.model.parameters(), strict=True):
        assert torch.equal(p, q)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(state.optimizer.state_dict()["state"][0][key], fresh.optimizer.state_dict()["state"][0][key])
    assert fresh.scheduler.last_epoch == 1
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(state.optimizer.param_groups[0]["lr"])
    assert torch.equal(torch.randperm(100, generator=state.generator), torch.randperm(100, generator=fresh.generator))


def test_a_snapshot_saves_the_best_round_not_the_current_one(tmp_path):
    train_config = TrainConfig(lr=1e-3, rounds=10, lr_schedule="cosine")
    state = TrainState.fresh(ModelConfig(16, 2, depth=2), train_config, CPU)
    for loss in (100.0, 99.0):
        _step(state, loss)
    snapshot = TrialSnapshot.take(state)
    best_weights = {k: v.clone() for k, v in state.model.state_dict().items()}
    _step(state, 98.5)  # the live state moves on; the snapshot must not
    snapshot.save(tmp_path, data=_data(), train_config=train_config, extra={})

    restored = load_trial_checkpoint(tmp_path, TrainState.fresh(ModelConfig(16, 2, depth=2), train_config, CPU))
    assert restored.round == 2 and len(restored.history) == 2
    for key, value in best_weights.items():
        assert torch.equal(restored.model.state_dict()[key], value)
    assert restored.scheduler.last_epoch == 2
    assert restored.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 2 / 10)) / 2)
    assert restored.optimizer.param_groups[0]["lr"] > state.optimizer.param_groups[0]["lr"]  # the live one is at 3


def test_best_round_checkpoints_are_written_when_due_and_only_when_the_best_changed():
    train_config = TrainConfig(rounds=9)
    state = TrainState.fresh(ModelConfig(16, 2), train_config, CPU)
    checkpoints = BestRoundCheckpoints(every=3, rungs=(4,), written_round=0, data=_data(),
                                       train_config=train_config, trial_id="t")
    written = {}
    losses = (10.0, 9.0, 9.5, 8.7, 8.0, 8.5, 8.9, 8.95, 7.0)  # best rounds: 1, 2, 2, 4, 5, 5, 5, 5, 9
    for number, loss in enumerate(losses, 1):
        _step(state, loss)
        with checkpoints.for_report(state, last=number == 8) as checkpoint:
            if checkpoint is not None:
                with checkpoint.as_directory() as directory:
                    written[state.round] = load_checkpoint(directory).meta["round"]
    # due at 3, 6, 9 (every 3), 4 (a rung) and 8 (the last round): 3 writes the best (2), 4 writes 4, 6 writes 5,
    # 8 has nothing new, 9 writes 9
    assert written == {3: 2, 4: 4, 6: 5, 9: 9}
