"""Checkpoints as a folder: ``model.safetensors`` (weights only, no pickle) and ``checkpoint.json``
(model config, data set, metrics, training config, versions), so that a reader can rebuild the
model without knowing how it was trained and without executing anything stored in the files.

A checkpoint is untrusted input (the app serves folders a user points it at). Reading one checks, in
this order and before anything is allocated from its contents: the size and nesting of checkpoint.json,
the types and bounds of its fields (vae.config's MAX_* widths), then the safetensors header (its size,
dtypes, shapes and offsets against the file size), then the tensor shapes against a model of the
validated config built on torch's "meta" device (no memory). Only then are the weights read.
Every failure is a CheckpointError with a one-line message.
"""

from __future__ import annotations

import json
import math
import platform
import struct
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from vae.class_gaussians import (
    CLASS_GAUSSIANS_FILE,
    ClassGaussians,
    ClassGaussiansError,
    load_class_gaussians,
    save_class_gaussians,
)
from vae.config import (
    FAMILIES,
    IMAGE_CHANNELS,
    INPUT_DIM,
    MAX_CONV_CHANNELS,
    MAX_DEPTH,
    MAX_LATENT_WIDTH,
    MAX_REPARAM_WIDTH,
    MAX_SIDE,
    ModelConfig,
    TrainConfig,
)
from vae.data import DATASETS, Split
from vae.model import VAE, build_model

WEIGHTS_FILE = "model.safetensors"
META_FILE = "checkpoint.json"
EXAMPLES_FILE = "examples.safetensors"
EXAMPLES_PER_CLASS = 32
CHECKPOINT_FILES = (WEIGHTS_FILE, META_FILE, EXAMPLES_FILE, CLASS_GAUSSIANS_FILE)  # what a checkpoint folder holds
FORMAT = "vaesearch-checkpoint"
FORMAT_VERSION = 4
# Versions this reader accepts. Format 2 (written by the deeper models) adds an optional model_config "depth"; a
# config without it means depth 1, which keeps format 1's layer names. Format 3 adds an optional "conv_channels";
# a config without it means 0 (no convolutional stem), which keeps the same layer names. Format 4 records the
# image shape (model_config "channels", "height", "width" instead of "input_dim", which formats 1-3 could only
# have as 784: a 1 x 28 x 28 image), the model "family" and the data set's "class_names".
READABLE_VERSIONS = tuple(range(1, FORMAT_VERSION + 1))
MAX_META_BYTES = 1 << 20  # checkpoint.json; a real one is about 1 KB
MAX_META_DEPTH = 8  # nesting of checkpoint.json (a real one has 3 levels)
MAX_HEADER_BYTES = 1 << 20  # a safetensors header; a real one is well under 4 KB
MAX_EXAMPLES = 100_000  # images in examples.safetensors (save_checkpoint keeps 32 per class)
MODEL_CONFIG_BOUNDS = {"latent_width": MAX_LATENT_WIDTH, "reparam_width": MAX_REPARAM_WIDTH, "depth": MAX_DEPTH,
                       "conv_channels": MAX_CONV_CHANNELS, "channels": max(IMAGE_CHANNELS), "height": MAX_SIDE,
                       "width": MAX_SIDE, "input_dim": INPUT_DIM}
MODEL_CONFIG_MINIMA = {"conv_channels": 0, "input_dim": INPUT_DIM}  # every other field is at least 1
MAX_CLASS_NAMES = 1000
MAX_CLASS_NAME_CHARS = 100
_DTYPE_NAMES = {torch.float32: "F32", torch.uint8: "U8", torch.int64: "I64"}
_DTYPE_BYTES = {"F32": 4, "U8": 1, "I64": 8, "F16": 2, "BF16": 2, "F64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U16": 2, "U32": 4, "U64": 8, "BOOL": 1}


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, mismatched or not a checkpoint at all."""


@dataclass(frozen=True)
class Checkpoint:
    model: VAE
    meta: dict[str, Any]
    examples: Split | None = None  # real labelled images to generate from (see save_checkpoint)
    class_gaussians: ClassGaussians | None = None  # per-class code distributions (vae.class_gaussians), optional

    @property
    def config(self) -> ModelConfig:
        return self.model.config

    @property
    def dataset(self) -> str:
        return self.meta.get("dataset", "mnist")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The data set's class names: recorded since format 4; before, those of its named data set (MNIST's
        digits, Fashion-MNIST's items). Empty when the data set had no labels."""
        if isinstance(self.meta.get("class_names"), list):
            return tuple(self.meta["class_names"])
        known = DATASETS.get(self.dataset)
        return known.class_names if known else tuple(str(d) for d in range(10))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def save_checkpoint(
    directory: str | Path,
    model: VAE,
    *,
    dataset: str,
    metrics: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    extra: dict[str, Any] | None = None,
    examples: Split | None = None,
    class_gaussians: ClassGaussians | None = None,
    class_names: tuple[str, ...] | None = None,
) -> Path:
    """Write the weights and the JSON description into ``directory`` (created if needed).

    ``class_names``: the data set's (empty: it had no labels); default: those of the named ``dataset``.
    ``examples``, if given, is reduced to at most EXAMPLES_PER_CLASS images of each class and stored
    beside the weights, so that a server can "generate digit d" from real class-d examples without
    access to the data set. Pass held-out (test) images: they are shown to users.
    ``class_gaussians`` (fitted on the training split, vae.class_gaussians) are stored as CLASS_GAUSSIANS_FILE.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_FILE), metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "family": model.config.family,
        "dataset": dataset,
        "class_names": list(class_names if class_names is not None else DATASETS[dataset].class_names),
        "metrics": metrics or {},
        "train_config": train_config.to_dict() if train_config else None,
        "parameters": model.num_parameters(),
        "versions": {"vaesearch": _version("vaesearch"), "torch": torch.__version__,
                     "python": platform.python_version()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    # allow_nan=False: a non-finite metric fails here, rather than writing a file read_meta refuses.
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=float, allow_nan=False))
    if examples is not None:
        _save_examples(directory / EXAMPLES_FILE, examples)
    if class_gaussians is not None:
        save_class_gaussians(directory / CLASS_GAUSSIANS_FILE, class_gaussians)
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
    header = read_safetensors_header(path)
    count = header.get("labels", {}).get("shape", [None])[0]
    if not isinstance(count, int) or not 0 < count <= MAX_EXAMPLES:
        raise CheckpointError(f"{path} must hold 1 to {MAX_EXAMPLES} labelled images")
    check_shapes(path, header, {"images": ((count, input_dim), "U8"), "labels": ((count,), "I64")})
    try:
        tensors = load_file(str(path))
        images, labels = tensors["images"], tensors["labels"]
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path} is not a valid examples file ({exc})") from exc
    if images.dtype != torch.uint8 or images.ndim != 2 or images.shape[1] != input_dim or len(labels) != len(images):
        raise CheckpointError(f"{path} holds images of the wrong shape {tuple(images.shape)} for this model")
    return Split(images.to(torch.float32) / 255.0, labels.to(torch.int64))


def read_meta(directory: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON description, validated (size, nesting, types and bounds; see the module doc)."""
    directory = _checkpoint_dir(directory)
    path = directory / META_FILE
    try:
        size = path.stat().st_size
        if size > MAX_META_BYTES:
            raise CheckpointError(f"{path} is {size:,} bytes; a checkpoint description is at most {MAX_META_BYTES:,}")
        meta = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise CheckpointError(f"{path} is not a readable checkpoint description ({reason})") from exc
    if _nesting(meta) > MAX_META_DEPTH:
        raise CheckpointError(f"{path} is nested more than {MAX_META_DEPTH} levels deep")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path} has an invalid format_version {version!r} (an integer from 1)")
    if version not in READABLE_VERSIONS:
        raise CheckpointError(f"{directory} was written by a newer vaesearch (format {version}; "
                              f"this one reads {', '.join(map(str, READABLE_VERSIONS))})")
    _check_model_config(path, meta.get("model_config"))
    for key in ("metrics", "train_config", "versions"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            raise CheckpointError(f"{path}: {key} must be an object, got {type(meta[key]).__name__}")
    if not isinstance(meta.get("dataset", "mnist"), str):
        raise CheckpointError(f"{path}: dataset must be a string")
    _check_class_names(path, meta.get("class_names"))
    family = meta.get("family")
    if family is not None and (family not in FAMILIES or family != model_config_from_meta(meta).family):
        raise CheckpointError(f"{path}: family {str(family)[:40]!r} does not match its model_config (one of "
                              f"{', '.join(FAMILIES)})")
    return meta


def _check_class_names(path: Path, names: Any) -> None:
    if names is None:
        return
    if not (isinstance(names, list) and len(names) <= MAX_CLASS_NAMES
            and all(isinstance(n, str) and 0 < len(n) <= MAX_CLASS_NAME_CHARS for n in names)):
        raise CheckpointError(f"{path}: class_names must be a list of at most {MAX_CLASS_NAMES} names of 1 to "
                              f"{MAX_CLASS_NAME_CHARS} characters")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def _nesting(value: Any) -> int:
    """How deeply lists and objects nest in a parsed JSON value (iterative: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            if level > MAX_META_DEPTH:
                break
            stack.extend((child, level + 1) for child in item)
    return deepest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_model_config(path: Path, config: Any) -> None:
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} has no valid model_config (an object is required)")
    unknown = sorted(set(config) - set(MODEL_CONFIG_BOUNDS))
    if unknown:
        raise CheckpointError(f"{path}: unknown model_config key(s) {', '.join(map(str, unknown))[:200]}")
    if "input_dim" in config and {"channels", "height", "width"} & set(config):
        raise CheckpointError(f"{path}: model_config has both input_dim (formats 1-3) and an image shape (format 4)")
    if config.get("channels", 1) not in IMAGE_CHANNELS:
        raise CheckpointError(f"{path}: model_config channels must be 1 or 3")
    for key in ("latent_width", "reparam_width"):
        if key not in config:
            raise CheckpointError(f"{path}: model_config lacks {key}")
    for key, value in config.items():
        low = MODEL_CONFIG_MINIMA.get(key, 1)
        if not _is_int(value) or not low <= value <= MODEL_CONFIG_BOUNDS[key]:
            shown = repr(value) if isinstance(value, (int, float, bool)) or value is None else type(value).__name__
            raise CheckpointError(f"{path}: model_config {key} must be an integer from {low} to "
                                  f"{MODEL_CONFIG_BOUNDS[key]}, got {shown[:40]}")


def model_config_from_meta(meta: dict[str, Any]) -> ModelConfig:
    """The ModelConfig of a validated description (fields older formats lack take their defaults)."""
    try:
        return ModelConfig.from_dict(meta["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid model_config ({exc})") from exc


def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors a safetensors file declares ({name: {"dtype", "shape", "data_offsets"}}), checked
    against the file's size, without reading any tensor data."""
    try:
        size = path.stat().st_size
        with path.open("rb") as file:
            prefix = file.read(8)
            if len(prefix) < 8:
                raise CheckpointError(f"{path} is not a valid safetensors file (only {size} bytes)")
            (length,) = struct.unpack("<Q", prefix)
            if length > MAX_HEADER_BYTES or length > size - 8:
                raise CheckpointError(f"{path} is not a valid safetensors file for this project: it declares a "
                                      f"{length:,}-byte header (at most {MAX_HEADER_BYTES:,}; file {size:,} bytes)")
            header = json.loads(file.read(length).decode("utf-8"), parse_constant=_refuse_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = type(exc).__name__
        raise CheckpointError(f"{path} is not a valid safetensors file: unreadable header ({reason})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a valid safetensors file: invalid header")
    header.pop("__metadata__", None)
    data_bytes = size - 8 - length
    end = 0
    for name, info in header.items():
        ok = (isinstance(info, dict) and info.get("dtype") in _DTYPE_BYTES and isinstance(info.get("shape"), list)
              and len(info["shape"]) <= 4 and all(_is_int(d) and d >= 0 for d in info["shape"])
              and isinstance(info.get("data_offsets"), list) and len(info["data_offsets"]) == 2
              and all(_is_int(o) for o in info["data_offsets"]))
        if not ok:
            raise CheckpointError(f"{path} is not a valid safetensors file: tensor {str(name)[:60]!r} has an invalid "
                                  "header entry")
        start, stop = info["data_offsets"]
        nbytes = math.prod(info["shape"]) * _DTYPE_BYTES[info["dtype"]]
        if not 0 <= start <= stop <= data_bytes or stop - start != nbytes:
            raise CheckpointError(f"{path} is not a valid safetensors file: tensor {str(name)[:60]!r} does not fit "
                                  "the file (truncated or corrupt)")
        end = max(end, stop)
    if end != data_bytes:
        raise CheckpointError(f"{path} is not a valid safetensors file: {data_bytes - end:,} bytes that its header "
                              "does not account for")
    return header


def check_shapes(path: Path, header: dict[str, Any], expected: dict[str, tuple[tuple[int, ...], str]]) -> None:
    """Raise CheckpointError unless the header declares exactly ``expected`` ({name: (shape, dtype)})."""
    found = {name: (tuple(info["shape"]), info["dtype"]) for name, info in header.items()}
    if found != expected:
        missing = sorted(set(expected) - set(found))
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        unexpected = sorted(set(found) - set(expected))
        raise CheckpointError(
            f"{path} does not match its config: missing {missing or 'none'}, wrong shape or dtype "
            f"{wrong or 'none'}, unexpected {unexpected[:5] or 'none'}{' ...' if len(unexpected) > 5 else ''}"
        )


def expected_weights(config: ModelConfig) -> dict[str, tuple[tuple[int, ...], str]]:
    """{name: (shape, dtype)} of the model of ``config``, from a model built on the "meta" device."""
    with torch.device("meta"):
        model = build_model(config)
    return {k: (tuple(v.shape), _DTYPE_NAMES[v.dtype]) for k, v in model.state_dict().items()}


def load_checkpoint(directory: str | Path, device: torch.device | str = "cpu") -> Checkpoint:
    """Rebuild the model from a checkpoint folder (or the path of one of its two files).

    Only safetensors is read for weights: nothing in the files is ever executed. Everything is
    validated (see the module doc) before a tensor is allocated.
    """
    directory = _checkpoint_dir(directory)
    meta = read_meta(directory)
    config = model_config_from_meta(meta)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{weights} is missing")
    check_shapes(weights, read_safetensors_header(weights), expected_weights(config))
    try:
        state = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{weights} is not a valid safetensors file, truncated or of another format ({exc})"
        ) from exc
    model = build_model(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not match its config {config.to_dict()} ({exc})") from exc
    model.to(device).eval()
    return Checkpoint(model, meta, _load_examples(directory / EXAMPLES_FILE, config.input_dim),
                      _load_class_gaussians(directory / CLASS_GAUSSIANS_FILE, config.reparam_width))


def _load_class_gaussians(path: Path, width: int) -> ClassGaussians | None:
    if not path.is_file():
        return None
    try:
        return load_class_gaussians(path, width)
    except ClassGaussiansError as exc:
        raise CheckpointError(str(exc)) from exc


def _checkpoint_dir(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS_FILE, META_FILE):
        path = path.parent
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint at {path} (expected a folder with {WEIGHTS_FILE} and {META_FILE})")
    if not (path / META_FILE).is_file():
        raise CheckpointError(f"{path} is not a checkpoint folder: {META_FILE} is missing")
    return path
