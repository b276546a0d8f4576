"""Drawing images from a trained VAE: prior samples, samples of a chosen class, interpolations
and reconstructions. Every function returns images shaped [N, C, H, W] in [0, 1], the model's image shape."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from vae.model import VAE, reparameterize


def as_images(flat: torch.Tensor, model: VAE) -> torch.Tensor:
    """Flattened images [N, C*H*W] -> [N, C, H, W] of ``model``'s image shape."""
    return flat.reshape(-1, *model.config.image_shape)


def _flat(images: torch.Tensor) -> torch.Tensor:
    return images.reshape(images.shape[0], -1)


def _device(model: VAE) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def sample_prior(model: VAE, n: int, *, generator: torch.Generator | None = None,
                 temperature: float = 1.0) -> torch.Tensor:
    """Decode n codes drawn from N(0, temperature^2 I)."""
    z = torch.randn(n, model.config.reparam_width, device=_device(model), generator=generator)
    return as_images(model.decode(z * temperature), model)


@dataclass(frozen=True)
class ClassSamples:
    sources: torch.Tensor  # [k, C, H, W] the real examples that were encoded
    samples: torch.Tensor  # [n, C, H, W] decoded draws from their posteriors
    source_index: torch.Tensor  # [n] which source each sample came from


@torch.inference_mode()
def generate_class(
    model: VAE,
    images: torch.Tensor,
    labels: torch.Tensor,
    target_class: int,
    n_samples: int,
    *,
    n_sources: int = 1,
    noise_scale: float = 1.0,
    generator: torch.Generator | None = None,
) -> ClassSamples:
    """"Generate digit d": encode ``n_sources`` real examples of ``target_class`` (picked with
    ``generator``) and decode ``n_samples`` draws z = mu + noise_scale * std * eps from their
    posteriors N(mu, exp(log_var)), the samples shared round-robin between the sources.

    ``noise_scale`` 0 gives the posterior means (reconstructions); 1 samples the posterior itself.
    """
    candidates = torch.nonzero(labels == target_class).flatten()
    if len(candidates) == 0:
        raise ValueError(f"no examples of class {target_class} to generate from")
    n_sources = min(n_sources, len(candidates), n_samples)
    device = _device(model)
    pick = torch.randperm(len(candidates), generator=_cpu_generator(generator))[:n_sources]
    sources = images[candidates[pick].to(images.device)].to(device)
    mu, log_var = model.encode(_flat(sources))
    source_index = torch.arange(n_samples, device=device) % n_sources
    eps = torch.randn(n_samples, mu.shape[1], device=device, generator=generator)
    z = reparameterize(mu[source_index], log_var[source_index], noise_scale * eps)
    return ClassSamples(as_images(sources, model), as_images(model.decode(z), model), source_index.cpu())


def _cpu_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """randperm of indices runs on the CPU: derive a CPU generator from a device one."""
    if generator is None or generator.device.type == "cpu":
        return generator
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=generator.device)
    return torch.Generator().manual_seed(int(seed))


@torch.inference_mode()
def interpolate(model: VAE, start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    """Decode ``steps`` evenly spaced points on the line between the posterior means of two images."""
    mu, _ = model.encode(_flat(torch.stack([start, end]).to(_device(model))))
    weights = torch.linspace(0.0, 1.0, steps, device=mu.device).unsqueeze(1)
    return as_images(model.decode(mu[0] * (1 - weights) + mu[1] * weights), model)


@torch.inference_mode()
def reconstruct(model: VAE, images: torch.Tensor, *, generator: torch.Generator | None = None,
                sample: bool = False) -> torch.Tensor:
    """Encode and decode. The posterior mean by default; ``sample=True`` draws z from the posterior."""
    mu, log_var = model.encode(_flat(images).to(_device(model)))
    if sample:
        noise = torch.randn(mu.shape, device=mu.device, generator=generator)
        mu = reparameterize(mu, log_var, noise)
    return as_images(model.decode(mu), model)


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """Images [N, C, H, W] (C 1 or 3) -> one grid image [3, H', W'] (torchvision's make_grid)."""
    return make_grid(images.detach().cpu(), nrow=nrow, padding=padding, pad_value=1.0)


def grid_to_uint8(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """A grid as an [H, W, 3] uint8 array, what image widgets and W&B take."""
    return image_grid(images, nrow).mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(images.detach().cpu(), path, nrow=nrow, padding=2, pad_value=1.0)
    return path
