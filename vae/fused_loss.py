"""The negative ELBO of ``vae.loss`` as one autograd node with a closed-form backward: opt-in, for CPU speed.

Same signature and result as ``vae.loss.neg_elbo``; pass it to training as
``vae.train.train_epoch(..., loss_fn=vae.fused_loss.neg_elbo)``. Why it exists: for the small models a
CPU training step is mostly per-op overhead, and the plain loss is about 25 ops forward and as many
autograd nodes backward; here the forward is a handful of ops and the backward three. Its values and
gradients are tested against the plain loss (tests/vae/test_fused_loss.py), and
benchmarks/train_throughput.py measures its gain against the plain loss in the same run.
"""

from __future__ import annotations

import math

import torch

from vae.loss import LossTerms, kl_to_standard_normal


def _sum_log_at_least_half(q: torch.Tensor) -> torch.Tensor:
    """sum(log(q)) for q in [0.5, 1], as the log of products of ``chunk`` elements at a time.

    Why: torch's CPU ``log`` costs about ten times a multiply (about 100 us on a 128 x 784 batch, a
    sixth of a small model's step); ``prod`` is a vectorised multiply. A product of ``chunk`` factors
    >= 0.5 stays a normal number (>= 2**-chunk), and its rounding error (about chunk ulps) is no larger
    than that of summing the same logs one by one.
    """
    chunk = min(64, int(-math.log2(torch.finfo(q.dtype).tiny)) - 2)
    flat = q.reshape(-1)
    whole = flat.numel() - flat.numel() % chunk
    total = flat[:whole].view(chunk, -1).prod(dim=0).log().sum()
    return total + flat[whole:].log().sum() if whole < flat.numel() else total


def _recon_sum(logits: torch.Tensor, target: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Summed Bernoulli cross-entropy from logits, sum(relu(l)) - x.l - sum(log(max(p, 1 - p))) with
    p = sigmoid(l): the same function as torch's (log(max(p, 1 - p)) is -log(1 + exp(-|l|))) with one
    transcendental pass (the sigmoid, which the gradient needs anyway) instead of torch's log_sigmoid,
    whose log1p the CPU builds of torch do not vectorise (40% of a small model's step)."""
    scratch = torch.rsub(p, 1.0)  # one batch-sized scratch buffer, reused below instead of two more
    sum_log_larger = _sum_log_at_least_half(torch.maximum(p, scratch, out=scratch))
    relu_sum = torch.clamp_min(logits, 0.0, out=scratch).sum()
    return relu_sum - torch.dot(target.reshape(-1), logits.reshape(-1)) - sum_log_larger


class _NegElbo(torch.autograd.Function):
    """(objective, neg_elbo, recon, kl), batch means in nats, with the closed-form backward
    d/dl = p - x, d/dmu = mu, d/dlog_var = (exp(log_var) - 1) / 2 (each / batch, times its weight)."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor, mu: torch.Tensor,  # type: ignore[override]
                log_var: torch.Tensor, beta: float) -> tuple[torch.Tensor, ...]:
        batch = target.shape[0]
        p = torch.sigmoid(logits)
        ctx.save_for_backward(p, target, mu, torch.exp(log_var))
        ctx.beta, ctx.batch = beta, batch
        ctx.set_materialize_grads(False)
        recon = _recon_sum(logits, target, p) / batch
        kl = kl_to_standard_normal(mu, log_var).sum() / batch
        return recon + beta * kl, recon + kl, recon, kl

    @staticmethod
    def backward(ctx, grad_objective: torch.Tensor | None, grad_neg_elbo: torch.Tensor | None,  # type: ignore[override]
                 grad_recon: torch.Tensor | None, grad_kl: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        p, target, mu, var = ctx.saved_tensors
        recon_weight = _total([grad_objective, grad_neg_elbo, grad_recon])
        kl_weight = _total([None if grad_objective is None else grad_objective * ctx.beta, grad_neg_elbo, grad_kl])
        grad_logits = grad_mu = grad_log_var = None
        if recon_weight is not None:
            grad_logits = torch.sub(p, target).mul_(recon_weight / ctx.batch)
        if kl_weight is not None:
            kl_weight = kl_weight / ctx.batch
            grad_mu = mu * kl_weight
            grad_log_var = (var - 1.0).mul_(0.5 * kl_weight)
        return grad_logits, None, grad_mu, grad_log_var, None


def _total(grads: list[torch.Tensor | None]) -> torch.Tensor | None:
    present = [g for g in grads if g is not None]
    return sum(present[1:], present[0]) if present else None


def neg_elbo(
    x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, beta: float = 1.0
) -> LossTerms:
    """``vae.loss.neg_elbo`` (same arguments, same LossTerms, same gradients) as one autograd node."""
    objective, total, recon, kl = _NegElbo.apply(logits, x, mu, log_var, beta)
    return LossTerms(total, recon, kl, objective)
