"""Importance-weighted bound on the log-likelihood (IWAE, Burda, Grosse & Salakhutdinov 2015).

For an image x and k codes z_1..z_k drawn from the encoder's q(z | x),

    L_k(x) = log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x)  <=  log p(x),

with E[L_1] the ELBO and E[L_k] rising to log p(x) as k grows. ``iwae`` returns -L_k in nats per image
(an upper bound on -log p(x), comparable to the neg-ELBO: lower is better). p(x | z) is the same
Bernoulli cross-entropy on grayscale targets that ``vae.loss.neg_elbo`` uses.

Memory stays bounded: images are taken ``image_batch`` at a time and their k samples
``sample_chunk`` at a time; the chunks' log-weights are combined with a running logsumexp.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from vae.model import VAE, reparameterize

DEFAULT_K = 1000
_LOG_2PI = math.log(2 * math.pi)


def log_weights(model: VAE, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """log p(x | z) + log p(z) - log q(z | x) for codes z = mu + noise * sigma.

    ``x`` [B, input_dim], ``noise`` [S, B, reparam_width] standard normal; returns [S, B]."""
    mu, log_var = model.encode(x)
    z = reparameterize(mu, log_var, noise)
    logits = model.decode_logits(z.reshape(-1, z.shape[-1])).view(*z.shape[:2], -1)
    log_px_given_z = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
    log_pz = -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
    log_qz = -0.5 * (noise.pow(2) + _LOG_2PI + log_var).sum(-1)
    return log_px_given_z + log_pz - log_qz


@torch.inference_mode()
def iwae_per_image(
    model: VAE,
    images: torch.Tensor,
    *,
    k: int = DEFAULT_K,
    seed: int = 0,
    image_batch: int = 100,
    sample_chunk: int = 250,
) -> torch.Tensor:
    """-L_k for every image of ``images`` [N, input_dim], in nats, as a [N] tensor.

    Seeded with a local generator (the global RNG is left alone), so the figure is repeatable."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    model.eval()
    generator = torch.Generator(device=images.device).manual_seed(seed)
    width = model.config.reparam_width
    out = []
    for first in range(0, images.shape[0], image_batch):
        x = images[first : first + image_batch]
        total = torch.full((x.shape[0],), -math.inf, device=images.device)
        for done in range(0, k, sample_chunk):
            samples = min(sample_chunk, k - done)
            noise = torch.randn((samples, x.shape[0], width), device=images.device, generator=generator)
            total = torch.logaddexp(total, torch.logsumexp(log_weights(model, x, noise), dim=0))
        out.append(math.log(k) - total)
    return torch.cat(out)


def iwae(model: VAE, images: torch.Tensor, *, k: int = DEFAULT_K, seed: int = 0, image_batch: int = 100,
         sample_chunk: int = 250) -> float:
    """Mean of -L_k over ``images``: the IWAE bound in nats per image (see the module docstring)."""
    return float(iwae_per_image(model, images, k=k, seed=seed, image_batch=image_batch,
                                sample_chunk=sample_chunk).mean())


@dataclass(frozen=True)
class IwaeEstimate:
    """The IWAE bound (nats per image) over ``images`` test images, with the standard error of that mean."""

    mean: float
    standard_error: float
    images: int
    k: int


def iwae_within(model: VAE, images: torch.Tensor, *, k: int = DEFAULT_K, seconds: float,
                seed: int = 0, min_images: int = 100, image_batch: int = 50) -> IwaeEstimate:
    """The IWAE bound on as many of ``images`` as fit in about ``seconds`` (at least ``min_images``, at most
    all), taken in a seeded random order, with its standard error over the images.

    Why a time bound: -L_k costs k decoder passes per image, so an exact figure on a full test split can cost
    more than the search it reports on (10,000 images at k = 1000 through a convolutional decoder: about
    11 minutes on 2 CPU cores). A mean over a random subset is unbiased for the split's mean, and its
    standard error says how far it may be off."""
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed)).to(images.device)
    started = time.perf_counter()
    values: list[torch.Tensor] = []
    done = 0
    while done < images.shape[0]:
        batch = images[order[done : done + image_batch]]
        values.append(iwae_per_image(model, batch, k=k, seed=seed + done, image_batch=image_batch))
        done += batch.shape[0]
        elapsed = time.perf_counter() - started
        if done >= min_images and elapsed * (done + image_batch) / done > seconds:
            break
    per_image = torch.cat(values).double()
    spread = float(per_image.std()) if per_image.numel() > 1 else math.inf
    return IwaeEstimate(float(per_image.mean()), spread / math.sqrt(per_image.numel()), int(per_image.numel()), k)
