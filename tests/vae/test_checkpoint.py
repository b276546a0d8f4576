"""Checkpoints round-trip exactly, and anything that is not a valid checkpoint is refused without
executing code from the file."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vae.checkpoint import (
    EXAMPLES_FILE,
    EXAMPLES_PER_CLASS,
    META_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)
from vae.config import ModelConfig
from vae.data import DataSplits
from vae.model import build_model


@pytest.fixture
def checkpoint_copy(trained_checkpoint: Path, tmp_path: Path) -> Path:
    """A private copy of the shared checkpoint, free to be damaged."""
    return Path(shutil.copytree(trained_checkpoint, tmp_path / "checkpoint"))


def test_round_trip_gives_identical_outputs(trained_fit, trained_checkpoint: Path, mnist_splits: DataSplits) -> None:
    loaded = load_checkpoint(trained_checkpoint)
    assert loaded.config == trained_fit.model.config and not loaded.model.training
    x = mnist_splits.val.images[:64]
    noise = torch.randn(64, loaded.config.reparam_width, generator=torch.Generator().manual_seed(0))
    trained_fit.model.eval()
    with torch.no_grad():
        expected, got = trained_fit.model(x, noise), loaded.model(x, noise)
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a, b)


def test_meta_describes_the_model(trained_fit, trained_checkpoint: Path) -> None:
    meta = read_meta(trained_checkpoint)
    assert meta["model_config"] == {"latent_width": 128, "reparam_width": 16, "depth": 1, "conv_channels": 0,
                                    "channels": 1, "height": 28, "width": 28}
    assert meta["family"] == "mlp" and meta["class_names"] == [str(d) for d in range(10)]
    assert meta["dataset"] == "mnist"
    assert meta["metrics"]["val_neg_elbo"] == trained_fit.history[-1]["val_neg_elbo"]
    assert meta["train_config"]["lr"] == 3e-3
    assert meta["parameters"] == trained_fit.model.num_parameters()
    assert meta["versions"]["torch"] == torch.__version__
    # Either file of the folder names the checkpoint too.
    by_weights = load_checkpoint(trained_checkpoint / WEIGHTS_FILE)
    assert by_weights.meta == load_checkpoint(trained_checkpoint / META_FILE).meta


def test_examples_bank_round_trip(trained_checkpoint: Path, mnist_splits: DataSplits) -> None:
    bank = load_checkpoint(trained_checkpoint).examples
    assert bank is not None
    test = mnist_splits.test
    assert torch.bincount(bank.labels).tolist() == [EXAMPLES_PER_CLASS] * 10
    for cls in range(10):
        expected = test.images[test.labels == cls][:EXAMPLES_PER_CLASS]
        # Stored as uint8: MNIST pixels are k/255, so the round trip is exact up to float rounding.
        torch.testing.assert_close(bank.images[bank.labels == cls], expected, atol=1e-6, rtol=0)


def test_checkpoint_without_examples(tmp_path: Path) -> None:
    model = build_model(ModelConfig(8, 2))
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c", model, dataset="fashion-mnist"))
    assert loaded.examples is None and loaded.dataset == "fashion-mnist"


def test_missing_folder_or_files_are_refused(checkpoint_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "nowhere")
    (checkpoint_copy / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(checkpoint_copy)
    (checkpoint_copy / META_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(checkpoint_copy)


def test_garbage_weights_are_refused(checkpoint_copy: Path) -> None:
    (checkpoint_copy / WEIGHTS_FILE).write_bytes(bytes(range(256)) * 40)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(checkpoint_copy)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.0])
def test_truncated_weights_are_refused(checkpoint_copy: Path, keep: float) -> None:
    weights = checkpoint_copy / WEIGHTS_FILE
    content = weights.read_bytes()
    weights.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(checkpoint_copy)


def test_weights_of_another_shape_are_refused(checkpoint_copy: Path) -> None:
    small = build_model(ModelConfig(32, 4))
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(checkpoint_copy / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match="does not match its config.*wrong shape"):
        load_checkpoint(checkpoint_copy)


def test_missing_and_extra_tensors_are_refused(checkpoint_copy: Path) -> None:
    state = dict(load_checkpoint(checkpoint_copy).model.state_dict())
    state.pop("hidden_to_mu.bias")
    state["backdoor"] = torch.zeros(3)
    save_file({k: v.contiguous() for k, v in state.items()}, str(checkpoint_copy / WEIGHTS_FILE))
    with pytest.raises(CheckpointError, match=r"missing \['hidden_to_mu.bias'\].*unexpected \['backdoor'\]"):
        load_checkpoint(checkpoint_copy)


@pytest.mark.parametrize(
    "meta",
    ['{"format": "something-else", "model_config": {"latent_width": 128, "reparam_width": 16}}',
     '{"format": "vaesearch-checkpoint", "format_version": 99}',
     '{"format": "vaesearch-checkpoint", "model_config": {"latent_width": -5, "reparam_width": 16}}',
     '{"format": "vaesearch-checkpoint"}',
     "[1, 2, 3]", "{not json", ""],
)
def test_bad_descriptions_are_refused(checkpoint_copy: Path, meta: str) -> None:
    (checkpoint_copy / META_FILE).write_text(meta)
    with pytest.raises(CheckpointError):
        load_checkpoint(checkpoint_copy)


def test_corrupt_examples_bank_is_refused(checkpoint_copy: Path) -> None:
    (checkpoint_copy / EXAMPLES_FILE).write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="examples"):
        load_checkpoint(checkpoint_copy)
    save_file({"images": torch.zeros(4, 10, dtype=torch.uint8), "labels": torch.zeros(4, dtype=torch.int64)},
              str(checkpoint_copy / EXAMPLES_FILE))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_checkpoint(checkpoint_copy)


class _TouchOnUnpickle:
    """Unpickling this object creates a marker file: the stand-in for arbitrary code execution."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_malicious_pickle_is_refused_without_running_it(checkpoint_copy: Path, tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"input_to_hidden.weight": _TouchOnUnpickle(marker)}
    weights = checkpoint_copy / WEIGHTS_FILE
    if writer == "pickle":
        weights.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, weights)
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_checkpoint(checkpoint_copy)
    assert not marker.exists()
    json.loads((checkpoint_copy / META_FILE).read_text())  # the description itself was left alone
