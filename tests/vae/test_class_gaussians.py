"""vae.class_gaussians: fitting per-class Gaussians over the codes, sampling them, and their checkpoint file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vae.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vae.class_gaussians import (
    CLASS_GAUSSIANS_FILE,
    RIDGE,
    ClassGaussians,
    fit_class_gaussians,
    sample_class,
    sample_codes,
)
from vae.data import DataSplits
from vae.train import FitResult


@pytest.fixture(scope="module")
def gaussians(trained_fit: FitResult, mnist_splits: DataSplits) -> ClassGaussians:
    return fit_class_gaussians(trained_fit.model, mnist_splits.train.images, mnist_splits.train.labels, 10)


def test_fit_matches_the_posterior_means_of_each_class(gaussians: ClassGaussians, trained_fit: FitResult,
                                                       mnist_splits: DataSplits) -> None:
    width = trained_fit.model.config.reparam_width
    assert gaussians.means.shape == (10, width) and gaussians.covariances.shape == (10, width, width)
    assert gaussians.means.dtype == torch.float32 and int(gaussians.counts.sum()) == len(mnist_splits.train)
    with torch.inference_mode():
        mu, _ = trained_fit.model.encode(mnist_splits.train.images)
    threes = mu[mnist_splits.train.labels == 3].double()
    assert torch.allclose(gaussians.means[3].double(), threes.mean(0), atol=1e-4)
    expected = torch.cov(threes.T) + RIDGE * torch.eye(width, dtype=torch.float64)
    assert torch.allclose(gaussians.covariances[3].double(), expected, atol=1e-4)
    assert not torch.allclose(gaussians.means[3], gaussians.means[8], atol=0.1)  # classes sit apart
    assert torch.linalg.eigvalsh(gaussians.covariances.double()).min() >= RIDGE * 0.99  # positive definite


def test_sampling_is_seeded_and_scaled(gaussians: ClassGaussians) -> None:
    first = sample_codes(gaussians, 5, 8, generator=torch.Generator().manual_seed(1))
    again = sample_codes(gaussians, 5, 8, generator=torch.Generator().manual_seed(1))
    other = sample_codes(gaussians, 5, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.allclose(sample_codes(gaussians, 5, 3, noise_scale=0.0), gaussians.means[5].expand(3, -1))
    many = sample_codes(gaussians, 5, 20000, noise_scale=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(many.mean(0), gaussians.means[5], atol=0.05)
    assert torch.allclose(torch.cov(many.T), 0.25 * gaussians.covariances[5], atol=0.03)
    with pytest.raises(ValueError, match="no Gaussian for class 10"):
        sample_codes(gaussians, 10, 1)


def test_sample_class_decodes_images_of_the_model(gaussians: ClassGaussians, trained_fit: FitResult) -> None:
    images = sample_class(trained_fit.model, gaussians, 7, 6, generator=torch.Generator().manual_seed(0))
    assert images.shape == (6, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    assert images.amax(dim=(1, 2, 3)).min() > 0.5  # ink in every sample


def test_round_trip_through_a_checkpoint(gaussians: ClassGaussians, trained_fit: FitResult, tmp_path: Path) -> None:
    folder = save_checkpoint(tmp_path / "ckpt", trained_fit.model, dataset="mnist", class_gaussians=gaussians)
    assert (folder / CLASS_GAUSSIANS_FILE).is_file()
    loaded = load_checkpoint(folder).class_gaussians
    assert loaded is not None
    for name in ("means", "covariances", "counts"):
        assert torch.equal(getattr(loaded, name), getattr(gaussians, name))


def test_a_checkpoint_without_them_loads_with_none(trained_checkpoint: Path) -> None:
    assert not (trained_checkpoint / CLASS_GAUSSIANS_FILE).exists()
    assert load_checkpoint(trained_checkpoint).class_gaussians is None


def _broken(gaussians: ClassGaussians, kind: str) -> dict[str, torch.Tensor]:
    tensors = {"means": gaussians.means.clone(), "covariances": gaussians.covariances.clone(),
               "counts": gaussians.counts.clone()}
    if kind == "nan":
        tensors["means"][2, 0] = float("nan")
    elif kind == "not_positive_definite":
        tensors["covariances"][4] = -torch.eye(tensors["covariances"].shape[1])
    elif kind == "asymmetric":
        tensors["covariances"][1, 0, 1] += 1.0
    elif kind == "float64":
        tensors["covariances"] = tensors["covariances"].double()
    elif kind == "wrong_width":
        tensors["means"] = tensors["means"][:, :-1].contiguous()
    elif kind == "missing":
        del tensors["counts"]
    return tensors


@pytest.mark.parametrize(("kind", "message"), [
    ("nan", "non-finite"),
    ("not_positive_definite", r"classes \[4\] are not positive definite"),
    ("asymmetric", "not symmetric"),
    ("float64", "float32"),
    ("wrong_width", "has shapes"),
    ("missing", "should hold means, covariances and counts"),
])
def test_invalid_files_are_refused_on_load(gaussians: ClassGaussians, trained_checkpoint: Path, tmp_path: Path,
                                           kind: str, message: str) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, folder)
    save_file(_broken(gaussians, kind), str(folder / CLASS_GAUSSIANS_FILE))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_a_file_that_is_not_safetensors_is_refused(trained_checkpoint: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(trained_checkpoint, folder)
    (folder / CLASS_GAUSSIANS_FILE).write_bytes(b"\xff" * 64)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(folder)
