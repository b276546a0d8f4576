"""vae.fused_loss.neg_elbo, the opt-in one-node loss, against the plain vae.loss.neg_elbo: the same values
and gradients for every term and beta, gradcheck, float32 at any element count, and as train_epoch's loss_fn."""

from __future__ import annotations

import pytest
import torch

from vae import fused_loss, loss
from vae.config import ModelConfig
from vae.model import LinearVAE
from vae.train import make_optimizer, train_epoch


def _inputs(shape: tuple[int, int], scale: float, dtype: torch.dtype, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=generator, dtype=dtype)
    logits = torch.randn(shape, generator=generator, dtype=dtype) * scale
    mu = torch.randn(shape[0], 3, generator=generator, dtype=dtype)
    log_var = torch.randn(shape[0], 3, generator=generator, dtype=dtype)
    return [x, logits.requires_grad_(), mu.requires_grad_(), log_var.requires_grad_()]


def _assert_same_gradients(fused: torch.Tensor, plain: torch.Tensor, leaves: list[torch.Tensor]) -> None:
    grads = torch.autograd.grad(fused, leaves, allow_unused=True)
    expected_grads = torch.autograd.grad(plain, leaves, allow_unused=True)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        if expected_grad is None:  # e.g. the KL does not depend on the logits
            assert grad is None or not grad.any()
        else:
            assert grad is not None and torch.allclose(grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.7, 2.0])
@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])
@pytest.mark.parametrize("term", loss.LossTerms._fields)
def test_fused_loss_has_the_plain_loss_values_and_gradients(beta: float, scale: float, term: str) -> None:
    """Every term, for small, ordinary and saturated logits, and for beta 0 (the objective is the
    reconstruction alone), 0.7 and 2."""
    x, *leaves = _inputs((16, 784), scale, torch.float64)
    fused, plain = fused_loss.neg_elbo(x, *leaves, beta=beta), loss.neg_elbo(x, *leaves, beta=beta)
    for name in loss.LossTerms._fields:
        assert torch.allclose(getattr(fused, name), getattr(plain, name), rtol=1e-10), name
    _assert_same_gradients(getattr(fused, term), getattr(plain, term), leaves)


def test_fused_loss_gradients_of_a_sum_of_terms() -> None:
    """Gradients flowing into several outputs at once (here objective, kl and recon with their own
    weights) add up in the one node's backward as they do through the plain loss's graph."""
    x, *leaves = _inputs((8, 50), 2.0, torch.float64, seed=3)
    fused, plain = fused_loss.neg_elbo(x, *leaves, beta=1.5), loss.neg_elbo(x, *leaves, beta=1.5)

    def combined(terms: loss.LossTerms) -> torch.Tensor:
        return terms.objective - 0.25 * terms.kl + 2.0 * terms.recon

    _assert_same_gradients(combined(fused), combined(plain), leaves)


def test_fused_loss_passes_gradcheck_for_all_terms_together() -> None:
    x, *leaves = _inputs((2, 5), 2.0, torch.float64)
    assert torch.autograd.gradcheck(lambda *a: tuple(fused_loss.neg_elbo(x, *a, beta=2.0)), tuple(leaves))


def test_fused_loss_is_finite_for_fully_saturated_logits() -> None:
    x = torch.tensor([[1.0, 0.0, 1.0]])
    logits = torch.tensor([[-200.0, 200.0, 200.0]])
    zeros = torch.zeros(1, 1)
    fused, plain = fused_loss.neg_elbo(x, logits, zeros, zeros), loss.neg_elbo(x, logits, zeros, zeros)
    assert fused.recon.item() == pytest.approx(400.0, rel=1e-6)
    assert fused.recon.item() == pytest.approx(plain.recon.item(), rel=1e-6)


@pytest.mark.parametrize("shape", [(3, 784), (128, 784), (7, 10)])
def test_fused_loss_in_float32_with_any_element_count(shape: tuple[int, int]) -> None:
    """The log-of-products path groups pixels 64 at a time; counts that are not a multiple of 64 take
    the remainder one log at a time. float32 result within float32 summation error of the plain loss in float64."""
    x, logits, mu, log_var = _inputs(shape, 4.0, torch.float32, seed=1)
    fused = fused_loss.neg_elbo(x, logits, mu, log_var)
    plain = loss.neg_elbo(x.double(), logits.double(), mu.double(), log_var.double())
    assert fused.recon.dtype == torch.float32
    assert abs(fused.recon.item() - plain.recon.item()) <= 1e-5 * plain.recon.item()
    assert abs(fused.kl.item() - plain.kl.item()) <= 1e-5 * plain.kl.item()


def _one_epoch(loss_fn) -> tuple[dict[str, float], LinearVAE]:
    torch.manual_seed(0)
    images = torch.rand(300, 784, generator=torch.Generator().manual_seed(1))
    model = LinearVAE(ModelConfig(32, 4))
    metrics = train_epoch(model, make_optimizer(model, 1e-3), images, batch_size=64, beta=0.5,
                          generator=torch.Generator().manual_seed(2), loss_fn=loss_fn)
    return metrics, model


def test_train_epoch_trains_with_the_loss_it_is_given() -> None:
    """train_epoch calls ``loss_fn`` once per batch, and the fused loss trains as the plain one does:
    the same epoch means and weights from the same seeds, to float32 rounding."""
    calls = []

    def counting_fused(*args: object) -> loss.LossTerms:
        calls.append(args[-1])
        return fused_loss.neg_elbo(*args)

    fused_metrics, fused_model = _one_epoch(counting_fused)
    plain_metrics, plain_model = _one_epoch(loss.neg_elbo)
    assert calls == [0.5] * 5  # ceil(300 / 64) batches, each with the epoch's beta
    for key in ("neg_elbo", "recon", "kl"):
        assert fused_metrics[key] == pytest.approx(plain_metrics[key], rel=1e-5), key
    for (name, fused), plain in zip(fused_model.state_dict().items(), plain_model.state_dict().values(), strict=True):
        torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-6, msg=name)
