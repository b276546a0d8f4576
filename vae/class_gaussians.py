"""Class-conditional generation from the latent space: one Gaussian per class over the codes.

After training, each class's posterior means (of the training split) form a cloud in the
``reparam_width``-dimensional code space. ``fit_class_gaussians`` summarises each cloud by its mean and
full covariance (plus a small ridge, so that it is positive definite even along collapsed code
dimensions); ``sample_class`` draws new codes of a class from N(mean, covariance), scaled like the other
views' noise control, and decodes them. Unlike drawing from one real example's posterior, the samples
spread over the whole class region, so they are both of the class and varied.

The fitted Gaussians are stored beside a checkpoint's weights as ``CLASS_GAUSSIANS_FILE`` (safetensors:
``means`` [C, r] and ``covariances`` [C, r, r], float32); ``load_class_gaussians`` validates the file
(header shapes before reading, dtype, finite values, symmetry, Cholesky) before anything uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch.distributions import MultivariateNormal

from vae.model import VAE

CLASS_GAUSSIANS_FILE = "class_gaussians.safetensors"
RIDGE = 1e-3  # added to each covariance's diagonal (code units are about 1 for active dimensions)
MAX_CLASSES = 1000
FIT_BATCH = 2000


class ClassGaussiansError(ValueError):
    """The class-Gaussians file is missing pieces, of the wrong shape or not a valid distribution."""


@dataclass(frozen=True)
class ClassGaussians:
    """Per class c: codes ~ N(means[c], covariances[c]); ``scale_tril`` holds the Cholesky factors."""

    means: torch.Tensor  # [C, r] float32
    covariances: torch.Tensor  # [C, r, r] float32, symmetric positive definite
    counts: torch.Tensor  # [C] int64, training images each class was fitted on

    @property
    def num_classes(self) -> int:
        return self.means.shape[0]

    @property
    def width(self) -> int:
        return self.means.shape[1]

    def distribution(self, class_index: int) -> MultivariateNormal:
        return MultivariateNormal(self.means[class_index], covariance_matrix=self.covariances[class_index])


def fit_class_gaussians(model: VAE, images: torch.Tensor, labels: torch.Tensor, num_classes: int, *,
                        ridge: float = RIDGE, max_per_class: int | None = None) -> ClassGaussians:
    """Encode ``images`` [N, input_dim] and fit, per class, the mean and covariance of the posterior means.

    Every class in ``range(num_classes)`` needs at least two images. ``max_per_class``: fit on the first this
    many images of each class only (a few hundred pin down a Gaussian in a code of tens of dimensions, at a
    fraction of the cost of encoding a large training split). Fitted in float64, stored as float32.
    """
    if max_per_class is not None:
        keep = torch.cat([torch.nonzero(labels == cls).flatten()[:max_per_class] for cls in range(num_classes)])
        keep = torch.sort(keep).values
        images, labels = images[keep.to(images.device)], labels[keep.to(labels.device)]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        mus = torch.cat([model.encode(images[first : first + FIT_BATCH].to(device))[0]
                         for first in range(0, len(images), FIT_BATCH)])
    model.train(was_training)
    mus, labels = mus.double().cpu(), labels.cpu()
    width = mus.shape[1]
    means, covariances, counts = [], [], []
    for cls in range(num_classes):
        codes = mus[labels == cls]
        if len(codes) < 2:
            raise ValueError(f"class {cls} has {len(codes)} training images; fitting its Gaussian needs at least 2")
        means.append(codes.mean(dim=0))
        covariances.append(torch.cov(codes.T).reshape(width, width) + ridge * torch.eye(width, dtype=torch.float64))
        counts.append(len(codes))
    return ClassGaussians(torch.stack(means).float(), torch.stack(covariances).float(),
                          torch.tensor(counts, dtype=torch.int64))


def sample_codes(gaussians: ClassGaussians, class_index: int, n: int, *, noise_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` codes [n, r] of class ``class_index``: mean + noise_scale * L eps, with L L^T the covariance.

    The distribution is torch's MultivariateNormal (which checks the covariance); the standard normal
    ``eps`` is drawn here because ``MultivariateNormal.sample`` takes no generator, and the views must be
    reproducible per seed without touching the global RNG that concurrent requests share.
    """
    if not 0 <= class_index < gaussians.num_classes:
        raise ValueError(f"no Gaussian for class {class_index} (classes 0..{gaussians.num_classes - 1})")
    dist = gaussians.distribution(class_index)
    eps = torch.randn(n, gaussians.width, generator=generator)
    return dist.loc + noise_scale * eps @ dist.scale_tril.T


@torch.inference_mode()
def sample_class(model: VAE, gaussians: ClassGaussians, class_index: int, n: int, *, noise_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """Decoded draws [n, C, H, W] from class ``class_index``'s Gaussian (``noise_scale`` 0: its mean)."""
    if gaussians.width != model.config.reparam_width:
        raise ValueError(f"the class Gaussians are {gaussians.width}-dimensional; the model's codes are "
                         f"{model.config.reparam_width}-dimensional")
    z = sample_codes(gaussians, class_index, n, noise_scale=noise_scale, generator=generator)
    device = next(model.parameters()).device
    return model.decode(z.to(device)).reshape(-1, *model.config.image_shape)


def save_class_gaussians(path: str | Path, gaussians: ClassGaussians) -> Path:
    path = Path(path)
    save_file({"means": gaussians.means.contiguous(), "covariances": gaussians.covariances.contiguous(),
               "counts": gaussians.counts.contiguous()}, str(path))
    return path


def load_class_gaussians(path: str | Path, width: int) -> ClassGaussians:
    """Read and validate a class-Gaussians file for a model with ``width``-dimensional codes.

    Shapes are checked from the safetensors header before any tensor is read; then dtypes, finiteness,
    symmetry and positive definiteness (a Cholesky factorisation of every covariance).
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ClassGaussiansError(f"{path} is not a valid safetensors file ({exc})") from exc
    if set(shapes) != {"means", "covariances", "counts"}:
        raise ClassGaussiansError(f"{path} should hold means, covariances and counts; it holds {sorted(shapes)}")
    classes = shapes["means"][0] if len(shapes["means"]) == 2 else -1
    expected = {"means": (classes, width), "covariances": (classes, width, width), "counts": (classes,)}
    if not 1 <= classes <= MAX_CLASSES or shapes != expected:
        raise ClassGaussiansError(f"{path} has shapes {shapes}; expected {expected} for {width}-dimensional codes "
                                  f"and 1..{MAX_CLASSES} classes")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ClassGaussiansError(f"{path} is not a valid safetensors file ({exc})") from exc
    means, covariances, counts = tensors["means"], tensors["covariances"], tensors["counts"]
    if means.dtype != torch.float32 or covariances.dtype != torch.float32 or counts.dtype != torch.int64:
        raise ClassGaussiansError(f"{path} must hold float32 means and covariances and int64 counts")
    if not (torch.isfinite(means).all() and torch.isfinite(covariances).all()):
        raise ClassGaussiansError(f"{path} holds non-finite values")
    if not torch.allclose(covariances, covariances.transpose(1, 2), rtol=1e-4, atol=1e-6):
        raise ClassGaussiansError(f"{path} holds covariances that are not symmetric")
    _, info = torch.linalg.cholesky_ex(covariances.double())
    if (info != 0).any():
        bad = torch.nonzero(info).flatten().tolist()
        raise ClassGaussiansError(f"{path}: the covariances of classes {bad} are not positive definite")
    return ClassGaussians(means, covariances, counts)
