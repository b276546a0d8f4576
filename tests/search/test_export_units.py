from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import torch

from search.export import ERROR, pareto_front, trial_epoch_curve
from search.trial_state import Progress, load_trial_checkpoint, save_trial_checkpoint
from vae.checkpoint import load_checkpoint
from vae.config import ModelConfig, TrainConfig
from vae.model import LinearVAE


def _row(trial_id, parameters, loss, status="TERMINATED"):
    return {"trial_id": trial_id, "parameters": parameters, "best_val_neg_elbo": loss, "status": status}


def test_pareto_front_keeps_only_undominated_trials_smallest_first():
    rows = [_row("big-best", 900, 100.0), _row("small", 100, 130.0), _row("mid", 400, 110.0),
            _row("mid-worse", 500, 120.0), _row("tiny-bad", 50, 200.0), _row("failed", 10, None, ERROR)]
    assert [r["trial_id"] for r in pareto_front(rows)] == ["tiny-bad", "small", "mid", "big-best"]


def test_curve_counts_trial_epochs_in_report_order_and_keeps_the_running_best():
    a = SimpleNamespace(metrics_dataframe=pd.DataFrame({"timestamp": [1, 4, 6], "val_neg_elbo": [150.0, 120.0, 119.0]}))
    b = SimpleNamespace(metrics_dataframe=pd.DataFrame({"timestamp": [2, 3], "val_neg_elbo": [130.0, math.nan]}))
    never = SimpleNamespace(metrics_dataframe=None)
    assert trial_epoch_curve([a, b, never]) == [(1, 150.0), (2, 130.0), (3, 130.0), (4, 120.0), (5, 119.0)]


def test_curve_orders_reports_within_one_second_by_the_float_clock():
    # Tune's timestamp is whole seconds: both trials report in second 7, in the opposite order.
    a = SimpleNamespace(metrics_dataframe=pd.DataFrame(
        {"timestamp": [7, 7], "reported_at": [7.9, 7.95], "val_neg_elbo": [140.0, 110.0]}))
    b = SimpleNamespace(metrics_dataframe=pd.DataFrame(
        {"timestamp": [7], "reported_at": [7.1], "val_neg_elbo": [150.0]}))
    assert trial_epoch_curve([a, b]) == [(1, 150.0), (2, 140.0), (3, 110.0)]


def test_trial_checkpoint_round_trip_restores_weights_optimizer_and_generator(tmp_path):
    torch.manual_seed(0)
    model = LinearVAE(ModelConfig(32, 4))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(16, 784)
    out = model(x)
    torch.nn.functional.binary_cross_entropy_with_logits(out.logits, x).backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(3)
    torch.randperm(10, generator=generator)
    progress = Progress(epoch=1, history=[{"epoch": 1, "val_neg_elbo": 123.0}])
    save_trial_checkpoint(tmp_path, model, optimizer, generator, progress, dataset="mnist",
                          train_config=TrainConfig(lr=1e-3), extra={"trial_id": "t1"})

    assert load_checkpoint(tmp_path).meta["trial_id"] == "t1"  # a plain vae.checkpoint as well
    fresh = LinearVAE(ModelConfig(32, 4))
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    fresh_gen = torch.Generator()
    restored = load_trial_checkpoint(tmp_path, fresh, fresh_opt, fresh_gen)
    assert restored.epoch == 1 and restored.best_val_neg_elbo == 123.0
    for p, q in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(p, q)
    for key in ("exp_avg", "exp_avg_sq", "step"):
        assert torch.equal(optimizer.state_dict()["state"][0][key], fresh_opt.state_dict()["state"][0][key])
    assert torch.equal(torch.randperm(100, generator=generator), torch.randperm(100, generator=fresh_gen))
