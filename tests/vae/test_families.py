"""One model interface, two families (the article's MLP and the MLP behind a convolutional stem), any image shape
of C x H x W, and checkpoints that record the family and the class names (older ones still load)."""

from __future__ import annotations

import json

import pytest
import torch

from vae.checkpoint import FORMAT_VERSION, META_FILE, CheckpointError, load_checkpoint, save_checkpoint
from vae.config import ModelConfig
from vae.loss import bits_per_dim
from vae.model import VAE, ConvVAE, LinearVAE, build_model
from vae.sample import sample_prior


@pytest.mark.parametrize("config, family, cls", [
    (ModelConfig(32, 4), "mlp", LinearVAE),
    (ModelConfig(32, 4, conv_channels=4), "conv", ConvVAE),
    (ModelConfig(32, 4, conv_channels=4, channels=3, height=16, width=24), "conv", ConvVAE),
    (ModelConfig(32, 4, channels=3, height=30, width=30), "mlp", LinearVAE),
])
def test_build_model_picks_the_family_and_keeps_flat_images_of_any_shape(config, family, cls):
    model = build_model(config)
    assert isinstance(model, cls) and isinstance(model, VAE) and config.family == family == model.family
    x = torch.rand(3, config.input_dim)
    out = model(x)
    assert out.logits.shape == (3, config.input_dim) and out.mu.shape == (3, 4)
    assert sample_prior(model, 5).shape == (5, *config.image_shape)


def test_a_family_refuses_another_familys_config():
    with pytest.raises(ValueError, match="'mlp' family, the config is 'conv'"):
        LinearVAE(ModelConfig(32, 4, conv_channels=4))


@pytest.mark.parametrize("kwargs, fragment", [
    ({"channels": 2}, "channels must be 1 or 3"),
    ({"height": 65}, "at most 64"),
    ({"conv_channels": 4, "height": 30, "width": 30}, "divisible by 4"),
])
def test_image_shapes_are_checked(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        ModelConfig(32, 4, **kwargs)


def test_a_checkpoint_records_the_family_shape_and_class_names(tmp_path):
    model = build_model(ModelConfig(32, 4, conv_channels=4, channels=3, height=16, width=16))
    save_checkpoint(tmp_path / "c", model, dataset="/data/shapes", class_names=("circle", "star"))
    meta = json.loads((tmp_path / "c" / META_FILE).read_text())
    assert meta["format_version"] == FORMAT_VERSION == 4 and meta["family"] == "conv"
    assert meta["model_config"]["channels"] == 3 and "input_dim" not in meta["model_config"]
    loaded = load_checkpoint(tmp_path / "c")
    assert loaded.class_names == ("circle", "star") and isinstance(loaded.model, ConvVAE)


def test_a_format_3_checkpoint_loads_as_a_28x28_digit_model(tmp_path):
    save_checkpoint(tmp_path / "c", build_model(ModelConfig(32, 4, conv_channels=4)), dataset="mnist")
    path = tmp_path / "c" / META_FILE
    meta = json.loads(path.read_text())
    for key in ("family", "class_names"):
        del meta[key]
    config = meta["model_config"]
    for key in ("channels", "height", "width"):
        del config[key]
    meta.update(format_version=3, model_config={**config, "input_dim": 784})
    path.write_text(json.dumps(meta))
    loaded = load_checkpoint(tmp_path / "c")
    assert loaded.config.image_shape == (1, 28, 28) and loaded.class_names == tuple("0123456789")


@pytest.mark.parametrize("change, fragment", [
    ({"family": "mlp"}, "does not match its model_config"),
    ({"family": "transformer"}, "does not match its model_config"),
    ({"class_names": ["ok", 7]}, "class_names must be a list"),
    ({"class_names": ["x" * 101]}, "class_names must be a list"),
])
def test_a_description_that_contradicts_itself_is_refused(tmp_path, change, fragment):
    save_checkpoint(tmp_path / "c", build_model(ModelConfig(32, 4, conv_channels=4)), dataset="mnist")
    path = tmp_path / "c" / META_FILE
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    with pytest.raises(CheckpointError, match=fragment):
        load_checkpoint(tmp_path / "c")


def test_bits_per_dimension():
    assert bits_per_dim(784 * 0.6931471805599453, 784) == pytest.approx(1.0)
