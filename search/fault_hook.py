"""A test-only way to inject faults into search trials, kept out of the production config.

When ``VAESEARCH_TEST_FAULT_HOOK`` is set to ``path/to/file.py:function``, every trial calls
``function(state, hyperparameters)`` after each epoch (``state``: the ``vae.train.TrainState``), e.g. to
make a weight NaN so that the next epoch really diverges. Unset (always, outside tests) it costs nothing.
Trials of a local Ray inherit the driver's environment.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

FAULT_HOOK_ENV = "VAESEARCH_TEST_FAULT_HOOK"


def load_fault_hook() -> Callable[[Any, dict[str, Any]], None] | None:
    spec = os.environ.get(FAULT_HOOK_ENV)
    if not spec:
        return None
    path, _, name = spec.rpartition(":")
    module_spec = importlib.util.spec_from_file_location("vaesearch_test_fault_hook", path)
    if module_spec is None or module_spec.loader is None:
        raise RuntimeError(f"{FAULT_HOOK_ENV}: cannot load {path!r}")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, name)
