"""Checkpoints as a folder: ``model.safetensors`` (weights only, no pickle) and ``checkpoint.json``
(model config, data set, metrics, training config, versions), so that a reader can rebuild the
model without knowing how it was trained and without executing anything stored in the files."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vae.config import ModelConfig, TrainConfig
from vae.data import Split
from vae.model import LinearVAE

WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
EXAMPLES_FILE = "examples.safetensors"
EXAMPLES_PER_CLASS = 32
FORMAT = "vaesearch-checkpoint"
FORMAT_VERSION = 2  # 2: model_config has "depth" (format 1 lacks it: depth 1); readers accept 1 and 2


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, mismatched or not a checkpoint at all."""


@dataclass(frozen=True)
class Checkpoint:
    model: LinearVAE
    meta: dict[str, Any]
    examples: Split | None = None  # real labelled images to generate from (see save_checkpoint)

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def dataset(self) -> str:
        return self.meta.get("dataset", "mnist")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def save_checkpoint(
    directory: str | Path,
    model: LinearVAE,
    *,
    dataset: str,
    metrics: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    extra: dict[str, Any] | None = None,
    examples: Split | None = None,
) -> Path:
    """Write the weights and the JSON description into ``directory`` (created if needed).

    ``examples``, if given, is reduced to at most EXAMPLES_PER_CLASS images of each class and stored
    beside the weights, so that a server can "generate digit d" from real class-d examples without
    access to the data set. Pass held-out (test) images: they are shown to users.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "dataset": dataset,
        "metrics": metrics or {},
        "train_config": train_config.to_dict() if train_config else None,
        "parameters": model.num_parameters(),
        "versions": {"vaesearch": _version("vaesearch"), "torch": torch.__version__,
                     "python": platform.python_version()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=float))
    if examples is not None:
        _save_examples(directory / EXAMPLES_FILE, examples)
    return directory


def _save_examples(path: Path, examples: Split) -> None:
    labels = examples.labels.cpu()
    keep = []
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        keep.append(idx[:EXAMPLES_PER_CLASS])
    idx = torch.sort(torch.cat(keep)).values
    images = (examples.images.cpu()[idx] * 255).round().to(torch.uint8)
    save_file({"images": images.contiguous(), "labels": labels[idx].contiguous()}, str(path))


def _load_examples(path: Path, input_dim: int) -> Split | None:
    if not path.is_file():
        return None
    try:
        tensors = load_file(str(path))
        images, labels = tensors["images"], tensors["labels"]
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a valid examples file ({exc})") from exc
    if images.dtype != torch.uint8 or images.ndim != 2 or images.shape[1] != input_dim or len(labels) != len(images):
        raise CheckpointError(f"{path} holds images of the wrong shape {tuple(images.shape)} for this model")
    return Split(images.to(torch.float32) / 255.0, labels.to(torch.int64))


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON description, validated."""
    directory = _checkpoint_dir(directory)
    try:
        meta = json.loads((directory / META_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{directory / META_FILE} is not a readable checkpoint description ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{directory / META_FILE} is not a {FORMAT} file")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{directory} was written by a newer vaesearch (format {meta['format_version']})")
    return meta


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Rebuild the model from a checkpoint folder (or the path of one of its two files).

    Only safetensors is read for weights: nothing in the files is ever executed.
    """
    directory = _checkpoint_dir(directory)
    meta = read_meta(directory)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{directory / META_FILE} has no valid model_config ({exc})") from exc
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{weights} is not a valid safetensors file, truncated or of another format ({exc})"
        ) from exc
    model = LinearVAE(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        raise CheckpointError(
            f"{weights} does not match its config {config.to_dict()}: missing {missing or 'none'}, "
            f"wrong shape {wrong or 'none'}, unexpected {sorted(set(found) - set(expected)) or 'none'}"
        )
    model.load_state_dict(state)
    model.to(device).eval()
    return Checkpoint(model, meta, _load_examples(directory / EXAMPLES_FILE, config.input_dim))


def _checkpoint_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS_FILE, META_FILE):
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path} (expected a folder with {WEIGHTS_FILE} and {META_FILE})")
    if not (path / META_FILE).is_file():
        raise CheckpointError(f"{path} is not a checkpoint folder: {META_FILE} is missing")
    return path
