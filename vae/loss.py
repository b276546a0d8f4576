"""Negative ELBO of a Bernoulli-likelihood VAE, in nats per image.

The loss training uses, in plain torch: torch's BCE with logits summed over pixels plus the closed-form KL to
the standard normal prior, each averaged over the batch.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


class LossTerms(NamedTuple):
    """Batch means, in nats per image. ``neg_elbo = recon + kl`` whatever ``beta`` was used to
    train: beta only weights the objective that is optimised (``objective``)."""

    neg_elbo: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    objective: torch.Tensor


def kl_to_standard_normal(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(log_var)) || N(0, I)) per example, summed over code dimensions, in nats."""
    return 0.5 * torch.sum(mu.pow(2) + log_var.exp() - 1.0 - log_var, dim=-1)


def neg_elbo(
    x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, log_var: torch.Tensor, beta: float = 1.0
) -> LossTerms:
    """Bernoulli reconstruction (BCE summed over pixels) + closed-form KL, averaged over the batch.

    ``logits`` are pre-sigmoid decoder outputs; using them instead of probabilities keeps the BCE
    finite when the decoder saturates. ``x`` holds grayscale targets in [0, 1]. ``beta`` weights the
    KL in ``objective`` only.
    """
    batch = x.shape[0]
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / batch
    kl = kl_to_standard_normal(mu, log_var).sum() / batch
    return LossTerms(recon + kl, recon, kl, recon + beta * kl)


def bits_per_dim(nats_per_image: float, input_dim: int) -> float:
    """A loss in nats per image as bits per dimension (per pixel value): the unit papers compare across image
    sizes; ``input_dim`` is C*H*W."""
    return nats_per_image / (input_dim * math.log(2))
