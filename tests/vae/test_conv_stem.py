"""The optional convolutional stem (ModelConfig.conv_channels): shapes, counts, training, checkpoints, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from vae.checkpoint import FORMAT, META_FILE, WEIGHTS_FILE, CheckpointError, load_checkpoint, save_checkpoint
from vae.config import INPUT_DIM, MAX_CONV_CHANNELS, ModelConfig, TrainConfig
from vae.data import DataSplits, Split
from vae.model import VAE, build_model, count_parameters, flops_per_sample
from vae.train import fit


def _tiny_data(n: int = 64) -> DataSplits:
    generator = torch.Generator().manual_seed(0)
    images = (torch.rand(3 * n, INPUT_DIM, generator=generator) > 0.7).float()
    labels = torch.arange(3 * n) % 10
    return DataSplits("mnist", Split(images[:n], labels[:n]), Split(images[n:2 * n], labels[n:2 * n]),
                      Split(images[2 * n:], labels[2 * n:]), "random test images")


def _macs(model: VAE, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass per image, counted from the layers' actual input/output shapes."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            total += output[0].numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, torch.nn.ConvTranspose2d):
            total += inputs[0][0].numel() * module.out_channels * module.kernel_size[0] * module.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    model(x[:1])
    for hook in hooks:
        hook.remove()
    return total


@pytest.mark.parametrize("channels,depth", [(4, 1), (8, 2)])
def test_encode_decode_keep_flat_images_and_counts_match_the_built_model(channels, depth):
    config = ModelConfig(32, 4, depth=depth, conv_channels=channels)
    model = build_model(config)
    x = torch.rand(5, INPUT_DIM)
    mu, log_var = model.encode(x)
    assert mu.shape == log_var.shape == (5, 4)
    assert model.decode(mu).shape == (5, INPUT_DIM)
    assert model.input_to_hidden.in_features == 2 * channels * 7 * 7
    assert count_parameters(config) == model.num_parameters()
    assert flops_per_sample(config) == 2 * _macs(model, x)


def test_no_stem_keeps_the_mlp_and_its_keys():
    mlp, conv = build_model(ModelConfig(32, 4)), build_model(ModelConfig(32, 4, conv_channels=4))
    assert not any(k.startswith(("encoder_conv", "decoder_conv")) for k in mlp.state_dict())
    assert any(k.startswith("encoder_conv") for k in conv.state_dict())
    assert mlp.input_to_hidden.in_features == INPUT_DIM


def test_a_conv_model_trains_and_round_trips_through_a_checkpoint(tmp_path):
    data = _tiny_data()
    config = ModelConfig(32, 4, conv_channels=4)
    result = fit(config, TrainConfig(lr=3e-3, rounds=3, batch_size=16), data, device=torch.device("cpu"))
    assert result.history[-1]["train_neg_elbo"] < result.history[0]["train_neg_elbo"]
    save_checkpoint(tmp_path / "ckpt", result.model, dataset="mnist")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == config
    x = data.test.images[:8]
    noise = torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(result.model.eval()(x, noise).logits, loaded.model(x, noise).logits)


@pytest.mark.parametrize("bad", [-1, MAX_CONV_CHANNELS + 1, True, 2.5])
def test_conv_channels_outside_the_allow_list_are_rejected(bad):
    with pytest.raises(ValueError, match="conv_channels"):
        ModelConfig(16, 2, conv_channels=bad)


def test_a_stem_needs_sides_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        ModelConfig(16, 2, height=10, width=10, conv_channels=4)


@pytest.mark.parametrize("bad", [-1, MAX_CONV_CHANNELS + 1, "8", None])
def test_a_checkpoint_with_bad_conv_channels_is_refused_before_any_model_is_built(tmp_path, bad):
    model = build_model(ModelConfig(16, 2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / WEIGHTS_FILE),
              metadata={"format": FORMAT})
    (tmp_path / META_FILE).write_text(json.dumps({
        "format": FORMAT, "format_version": 3, "dataset": "mnist", "metrics": {}, "train_config": None,
        "model_config": {"latent_width": 16, "reparam_width": 2, "input_dim": 784, "conv_channels": bad}}))
    with pytest.raises(CheckpointError, match="conv_channels"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_whose_weights_lack_the_stem_it_declares_is_refused(tmp_path):
    model = build_model(ModelConfig(16, 2))
    save_checkpoint(tmp_path, model, dataset="mnist")
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["model_config"]["conv_channels"] = 4
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path)
