"""IWAE: agrees with log p(x) integrated numerically on a 1-D code, lies below the neg-ELBO, tightens with k."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vae.config import ModelConfig
from vae.iwae import iwae, iwae_per_image
from vae.loss import kl_to_standard_normal
from vae.model import VAE, LinearVAE, build_model


def _tiny_model() -> tuple[LinearVAE, torch.Tensor]:
    """A 6-pixel model with a 1-D code and a few binary-ish images."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_width=8, reparam_width=1, height=1, width=6)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)  # a decoder that depends visibly on z
    images = torch.tensor([[1, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0.5, 0.2, 0.9, 0, 1, 0.3]])
    return model, images


def _brute_force_neg_log_likelihood(model: VAE, images: torch.Tensor) -> torch.Tensor:
    """-log p(x) = -log integral p(x | z) N(z; 0, 1) dz, by the trapezoid rule on a fine grid of the 1-D code."""
    z = torch.linspace(-10, 10, 40001, dtype=torch.float64).unsqueeze(1)
    with torch.no_grad():
        logits = model.double().decode_logits(z)  # [G, D]
    model.float()
    out = []
    for x in images.double():
        log_px_given_z = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(1)
        log_joint = log_px_given_z - 0.5 * (z.squeeze(1) ** 2 + math.log(2 * math.pi))
        dz = float(z[1, 0] - z[0, 0])
        out.append(-(torch.logsumexp(log_joint, 0) + math.log(dz)))
    return torch.stack(out)


def _neg_elbo_per_image(model: VAE, images: torch.Tensor, samples: int = 20000) -> torch.Tensor:
    """Monte Carlo recon + closed-form KL, per image (the quantity a single-sample neg-ELBO estimates)."""
    with torch.no_grad():
        mu, log_var = model.encode(images)
        noise = torch.randn(samples, *mu.shape, generator=torch.Generator().manual_seed(3))
        logits = model.decode_logits(mu + noise * torch.exp(0.5 * log_var))
        recon = F.binary_cross_entropy_with_logits(logits, images.expand_as(logits), reduction="none").sum(-1)
        return recon.mean(0) + kl_to_standard_normal(mu, log_var)


def test_iwae_agrees_with_numerical_integration_for_large_k():
    model, images = _tiny_model()
    exact = _brute_force_neg_log_likelihood(model, images)
    bound = iwae_per_image(model, images, k=20000, sample_chunk=5000)
    assert bound.shape == (len(images),)
    assert torch.allclose(bound.double(), exact, atol=0.02), (bound, exact)


def test_iwae_lies_between_log_likelihood_and_neg_elbo_and_tightens_with_k():
    model, images = _tiny_model()
    exact = _brute_force_neg_log_likelihood(model, images).mean().item()
    neg_elbo = _neg_elbo_per_image(model, images).mean().item()
    bounds = {k: iwae(model, images.repeat(200, 1), k=k, seed=1) for k in (1, 2, 4, 1000)}
    assert iwae(model, images.repeat(5000, 1), k=1, seed=2) == pytest.approx(neg_elbo, abs=0.05)  # k = 1: the ELBO
    assert neg_elbo > exact + 0.1  # the test is only meaningful where the ELBO is visibly loose
    assert bounds[1] > bounds[2] > bounds[4] > bounds[1000]
    assert bounds[1000] == pytest.approx(exact, abs=0.01)  # a bound: never meaningfully below -log p(x)


def test_iwae_is_seeded_and_leaves_the_global_rng_alone():
    model, images = _tiny_model()
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    first = iwae(model, images, k=50, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert iwae(model, images, k=50, seed=7) == first
    assert iwae(model, images, k=50, seed=8) != first


def test_chunking_over_images_and_samples_gives_the_same_kind_of_figure():
    model, images = _tiny_model()
    whole = iwae(model, images.repeat(25, 1), k=400, image_batch=100, sample_chunk=400, seed=0)
    chunked = iwae(model, images.repeat(25, 1), k=400, image_batch=7, sample_chunk=33, seed=0)
    assert chunked == pytest.approx(whole, abs=0.02)


def test_k_must_be_positive():
    model, images = _tiny_model()
    with pytest.raises(ValueError, match="k must be"):
        iwae(model, images, k=0)
