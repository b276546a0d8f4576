"""The negative ELBO in nats per image: hand-checked values and the closed-form KL."""

from __future__ import annotations

import math

import pytest
import torch

from vae.loss import LossTerms, kl_to_standard_normal, nats_per_pixel, neg_elbo


def test_uninformative_decoder_costs_ln2_per_pixel() -> None:
    x = torch.rand(4, 784)
    zeros = torch.zeros(4, 2)
    terms = neg_elbo(x, torch.zeros(4, 784), zeros, zeros)
    # Logit 0 means p = 1/2 for every pixel: -[x ln 1/2 + (1 - x) ln 1/2] = ln 2 whatever x is.
    assert math.isclose(terms.recon.item(), 784 * math.log(2), rel_tol=1e-6)
    assert terms.kl.item() == 0.0
    assert math.isclose(terms.neg_elbo.item(), 543.4273, rel_tol=1e-6)
    assert math.isclose(nats_per_pixel(terms.neg_elbo.item()), math.log(2), rel_tol=1e-6)


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


def _reference(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor,
               beta: float) -> LossTerms:
    """The loss written with torch's own BCE and plain autograd ops."""
    batch = x.shape[0]
    recon = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum") / batch
    kl = kl_to_standard_normal(mu, log_var).sum() / batch
    return LossTerms(recon + kl, recon, kl, recon + beta * kl)


def _inputs(shape: tuple[int, int], scale: float, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator, dtype=dtype)
    logits = torch.randn(shape, generator=generator, dtype=dtype) * scale
    mu = torch.randn(shape[0], 3, generator=generator, dtype=dtype)
    log_var = torch.randn(shape[0], 3, generator=generator, dtype=dtype)
    return [x, logits.requires_grad_(), mu.requires_grad_(), log_var.requires_grad_()]


@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])
@pytest.mark.parametrize("term", ["objective", "neg_elbo", "recon", "kl"])
def test_fused_loss_matches_torch_value_and_gradient(scale: float, term: str) -> None:
    """neg_elbo is one autograd node with a closed-form backward, for speed: every term it returns has
    the value and the gradient of the loss written with torch's BCE and autograd, also for saturated logits."""
    x, *leaves = _inputs((16, 784), scale, torch.float64)
    ours, expected = neg_elbo(x, *leaves, beta=0.7), _reference(x, *leaves, beta=0.7)
    for name in LossTerms._fields:
        assert torch.allclose(getattr(ours, name), getattr(expected, name), rtol=1e-10), name
    grads = torch.autograd.grad(getattr(ours, term), leaves, allow_unused=True)
    expected_grads = torch.autograd.grad(getattr(expected, term), leaves, allow_unused=True)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        if expected_grad is None:  # e.g. the KL does not depend on the logits
            assert grad is None or not grad.any()
        else:
            assert torch.allclose(grad, expected_grad, atol=1e-12)


def test_fused_loss_passes_gradcheck_for_all_terms_together() -> None:
    x, *leaves = _inputs((2, 5), 2.0, torch.float64)
    assert torch.autograd.gradcheck(lambda *a: tuple(neg_elbo(x, *a, beta=2.0)), tuple(leaves))


@pytest.mark.parametrize("shape", [(3, 784), (128, 784), (7, 10)])
def test_fused_loss_in_float32_with_any_element_count(shape: tuple[int, int]) -> None:
    """The log-of-products path groups pixels 64 at a time; counts that are not a multiple of 64 take
    the remainder one log at a time. float32 result within float32 summation error of torch's float64."""
    x, logits, mu, log_var = _inputs(shape, 4.0, torch.float32, seed=1)
    ours = neg_elbo(x, logits, mu, log_var)
    expected = _reference(x.double(), logits.double(), mu.double(), log_var.double(), beta=1.0)
    assert ours.recon.dtype == torch.float32
    assert abs(ours.recon.item() - expected.recon.item()) <= 1e-5 * expected.recon.item()
    assert abs(ours.kl.item() - expected.kl.item()) <= 1e-5 * expected.kl.item()
