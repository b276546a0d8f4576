"""Faults for search tests: functions a test hands to ``run_search(after_round=...)``, which every trial calls
after each round (never imported by the product). Trials unpickle them by value (``register_pickle_by_value``),
so Ray's workers need not import this module."""

from __future__ import annotations

import math
from typing import Any

import torch


def nan_weights_after_round_1_at_width_64(state: Any, hyperparameters: dict[str, Any]) -> None:
    """Make one output bias NaN after round 1 of the latent-width-64 trial, so that its round 2 diverges."""
    if state.round == 1 and hyperparameters["latent_width"] == 64:
        with torch.no_grad():
            state.model.hidden_to_output.bias.fill_(math.nan)
