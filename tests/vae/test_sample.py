"""Sampling: "generate digit d" draws from class-d posteriors; prior samples, interpolation, grids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from vae.data import DataSplits, Split
from vae.sample import generate_class, grid_to_uint8, interpolate, reconstruct, sample_prior, save_grid


def _rows_in(rows: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
    """For each row of ``rows``, whether it is exactly one of the rows of ``pool``."""
    return (rows.unsqueeze(1) == pool.unsqueeze(0)).all(-1).any(-1)


@pytest.fixture(scope="module")
def digit_classifier(mnist_splits: DataSplits):
    """Multinomial logistic regression on the real training digits (about 91% on real test digits)."""
    x, y = mnist_splits.train.images, mnist_splits.train.labels
    weight = torch.zeros(784, 10, requires_grad=True)
    bias = torch.zeros(10, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=100)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 1e-3 * weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    weight, bias = weight.detach(), bias.detach()

    def classify(images: torch.Tensor) -> torch.Tensor:
        return (images.reshape(len(images), -1) @ weight + bias).argmax(1)

    real_accuracy = (classify(mnist_splits.test.images) == mnist_splits.test.labels).float().mean()
    assert real_accuracy > 0.85
    return classify


@pytest.mark.parametrize("digit", [0, 3, 7])
def test_sources_are_real_examples_of_the_class(trained_fit, mnist_splits: DataSplits, digit: int) -> None:
    test = mnist_splits.test
    out = generate_class(trained_fit.model, test.images, test.labels, digit, 12, n_sources=5,
                         generator=torch.Generator().manual_seed(digit))
    assert out.sources.shape == (5, 1, 28, 28) and out.samples.shape == (12, 1, 28, 28)
    sources = out.sources.reshape(5, -1)
    assert _rows_in(sources, test.images[test.labels == digit]).all()
    assert not _rows_in(sources, test.images[test.labels != digit]).any()
    assert out.source_index.tolist() == [i % 5 for i in range(12)]


def test_zero_noise_gives_the_reconstructions_of_the_sources(trained_fit, mnist_splits: DataSplits) -> None:
    test = mnist_splits.test
    out = generate_class(trained_fit.model, test.images, test.labels, 4, 9, n_sources=3, noise_scale=0.0,
                         generator=torch.Generator().manual_seed(0))
    expected = reconstruct(trained_fit.model, out.sources)[out.source_index]
    torch.testing.assert_close(out.samples, expected)
    noisy = generate_class(trained_fit.model, test.images, test.labels, 4, 9, n_sources=3, noise_scale=1.0,
                           generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(noisy.sources, out.sources)  # same generator, same sources
    assert not torch.allclose(noisy.samples, out.samples)  # but posterior draws, not the means


def test_generated_digits_are_recognised_as_that_digit(trained_fit, mnist_splits: DataSplits, digit_classifier) -> None:
    test = mnist_splits.test
    generator = torch.Generator().manual_seed(0)
    prior_labels = digit_classifier(sample_prior(trained_fit.model, 500, generator=generator))
    per_class = []
    for digit in range(10):
        out = generate_class(trained_fit.model, test.images, test.labels, digit, 50, n_sources=10,
                             noise_scale=1.0, generator=generator)
        hit_rate = (digit_classifier(out.samples) == digit).float().mean().item()
        prior_rate = (prior_labels == digit).float().mean().item()
        assert hit_rate > max(0.5, 2 * prior_rate), (digit, hit_rate, prior_rate)
        per_class.append(hit_rate)
    assert sum(per_class) / 10 > 0.75, per_class


def test_generation_is_seeded(trained_fit, mnist_splits: DataSplits) -> None:
    test = mnist_splits.test

    def draw(seed: int) -> torch.Tensor:
        return generate_class(trained_fit.model, test.images, test.labels, 2, 6, n_sources=2,
                              generator=torch.Generator().manual_seed(seed)).samples

    assert torch.equal(draw(1), draw(1))
    assert not torch.equal(draw(1), draw(2))


def test_class_without_examples_is_an_error(trained_fit) -> None:
    split = Split(torch.rand(5, 784), torch.tensor([0, 1, 1, 2, 0]))
    with pytest.raises(ValueError, match="no examples of class 9"):
        generate_class(trained_fit.model, split.images, split.labels, 9, 4)


def test_prior_samples(trained_fit) -> None:
    images = sample_prior(trained_fit.model, 7, generator=torch.Generator().manual_seed(0))
    assert images.shape == (7, 1, 28, 28) and images.min() >= 0 and images.max() <= 1
    cold = sample_prior(trained_fit.model, 7, generator=torch.Generator().manual_seed(0), temperature=0.0)
    torch.testing.assert_close(cold, cold[:1].expand(7, -1, -1, -1))  # every z = 0


def test_interpolation_ends_at_the_two_reconstructions(trained_fit, mnist_splits: DataSplits) -> None:
    a, b = mnist_splits.test.images[0].reshape(1, 28, 28), mnist_splits.test.images[1].reshape(1, 28, 28)
    path = interpolate(trained_fit.model, a, b, 5)
    assert path.shape == (5, 1, 28, 28)
    ends = reconstruct(trained_fit.model, torch.stack([a, b]))
    torch.testing.assert_close(path[0], ends[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(path[-1], ends[1], atol=1e-5, rtol=1e-5)


def test_grids(trained_fit, tmp_path: Path) -> None:
    images = sample_prior(trained_fit.model, 10, generator=torch.Generator().manual_seed(0))
    array = grid_to_uint8(images, nrow=5)
    assert array.shape == (2 * 30 + 2, 5 * 30 + 2, 3) and array.dtype == torch.uint8
    path = save_grid(images, tmp_path / "sub" / "grid.png", nrow=5)
    with Image.open(path) as png:
        assert png.size == (5 * 30 + 2, 2 * 30 + 2)
