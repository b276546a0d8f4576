"""vae.model.reparameterize, the one draw z = mu + noise * exp(log_var / 2) that the model, sampling,
the IWAE bound and the app all use."""

from __future__ import annotations

import math

import torch

from vae.config import INPUT_DIM, ModelConfig
from vae.iwae import log_weights
from vae.model import LinearVAE, build_model, reparameterize


def test_the_models_method_is_the_function() -> None:
    assert LinearVAE.reparameterize is reparameterize
    torch.manual_seed(0)
    model = build_model(ModelConfig(16, 4))
    x = torch.rand(3, INPUT_DIM)
    noise = torch.randn(3, 4)
    mu, log_var = model.encode(x)
    torch.testing.assert_close(model(x, noise).z, reparameterize(mu, log_var, noise))


def test_noise_with_leading_sample_dimensions_broadcasts_per_sample() -> None:
    """The IWAE bound passes noise [S, B, W] with mu and log_var [B, W]: each sample is its own draw."""
    generator = torch.Generator().manual_seed(0)
    mu, log_var = torch.randn(4, 3, generator=generator), torch.randn(4, 3, generator=generator)
    noise = torch.randn(5, 4, 3, generator=generator)
    z = reparameterize(mu, log_var, noise)
    assert z.shape == (5, 4, 3)
    for s in range(5):
        torch.testing.assert_close(z[s], reparameterize(mu, log_var, noise[s]))


def test_without_noise_it_draws_from_the_posterior() -> None:
    mu = torch.tensor([[1.0, -2.0, 0.0]]).expand(200_000, 3)
    log_var = torch.tensor([[0.0, math.log(4.0), math.log(0.25)]]).expand(200_000, 3)
    torch.manual_seed(0)
    z = reparameterize(mu, log_var)
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, -2.0, 0.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(z.std(0), torch.tensor([1.0, 2.0, 0.5]), atol=0.01, rtol=0)


def test_iwae_log_weights_decode_the_reparameterized_codes() -> None:
    """log q(z | x) in the IWAE weights is the Gaussian density of the same z the decoder saw: with
    z from reparameterize, -0.5 * (noise^2 + log 2pi + log_var) is that density, checked with torch's Normal."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(16, 4))
    x = torch.rand(2, INPUT_DIM)
    noise = torch.randn(3, 2, 4)
    with torch.no_grad():
        mu, log_var = model.encode(x)
        z = reparameterize(mu, log_var, noise)
        logits = model.decode_logits(z)
        log_px = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                                       reduction="none").sum(-1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = torch.distributions.Normal(mu, torch.exp(0.5 * log_var)).log_prob(z).sum(-1)
        torch.testing.assert_close(log_weights(model, x, noise), log_px + log_pz - log_qz)
