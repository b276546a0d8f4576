"""The training loop: it learns, it is reproducible on CPU, and it reports what it measured."""

from __future__ import annotations

import math

import pytest
import torch

from vae.config import ModelConfig, TrainConfig
from vae.data import DataSplits, Split
from vae.model import build_model
from vae.train import NonFiniteLossError, TrainState, evaluate, fit, pick_device, train_round


def _small(splits: DataSplits, n_train: int) -> DataSplits:
    train = Split(splits.train.images[:n_train], splits.train.labels[:n_train])
    return DataSplits(splits.dataset, train, splits.val, splits.test, splits.source)


def test_short_training_run_lowers_validation_neg_elbo(mnist_splits: DataSplits) -> None:
    config = ModelConfig(64, 8)
    torch.manual_seed(0)
    untrained = evaluate(build_model(config), mnist_splits.val.images)["neg_elbo"]
    assert 500 < untrained < 600  # about 784 ln 2 = 543 nats: sigmoid(~0) everywhere
    result = fit(config, TrainConfig(rounds=3), mnist_splits, device=torch.device("cpu"))  # lr 3e-4, batch 128
    val = [h["val_neg_elbo"] for h in result.history]
    assert val[-1] < untrained - 150, (untrained, val)
    assert val[-1] < val[0]
    assert result.best_val_neg_elbo == min(val)
    last = result.history[-1]
    assert math.isclose(last["val_neg_elbo"], last["val_recon"] + last["val_kl"], rel_tol=1e-5)
    assert last["val_kl"] > 0 and 0 < last["val_active_units"] <= 8
    assert last["round"] == 3 and last["train_samples_per_s"] > 0


def test_fixture_model_is_well_trained(trained_fit) -> None:
    # The shared fixture (128/16, lr 3e-3, 8 epochs on 8000 images) is what the sampling and
    # checkpoint tests rely on: it must be far below the untrained ~543 nats.
    assert trained_fit.history[-1]["val_neg_elbo"] < 160


def test_training_is_reproducible_on_cpu(mnist_splits: DataSplits) -> None:
    data = _small(mnist_splits, 1000)
    first = fit(ModelConfig(32, 4), TrainConfig(rounds=2, seed=7), data, device=torch.device("cpu"))
    second = fit(ModelConfig(32, 4), TrainConfig(rounds=2, seed=7), data, device=torch.device("cpu"))
    other = fit(ModelConfig(32, 4), TrainConfig(rounds=2, seed=8), data, device=torch.device("cpu"))
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert first.history[-1]["val_neg_elbo"] == second.history[-1]["val_neg_elbo"]
    assert not torch.equal(first.model.hidden_to_mu.weight, other.model.hidden_to_mu.weight)


def test_fit_resumed_from_its_state_continues_the_same_run(mnist_splits: DataSplits) -> None:
    """Two epochs, then two more from the returned state, is the same run as four epochs at once: the one
    loop a search trial resumes with."""
    data = _small(mnist_splits, 1000)
    cpu = torch.device("cpu")
    train_config = TrainConfig(rounds=4, lr=1e-3, lr_schedule="cosine", warmup_rounds=2, seed=3)
    straight = fit(ModelConfig(32, 4, depth=2), train_config, data, device=cpu)
    state = TrainState.fresh(ModelConfig(32, 4, depth=2), train_config, cpu)
    seen = []

    def stop_after_two(state: TrainState, metrics: dict[str, float]) -> bool:
        seen.append((state.round, metrics["round"], len(state.history)))
        return state.round == 2

    first = fit(ModelConfig(32, 4, depth=2), train_config, data, device=cpu, state=state, on_round=stop_after_two)
    assert seen == [(1, 1, 1), (2, 2, 2)] and state.round == 2 and len(first.history) == 2
    resumed = fit(ModelConfig(32, 4, depth=2), train_config, data, device=cpu, state=state)
    assert [h["round"] for h in resumed.history] == [1, 2, 3, 4]
    assert [h["val_neg_elbo"] for h in resumed.history] == [h["val_neg_elbo"] for h in straight.history]
    assert [h["lr"] for h in resumed.history] == [h["lr"] for h in straight.history]
    for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert state.best_round == resumed.best_round and state.best_val_neg_elbo == resumed.best_val_neg_elbo


def test_fit_metric_names_are_the_ones_the_search_reports(mnist_splits: DataSplits) -> None:
    result = fit(ModelConfig(16, 2), TrainConfig(rounds=1), _small(mnist_splits, 500), device=torch.device("cpu"))
    assert set(result.history[0]) == {
        "round", "images", "epochs", "last_round", "lr", "kl_weight", "elapsed_s", "val_time_s", "val_bits_per_dim",
        "train_neg_elbo", "train_recon", "train_kl", "train_samples_per_s", "train_time_s", "train_data_s",
        "train_step_s", "val_neg_elbo", "val_recon", "val_kl", "val_active_units",
    }


def test_train_round_reports_means_and_timing(mnist_splits: DataSplits) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = mnist_splits.train.images[:1000]
    before = [p.detach().clone() for p in model.parameters()]
    metrics = train_round(model, optimizer, images, batch_size=300)  # last batch is partial (100)
    assert set(metrics) >= {"neg_elbo", "recon", "kl", "samples_per_s", "time_s", "data_s", "step_s"}
    assert math.isclose(metrics["neg_elbo"], metrics["recon"] + metrics["kl"], rel_tol=1e-5)
    assert 300 < metrics["neg_elbo"] < 600
    assert metrics["data_s"] + metrics["step_s"] <= metrics["time_s"] * 1.01
    assert math.isclose(metrics["samples_per_s"], 1000 / metrics["time_s"], rel_tol=1e-6)
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_beta_weights_the_kl_in_the_objective(mnist_splits: DataSplits) -> None:
    data = _small(mnist_splits, 2000)
    plain = fit(ModelConfig(32, 4), TrainConfig(rounds=2, lr=1e-3), data, device=torch.device("cpu"))
    heavy = fit(ModelConfig(32, 4), TrainConfig(rounds=2, lr=1e-3, beta=8.0), data, device=torch.device("cpu"))
    assert heavy.history[-1]["val_kl"] < plain.history[-1]["val_kl"]


def test_evaluate_is_repeatable(trained_fit, mnist_splits: DataSplits) -> None:
    first = evaluate(trained_fit.model, mnist_splits.val.images, seed=3)
    assert first == evaluate(trained_fit.model, mnist_splits.val.images, seed=3)
    assert first == evaluate(trained_fit.model, mnist_splits.val.images, seed=3, batch_size=1000)


def test_non_finite_loss_is_reported() -> None:
    model = build_model(ModelConfig(8, 2))
    images = torch.rand(64, 784)
    images[5, 3] = float("nan")
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        train_round(model, torch.optim.Adam(model.parameters()), images, batch_size=32)


def test_pick_device() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
