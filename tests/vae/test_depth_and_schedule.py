"""Depth 2 and 3 models, old (format 1) checkpoints, the cosine lr schedule, the KL warm-up, best-epoch restore."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vae.checkpoint import FORMAT, FORMAT_VERSION, META_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from vae.config import MAX_DEPTH, ModelConfig, TrainConfig
from vae.data import DataSplits, Split
from vae.model import build_model, count_parameters, flops_per_sample
from vae.train import evaluate, fit, kl_weight, main

DEPTH_1_KEYS = {f"{layer}.{kind}" for layer in ("input_to_hidden", "hidden_to_mu", "hidden_to_log_var",
                                                 "z_to_hidden", "hidden_to_output") for kind in ("weight", "bias")}


def _tiny_data(n: int = 64, dim: int = 784) -> DataSplits:
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(3 * n, dim, generator=generator) > 0.7).float()
    labels = torch.arange(3 * n) % 10
    return DataSplits("mnist", Split(images[:n], labels[:n]), Split(images[n:2 * n], labels[n:2 * n]),
                      Split(images[2 * n:], labels[2 * n:]), "random test images")


def test_depth_one_keeps_the_article_layers_and_key_names():
    assert set(build_model(ModelConfig(32, 4)).state_dict()) == DEPTH_1_KEYS


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_parameter_and_flop_counts_match_the_built_model(depth):
    config = ModelConfig(48, 6, depth=depth)
    model = build_model(config)
    assert count_parameters(config) == model.num_parameters()
    macs = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert flops_per_sample(config) == 2 * macs


@pytest.mark.parametrize("depth", [2, 3])
def test_deeper_models_train_and_round_trip_through_a_checkpoint(depth, tmp_path):
    data = _tiny_data()
    result = fit(ModelConfig(32, 4, depth=depth), TrainConfig(lr=1e-3, rounds=3, batch_size=16), data,
                 device=torch.device("cpu"))
    assert result.history[-1]["train_neg_elbo"] < result.history[0]["train_neg_elbo"]
    assert len(result.model.encoder_hidden) == len(result.model.decoder_hidden) == depth - 1
    save_checkpoint(tmp_path / "ckpt", result.model, dataset="mnist")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config.depth == depth
    assert json.loads((tmp_path / "ckpt" / META_FILE).read_text())["format_version"] == FORMAT_VERSION
    x = data.test.images[:8]
    noise = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(result.model.eval()(x, noise).logits, loaded.model(x, noise).logits)


def test_a_format_1_checkpoint_without_depth_still_loads(tmp_path):
    """Written the way format 1 did: the depth-1 keys and a model_config without ``depth``."""
    model = build_model(ModelConfig(16, 2))
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE),
              metadata={"format": FORMAT})
    (folder / META_FILE).write_text(json.dumps({
        "format": FORMAT, "format_version": 1, "dataset": "mnist", "metrics": {}, "train_config": None,
        "model_config": {"latent_width": 16, "reparam_width": 2, "input_dim": 784}}))
    loaded = load_checkpoint(folder)
    assert loaded.config == ModelConfig(16, 2, depth=1)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)


@pytest.mark.parametrize("bad", [0, MAX_DEPTH + 1, True])
def test_depth_outside_one_to_three_is_rejected(bad):
    with pytest.raises(ValueError, match="depth"):
        ModelConfig(16, 2, depth=bad)


def test_bad_schedule_and_warmup_are_rejected():
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="warmup_rounds"):
        TrainConfig(warmup_rounds=-1)


def test_kl_weight_rises_linearly_over_the_warmup_then_stays_at_beta():
    config = TrainConfig(warmup_rounds=4, beta=1.0)
    assert [kl_weight(e, config) for e in range(1, 8)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert [kl_weight(e, TrainConfig()) for e in (1, 2)] == [1.0, 1.0]
    assert kl_weight(2, TrainConfig(warmup_rounds=2, beta=0.5)) == 0.25


def test_fit_uses_the_warmup_weight_and_reports_the_true_neg_elbo():
    data = _tiny_data()
    warm = fit(ModelConfig(32, 4), TrainConfig(lr=1e-3, rounds=3, batch_size=16, warmup_rounds=2), data,
               device=torch.device("cpu"))
    plain = fit(ModelConfig(32, 4), TrainConfig(lr=1e-3, rounds=3, batch_size=16), data, device=torch.device("cpu"))
    assert [h["kl_weight"] for h in warm.history] == [0.0, 0.5, 1.0]
    # With no KL pressure in epoch 1 the code spreads out: a larger KL than the same run with weight 1.
    assert warm.history[0]["train_kl"] > plain.history[0]["train_kl"]
    for h in warm.history:  # the reported figure is recon + KL (weight 1), whatever weight was trained with
        assert h["train_neg_elbo"] == pytest.approx(h["train_recon"] + h["train_kl"])
        assert h["val_neg_elbo"] == pytest.approx(h["val_recon"] + h["val_kl"])


def test_cosine_schedule_decays_the_lr_per_epoch_and_constant_keeps_it():
    data = _tiny_data()
    epochs, lr = 5, 1e-3
    cosine = fit(ModelConfig(16, 2), TrainConfig(lr=lr, rounds=epochs, batch_size=32, lr_schedule="cosine"), data,
                 device=torch.device("cpu"))
    expected = [lr * (1 + math.cos(math.pi * (e - 1) / epochs)) / 2 for e in range(1, epochs + 1)]
    assert [h["lr"] for h in cosine.history] == pytest.approx(expected)
    constant = fit(ModelConfig(16, 2), TrainConfig(lr=lr, rounds=3, batch_size=32), data, device=torch.device("cpu"))
    assert [h["lr"] for h in constant.history] == [lr, lr, lr]


def test_restore_best_ends_with_the_best_validation_epoch():
    data = _tiny_data()
    # A large lr on tiny data: validation gets worse after a few epochs, so the best epoch is not the last.
    result = fit(ModelConfig(64, 8), TrainConfig(lr=3e-2, rounds=8, batch_size=8), data, device=torch.device("cpu"),
                 restore_best=True)
    assert evaluate(result.model, data.val.images)["neg_elbo"] == pytest.approx(result.best_val_neg_elbo, rel=1e-5)
    assert result.best_round == min(result.history, key=lambda h: h["val_neg_elbo"])["round"]


def test_a_deadline_stops_fit_early():
    result = fit(ModelConfig(16, 2), TrainConfig(rounds=10_000, batch_size=32), _tiny_data(),
                 device=torch.device("cpu"), deadline=time.time() + 0.5)
    assert 1 <= len(result.history) < 10_000
    assert result.history[-1]["last_round"] and not any(h["last_round"] for h in result.history[:-1])


@pytest.mark.parametrize("args, fragment", [
    (["--depth", "4"], "depth"), (["--lr-schedule", "step"], "lr-schedule"), (["--kl-warmup-rounds", "-2"], "warmup"),
])
def test_cli_rejects_bad_depth_schedule_and_warmup_in_one_line(args, fragment, capsys, tmp_path: Path):
    assert main([*args, "--out", str(tmp_path / "run"), "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and fragment in err[0]
