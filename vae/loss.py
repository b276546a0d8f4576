"""Negative ELBO of a Bernoulli-likelihood VAE, in nats per image."""

from __future__ import annotations

from typing import NamedTuple

import torch


class LossTerms(NamedTuple):
    """Batch means, in nats per image. ``neg_elbo = recon + kl`` whatever ``beta`` was used to
    train: beta only weights the objective that is optimised (``objective``)."""

    neg_elbo: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    objective: torch.Tensor


class _BCEWithLogitsSum(torch.autograd.Function):
    """Summed binary cross-entropy from logits, computed as relu(l) - x*l - log(max(p, 1 - p)) with
    p = sigmoid(l), and the closed-form gradient p - x.

    Why not F.binary_cross_entropy_with_logits: it goes through log_sigmoid, i.e. log1p, which the
    CPU builds of torch do not vectorise; on a 784-pixel batch that single op took about 40% of a
    small model's training step. sigmoid + log give the same value to float32 precision (the only
    difference, log(1 + e) rounding to 0 for e < 6e-8, is below 1e-4 nats per image) and are 2-3x
    faster forward and backward (benchmarks/train_throughput.py).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        p = torch.sigmoid(logits)
        ctx.save_for_backward(p, target)
        return (logits.clamp_min(0) - target * logits - torch.log(torch.maximum(p, 1 - p))).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        p, target = ctx.saved_tensors
        return grad * (p - target), None


def bce_with_logits_sum(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """sum over all elements of -[x log sigmoid(l) + (1 - x) log(1 - sigmoid(l))], in nats."""
    return _BCEWithLogitsSum.apply(logits, target)


def kl_to_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)) per example, summed over code dimensions, in nats."""
    return 0.5 * torch.sum(mu.pow(2) + log_var.exp() - 1.0 - log_var, dim=-1)


def neg_elbo(
    x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, beta: float = 1.0
) -> LossTerms:
    """Bernoulli reconstruction (BCE summed over pixels) + closed-form KL, averaged over the batch.

    ``logits`` are pre-sigmoid decoder outputs; using them instead of probabilities keeps the BCE
    finite when the decoder saturates. ``x`` holds grayscale targets in [0, 1].
    """
    batch = x.shape[0]
    recon = bce_with_logits_sum(logits, x) / batch
    kl = kl_to_standard_normal(mu, log_var).sum() / batch
    return LossTerms(recon + kl, recon, kl, recon + beta * kl)


def nats_per_pixel(nats_per_image: float, input_dim: int = 784) -> float:
    """The per-pixel normalised loss some tutorials print (the article's figure): nats / pixel."""
    return nats_per_image / input_dim
