"""The app on models of a user's own images: colour, another size, the data set's class names, and no labels."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from serve.service import InvalidRequest, VAEService
from serve.ui import build_app, class_choices
from vae.checkpoint import save_checkpoint
from vae.config import ModelConfig
from vae.data import Split
from vae.model import build_model

CLASSES = ("cat", "dog", "bird")


def own_checkpoint(directory: Path, class_names: tuple[str, ...], channels: int = 3) -> Path:
    """A small convolutional model of 32x32 images with a bank of real examples (labels -1 without classes)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(32, 4, conv_channels=4, channels=channels, height=32, width=32))
    n = 12
    labels = torch.arange(n) % len(class_names) if class_names else torch.full((n,), -1)
    examples = Split(torch.rand(n, channels * 32 * 32), labels)
    return save_checkpoint(directory, model, dataset="pets", examples=examples, class_names=class_names)


@pytest.fixture(scope="module")
def colour(tmp_path_factory: pytest.TempPathFactory) -> VAEService:
    return VAEService.from_checkpoint(own_checkpoint(tmp_path_factory.mktemp("rgb") / "ckpt", CLASSES))


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory: pytest.TempPathFactory) -> VAEService:
    return VAEService.from_checkpoint(own_checkpoint(tmp_path_factory.mktemp("flat") / "ckpt", (), channels=1))


def test_the_classes_are_the_data_sets_and_samples_come_in_colour(colour: VAEService) -> None:
    assert colour.served.class_names == CLASSES and colour.model_info()["classes"] == list(CLASSES)
    assert class_choices(colour) == [("cat", 0), ("dog", 1), ("bird", 2)]
    out = colour.generate(2, 4, 1.0, seed=0, n_sources=1, mode="examples")
    assert out.samples.ndim == 3 and out.samples.shape[2] == 3  # H x W x RGB
    assert out.samples.shape[:2] == (2 + 34, 2 + 4 * 34)  # one row of four 32-pixel cells with make_grid's padding
    assert colour.prior(1, 1.0, 0).shape == (32, 32, 3)


def test_an_upload_becomes_the_models_channels_and_size(colour: VAEService, tmp_path: Path) -> None:
    photo = Image.new("L", (200, 100), 40)
    photo.paste(220, (0, 0, 100, 100))  # a bright left half
    photo.save(tmp_path / "photo.png")
    result = colour.reconstruct(tmp_path / "photo.png")
    assert result.model_input.shape == (32, 32, 3)  # grayscale turned RGB, 200x100 resized to 32x32
    left, right = result.model_input[:, :12].mean(), result.model_input[:, 20:].mean()
    assert left > 180 and right < 70  # the whole image, not an MNIST-style crop of its ink
    assert result.reconstruction.shape == (32, 32, 3) and np.isfinite(result.neg_elbo)


def test_without_labels_generate_says_why_and_the_prior_samples(unlabelled: VAEService) -> None:
    with pytest.raises(InvalidRequest, match="no labels.*Prior view"):
        unlabelled.generate(0, 4, 1.0, seed=0)
    assert class_choices(unlabelled) == [("all images (no labels)", 0)]
    assert unlabelled.prior(4, 1.0, 0).shape == (2 + 34, 2 + 4 * 34)  # grayscale: no channel axis
    assert unlabelled.interpolate(0, 0, 3, example_a=0, example_b=5).shape == (32 + 4, 2 + 5 * 34)


def test_the_page_offers_the_class_names_or_says_there_are_none(colour: VAEService, unlabelled: VAEService) -> None:
    def generate_class(demo: gr.Blocks) -> gr.Dropdown:
        return next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "generate-class")

    labelled_page, flat_page = build_app(colour), build_app(unlabelled)
    dropdown = generate_class(labelled_page)
    assert [choice[0] for choice in dropdown.choices] == list(CLASSES) and dropdown.interactive is not False
    assert generate_class(flat_page).interactive is False
    notes = [b for b in flat_page.blocks.values() if getattr(b, "elem_id", None) == "generate-unlabelled"]
    assert len(notes) == 1 and "no labels" in notes[0].value
