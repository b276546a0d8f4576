"""The VAE families behind one interface: ``VAE`` (encode, decode, config, family), the article's MLP
(``LinearVAE``) and the MLP behind a small convolutional stem (``ConvVAE``); ``build_model`` picks the family a
``ModelConfig`` describes. Sampling, the IWAE bound, class Gaussians, checkpoints and training use only the
interface, on images flattened to ``[B, C*H*W]`` in [0, 1]."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from vae.config import ModelConfig


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


class VAE(nn.Module):
    """The interface every family implements, and the hidden layers they share:

    features -> Linear(latent_width) -> ReLU [-> Linear(latent_width) -> ReLU] * (depth - 1)
    -> (mu, log_var) of width reparam_width -> z = mu + eps * exp(0.5 * log_var)
    -> Linear(latent_width) -> ReLU [-> Linear(latent_width) -> ReLU] * (depth - 1) -> Linear(features).

    A family decides what ``features`` are: the pixels (``LinearVAE``) or what a convolutional stem makes of them
    (``ConvVAE``), through ``stem_in`` and ``stem_out``. ``encode`` and ``decode`` take and give flattened
    images, whatever the family.
    """

    family = ""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.family != self.family:
            raise ValueError(f"a {type(self).__name__} is the {self.family!r} family, the config is {config.family!r}")
        self.config = config
        width = config.latent_width
        self.input_to_hidden = nn.Linear(config.stem_features, width)
        self.encoder_hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(config.depth - 1))
        self.hidden_to_mu = nn.Linear(width, config.reparam_width)
        self.hidden_to_log_var = nn.Linear(width, config.reparam_width)
        self.z_to_hidden = nn.Linear(config.reparam_width, width)
        self.decoder_hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(config.depth - 1))
        self.hidden_to_output = nn.Linear(width, config.stem_features)

    def stem_in(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened images [B, input_dim] -> the features the first hidden layer takes."""
        return x

    def stem_out(self, features: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's output features -> pre-sigmoid pixel values [B, input_dim]."""
        return features

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened images [B, input_dim] in [0, 1] -> (mu, log_var), each [B, reparam_width]."""
        hidden = torch.relu(self.input_to_hidden(self.stem_in(x)))
        for layer in self.encoder_hidden:
            hidden = torch.relu(layer(hidden))
        return self.hidden_to_mu(hidden), self.hidden_to_log_var(hidden)

    reparameterize = staticmethod(reparameterize)  # the module's function, also as model.reparameterize

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Codes [B, reparam_width] -> pre-sigmoid pixel values [B, input_dim]."""
        hidden = torch.relu(self.z_to_hidden(z))
        for layer in self.decoder_hidden:
            hidden = torch.relu(layer(hidden))
        return self.stem_out(self.hidden_to_output(hidden))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Codes [B, reparam_width] -> pixel probabilities [B, input_dim] in [0, 1]."""
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> VAEOutput:
        mu, log_var = self.encode(x)
        z = reparameterize(mu, log_var, noise)
        return VAEOutput(self.decode_logits(z), mu, log_var, z)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class LinearVAE(VAE):
    """The article's VAE: the pixels feed the first hidden layer directly. Depth 1 has exactly the article's
    layers and state-dict keys (``encoder_hidden`` and ``decoder_hidden`` are then empty), so its checkpoints
    load unchanged."""

    family = "mlp"


class ConvVAE(VAE):
    """The MLP behind a convolutional stem of ``c = conv_channels``: ``encoder_conv`` (Conv C->c, ReLU, Conv
    c->2c, ReLU; 4x4, stride 2: each side / 4) before ``input_to_hidden``, ``decoder_conv`` (ReLU, ConvTranspose
    2c->c, ReLU, ConvTranspose c->C) after ``hidden_to_output``."""

    family = "conv"

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        c, (channels, height, width) = config.conv_channels, config.image_shape
        self.encoder_conv = nn.Sequential(
            nn.Unflatten(1, (channels, height, width)), nn.Conv2d(channels, c, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.ReLU(), nn.Flatten())
        self.decoder_conv = nn.Sequential(
            nn.ReLU(), nn.Unflatten(1, (2 * c, height // 4, width // 4)),
            nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(c, channels, 4, 2, 1), nn.Flatten())

    def stem_in(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder_conv(x)

    def stem_out(self, features: torch.Tensor) -> torch.Tensor:
        return self.decoder_conv(features)


FAMILY_CLASSES: dict[str, type[VAE]] = {cls.family: cls for cls in (LinearVAE, ConvVAE)}


def build_model(config: ModelConfig) -> VAE:
    """The model of the family ``config`` describes, freshly initialised."""
    return FAMILY_CLASSES[config.family](config)


def count_parameters(config: ModelConfig) -> int:
    """Parameter count of a model of this shape, built on torch's meta device (no memory, no init)."""
    with torch.device("meta"):
        return build_model(config).num_parameters()


def flops_per_sample(config: ModelConfig) -> int:
    """FLOPs (2 per multiply-add) of one image's forward pass, as torch's FlopCounterMode counts the matmuls
    and convolutions, on the meta device; a training step costs about three times this."""
    from torch.utils.flop_counter import FlopCounterMode  # here: 0.1 s of import that only benchmarks need

    with torch.device("meta"):
        model = build_model(config)
        with FlopCounterMode(display=False) as counter:
            model(torch.empty(1, config.input_dim), torch.empty(1, config.reparam_width))
    return counter.get_total_flops()
