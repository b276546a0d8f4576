"""Shapes, parameter counts and gradients of the LinearVAE."""

from __future__ import annotations

import pytest
import torch

from vae.config import INPUT_DIM, ModelConfig, TrainConfig
from vae.loss import neg_elbo
from vae.model import LinearVAE, build_model, count_parameters, flops_per_sample


@pytest.mark.parametrize("latent_width, reparam_width", [(32, 4), (512, 64), (7, 3)])
@pytest.mark.parametrize("batch", [1, 5])
def test_shapes_and_ranges(latent_width: int, reparam_width: int, batch: int) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_width, reparam_width))
    x = torch.rand(batch, INPUT_DIM)
    mu, log_var = model.encode(x)
    assert mu.shape == log_var.shape == (batch, reparam_width)
    out = model(x)
    assert out.logits.shape == (batch, INPUT_DIM)
    assert out.mu.shape == out.log_var.shape == out.z.shape == (batch, reparam_width)
    decoded = model.decode(out.z)
    assert decoded.shape == (batch, INPUT_DIM)
    assert torch.all((decoded >= 0) & (decoded <= 1))
    torch.testing.assert_close(decoded, torch.sigmoid(out.logits))


def test_layer_widths_follow_the_two_words() -> None:
    model = build_model(ModelConfig(latent_width=48, reparam_width=6))
    assert model.input_to_hidden.weight.shape == (48, INPUT_DIM)
    assert model.hidden_to_mu.weight.shape == model.hidden_to_log_var.weight.shape == (6, 48)
    assert model.z_to_hidden.weight.shape == (48, 6)
    assert model.hidden_to_output.weight.shape == (INPUT_DIM, 48)


@pytest.mark.parametrize("latent_width, reparam_width", [(32, 4), (512, 64)])
def test_parameter_count_and_flops(latent_width: int, reparam_width: int) -> None:
    config = ModelConfig(latent_width, reparam_width)
    model = build_model(config)
    assert count_parameters(config) == model.num_parameters()
    weight_macs = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert flops_per_sample(config) == 2 * weight_macs


def test_forward_uses_the_given_noise() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(16, 4))
    x = torch.rand(3, INPUT_DIM)
    noise = torch.randn(3, 4)
    first, second = model(x, noise), model(x, noise)
    torch.testing.assert_close(first.logits, second.logits)
    torch.testing.assert_close(first.z, first.mu + noise * torch.exp(0.5 * first.log_var))


def test_gradients_flow_through_reparameterize() -> None:
    mu = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    log_var = torch.tensor([0.0, 1.0, -2.0], requires_grad=True)
    noise = torch.tensor([1.0, -0.5, 0.25])
    z = LinearVAE.reparameterize(mu, log_var, noise)
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(3))
    torch.testing.assert_close(log_var.grad, 0.5 * noise * torch.exp(0.5 * log_var.detach()))


def test_every_parameter_gets_a_gradient_from_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(32, 4))
    x = torch.rand(8, INPUT_DIM)
    out = model(x)
    neg_elbo(x, out.logits, out.mu, out.log_var).objective.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kwargs", [
    {"latent_width": 0, "reparam_width": 4}, {"latent_width": 8, "reparam_width": -1},
    {"latent_width": 8.5, "reparam_width": 4}, {"latent_width": True, "reparam_width": 4},
])
def test_model_config_rejects_bad_widths(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"lr": 0}, {"batch_size": 0}, {"rounds": 0}, {"beta": -0.1}])
def test_train_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_configs_are_frozen_and_round_trip() -> None:
    config = ModelConfig(64, 8)
    with pytest.raises(AttributeError):
        config.latent_width = 3  # type: ignore[misc]
    assert ModelConfig.from_dict(config.to_dict()) == config
