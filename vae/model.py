"""The LinearVAE: an MLP encoder and decoder (1..3 hidden layers each) around a Gaussian bottleneck,
optionally behind a small convolutional stem (``ModelConfig.conv_channels``)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from vae.config import IMAGE_SIDE, ModelConfig


class VAEOutput(NamedTuple):
    """What a forward pass returns. ``logits`` are pre-sigmoid pixel values (the loss uses them
    for numerical stability); ``torch.sigmoid(logits)`` is the reconstruction in [0, 1]."""

    logits: torch.Tensor
    mu: torch.Tensor
    log_var: torch.Tensor
    z: torch.Tensor


def reparameterize(mu: torch.Tensor, log_var: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Draw z ~ N(mu, exp(log_var)) as z = mu + noise * exp(log_var / 2), differentiable in mu and log_var.

    ``noise`` is the standard normal eps (drawn here when None); pass it to make the draw reproducible,
    or to scale it (``noise_scale * eps``). It may carry leading sample dimensions: mu and log_var
    broadcast against it. Every draw from a posterior in the project goes through this function.
    """
    if noise is None:
        noise = torch.randn_like(mu)
    return mu + noise * torch.exp(0.5 * log_var)


class LinearVAE(nn.Module):
    """input -> Linear(latent_width) -> ReLU [-> Linear(latent_width) -> ReLU] * (depth - 1)
    -> (mu, log_var) of width reparam_width -> z = mu + eps * exp(0.5 * log_var)
    -> Linear(latent_width) -> ReLU [-> Linear(latent_width) -> ReLU] * (depth - 1) -> Linear(input) -> sigmoid.

    Depth 1 has exactly the article's layers and state-dict keys (``encoder_hidden`` and
    ``decoder_hidden`` are then empty and hold no parameters), so its checkpoints load unchanged.

    With ``conv_channels`` c > 0, ``encoder_conv`` (Conv 1->c, ReLU, Conv c->2c, ReLU; 4x4, stride 2: 28 -> 14
    -> 7) comes before ``input_to_hidden`` and ``decoder_conv`` (ReLU, ConvTranspose 2c->c, ReLU, ConvTranspose
    c->1) after ``hidden_to_output``; encode and decode still take and give flattened images. With c = 0 both
    are empty: the MLP, with the same keys as before.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        width, channels = config.latent_width, config.conv_channels
        self.encoder_conv = nn.Sequential()
        self.decoder_conv = nn.Sequential()
        if channels:
            self.encoder_conv = nn.Sequential(
                nn.Unflatten(1, (1, IMAGE_SIDE, IMAGE_SIDE)), nn.Conv2d(1, channels, 4, 2, 1), nn.ReLU(),
                nn.Conv2d(channels, 2 * channels, 4, 2, 1), nn.ReLU(), nn.Flatten())
            self.decoder_conv = nn.Sequential(
                nn.ReLU(), nn.Unflatten(1, (2 * channels, IMAGE_SIDE // 4, IMAGE_SIDE // 4)),
                nn.ConvTranspose2d(2 * channels, channels, 4, 2, 1), nn.ReLU(),
                nn.ConvTranspose2d(channels, 1, 4, 2, 1), nn.Flatten())
        self.input_to_hidden = nn.Linear(config.stem_features, width)
        self.encoder_hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(config.depth - 1))
        self.hidden_to_mu = nn.Linear(width, config.reparam_width)
        self.hidden_to_log_var = nn.Linear(width, config.reparam_width)
        self.z_to_hidden = nn.Linear(config.reparam_width, width)
        self.decoder_hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(config.depth - 1))
        self.hidden_to_output = nn.Linear(width, config.stem_features)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened images [B, input_dim] in [0, 1] -> (mu, log_var), each [B, reparam_width]."""
        hidden = torch.relu(self.input_to_hidden(self.encoder_conv(x)))
        for layer in self.encoder_hidden:
            hidden = torch.relu(layer(hidden))
        return self.hidden_to_mu(hidden), self.hidden_to_log_var(hidden)

    reparameterize = staticmethod(reparameterize)  # the module's function, also as model.reparameterize

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Codes [B, reparam_width] -> pre-sigmoid pixel values [B, input_dim]."""
        hidden = torch.relu(self.z_to_hidden(z))
        for layer in self.decoder_hidden:
            hidden = torch.relu(layer(hidden))
        return self.decoder_conv(self.hidden_to_output(hidden))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes [B, reparam_width] -> pixel probabilities [B, input_dim] in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> VAEOutput:
        mu, log_var = self.encode(x)
        z = reparameterize(mu, log_var, noise)
        return VAEOutput(self.decode_logits(z), mu, log_var, z)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def count_parameters(config: ModelConfig) -> int:
    """Parameter count of a LinearVAE of this shape, built on torch's meta device (no memory, no init)."""
    with torch.device("meta"):
        return LinearVAE(config).num_parameters()


def flops_per_sample(config: ModelConfig) -> int:
    """FLOPs (2 per multiply-add) of one image's forward pass, as torch's FlopCounterMode counts the matmuls
    and convolutions, on the meta device; a training step costs about three times this."""
    from torch.utils.flop_counter import FlopCounterMode  # here: 0.1 s of import that only benchmarks need

    with torch.device("meta"):
        model = LinearVAE(config)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, config.input_dim), torch.empty(1, config.reparam_width))
    return counter.get_total_flops()
