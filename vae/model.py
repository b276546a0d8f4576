"""The LinearVAE: an MLP encoder and decoder (1..3 hidden layers each) around a Gaussian bottleneck."""

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


class LinearVAE(nn.Module):
    """input -> Linear(latent_width) -> ReLU [-> Linear(latent_width) -> ReLU] * (depth - 1)
    -> (mu, log_var) of width reparam_width -> z = mu + eps * exp(0.5 * log_var)
    -> Linear(latent_width) -> ReLU [-> Linear(latent_width) -> ReLU] * (depth - 1) -> Linear(input) -> sigmoid.

    Depth 1 has exactly the article's layers and state-dict keys (``encoder_hidden`` and
    ``decoder_hidden`` are then empty and hold no parameters), so its checkpoints load unchanged.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        width = config.latent_width
        self.input_to_hidden = nn.Linear(config.input_dim, width)
        self.encoder_hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(config.depth - 1))
        self.hidden_to_mu = nn.Linear(width, config.reparam_width)
        self.hidden_to_log_var = nn.Linear(width, config.reparam_width)
        self.z_to_hidden = nn.Linear(config.reparam_width, width)
        self.decoder_hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(config.depth - 1))
        self.hidden_to_output = nn.Linear(width, config.input_dim)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flattened images [B, input_dim] in [0, 1] -> (mu, log_var), each [B, reparam_width]."""
        hidden = torch.relu(self.input_to_hidden(x))
        for layer in self.encoder_hidden:
            hidden = torch.relu(layer(hidden))
        return self.hidden_to_mu(hidden), self.hidden_to_log_var(hidden)

    reparameterize = staticmethod(reparameterize)  # the module's function, also as model.reparameterize

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """Codes [B, reparam_width] -> pre-sigmoid pixel values [B, input_dim]."""
        hidden = torch.relu(self.z_to_hidden(z))
        for layer in self.decoder_hidden:
            hidden = torch.relu(layer(hidden))
        return self.hidden_to_output(hidden)

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
    """Parameter count of a LinearVAE of this shape, without building it."""
    d, h, r = config.input_dim, config.latent_width, config.reparam_width
    hidden_to_hidden = 2 * (config.depth - 1) * (h * h + h)
    return (d * h + h) + 2 * (h * r + r) + (r * h + h) + (h * d + d) + hidden_to_hidden


def flops_per_sample(config: ModelConfig) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward pass; a training step costs about three times this."""
    d, h, r = config.input_dim, config.latent_width, config.reparam_width
    return 2 * (d * h + 2 * h * r + r * h + h * d + 2 * (config.depth - 1) * h * h)
