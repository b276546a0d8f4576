"""The negative ELBO in nats per image (vae.loss, plain torch): hand-checked values, gradients and the KL.

The fused node of vae.fused_loss is tested against this loss in test_fused_loss.py."""

from __future__ import annotations

import math

import pytest
import torch

from vae.loss import bits_per_dim, kl_to_standard_normal, neg_elbo


def test_uninformative_decoder_costs_ln2_per_pixel() -> None:
    x = torch.rand(4, 784)
    zeros = torch.zeros(4, 2)
    terms = neg_elbo(x, torch.zeros(4, 784), zeros, zeros)
    # Logit 0 means p = 1/2 for every pixel: -[x ln 1/2 + (1 - x) ln 1/2] = ln 2 whatever x is.
    assert math.isclose(terms.recon.item(), 784 * math.log(2), rel_tol=1e-6)
    assert terms.kl.item() == 0.0
    assert math.isclose(terms.neg_elbo.item(), 543.4273, rel_tol=1e-6)
    assert math.isclose(bits_per_dim(terms.neg_elbo.item(), 784), 1.0, rel_tol=1e-6)  # one bit per pixel


def test_hand_checked_batch_of_two() -> None:
    # Image 1: pixels (1, 0, 0.5) with logits (ln 3, ln 3, 0): ln(4/3) + ln 4 + ln 2 nats.
    # Image 2: pixels (0, 0, 1) with logits (0, -ln 3, 0): ln 2 + ln(4/3) + ln 2 nats.
    x = torch.tensor([[1.0, 0.0, 0.5], [0.0, 0.0, 1.0]])
    ln3 = math.log(3)
    logits = torch.tensor([[ln3, ln3, 0.0], [0.0, -ln3, 0.0]])
    recon_1 = math.log(4 / 3) + math.log(4) + math.log(2)
    recon_2 = math.log(2) + math.log(4 / 3) + math.log(2)
    # KL per image: 0.5 * sum(mu^2 + var - 1 - ln var). Image 1: mu = (1, 2), var = (1, 4);
    # image 2: mu = (0, 0), var = (1, 1), so KL 0.
    mu = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    log_var = torch.tensor([[0.0, math.log(4)], [0.0, 0.0]])
    kl_1 = 0.5 * (1 + 0) + 0.5 * (4 + 4 - 1 - math.log(4))
    terms = neg_elbo(x, logits, mu, log_var, beta=2.0)
    assert math.isclose(terms.recon.item(), (recon_1 + recon_2) / 2, rel_tol=1e-6)
    assert math.isclose(terms.kl.item(), kl_1 / 2, rel_tol=1e-6)
    assert math.isclose(terms.neg_elbo.item(), (recon_1 + recon_2 + kl_1) / 2, rel_tol=1e-6)
    # beta weights only the optimised objective, never the reported neg-ELBO.
    assert math.isclose(terms.objective.item(), (recon_1 + recon_2 + 2 * kl_1) / 2, rel_tol=1e-6)


def test_loss_is_finite_for_saturated_logits() -> None:
    x = torch.tensor([[1.0, 0.0]])
    terms = neg_elbo(x, torch.tensor([[-200.0, 200.0]]), torch.zeros(1, 1), torch.zeros(1, 1))
    assert math.isclose(terms.recon.item(), 400.0, rel_tol=1e-6)


def test_kl_closed_form_matches_monte_carlo() -> None:
    generator = torch.Generator().manual_seed(0)
    mu = torch.randn(3, 5, generator=generator)
    log_var = torch.randn(3, 5, generator=generator) * 0.7
    closed = kl_to_standard_normal(mu, log_var)
    q = torch.distributions.Normal(mu, torch.exp(0.5 * log_var))
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.manual_seed(1)
    z = q.sample((200_000,))
    log_ratio = (q.log_prob(z) - p.log_prob(z)).sum(-1)  # [draws, 3]
    estimate, stderr = log_ratio.mean(0), log_ratio.std(0) / math.sqrt(log_ratio.shape[0])
    assert torch.all((closed - estimate).abs() < 4 * stderr + 1e-3), (closed, estimate, stderr)
    torch.testing.assert_close(closed, torch.distributions.kl_divergence(q, p).sum(-1))


def test_kl_is_zero_only_at_the_prior() -> None:
    assert kl_to_standard_normal(torch.zeros(1, 4), torch.zeros(1, 4)).item() == 0.0
    assert kl_to_standard_normal(torch.full((1, 4), 0.1), torch.zeros(1, 4)).item() > 0
    assert kl_to_standard_normal(torch.zeros(1, 4), torch.full((1, 4), -0.1)).item() > 0


@pytest.mark.parametrize("beta", [0.0, 1.0, 3.0])
def test_gradients_are_the_closed_form_and_beta_weights_only_the_kl(beta: float) -> None:
    """d objective / d logits = (sigmoid(l) - x) / B whatever beta is; d / d mu = beta mu / B and
    d / d log_var = beta (exp(log_var) - 1) / (2 B): beta scales the KL's gradient and nothing else."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(5, 12, generator=generator, dtype=torch.float64)
    logits = (torch.randn(5, 12, generator=generator, dtype=torch.float64) * 3).requires_grad_()
    mu = torch.randn(5, 3, generator=generator, dtype=torch.float64).requires_grad_()
    log_var = torch.randn(5, 3, generator=generator, dtype=torch.float64).requires_grad_()
    terms = neg_elbo(x, logits, mu, log_var, beta=beta)
    grad_logits, grad_mu, grad_log_var = torch.autograd.grad(terms.objective, (logits, mu, log_var))
    torch.testing.assert_close(grad_logits, (torch.sigmoid(logits) - x).detach() / 5)
    torch.testing.assert_close(grad_mu, beta * mu.detach() / 5)
    torch.testing.assert_close(grad_log_var, beta * (log_var.detach().exp() - 1) / 10)
    assert terms.objective.item() == pytest.approx(terms.recon.item() + beta * terms.kl.item(), rel=1e-12)
    assert terms.neg_elbo.item() == pytest.approx(terms.recon.item() + terms.kl.item(), rel=1e-12)
