"""Fault hooks for search tests, loaded by trials through search.fault_hook (never imported by the product)."""

from __future__ import annotations

import math
from typing import Any

import torch


def nan_weights_after_epoch_1_at_width_64(state: Any, hyperparameters: dict[str, Any]) -> None:
    """Make one output bias NaN after epoch 1 of the latent-width-64 trial, so that its epoch 2 diverges."""
    if state.epoch == 1 and hyperparameters["latent_width"] == 64:
        with torch.no_grad():
            state.model.hidden_to_output.bias.fill_(math.nan)
