"""Loading the offline IDX files, the clear errors for bad data folders, and the stratified split."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch

from vae.data import DATA_DIR_ENV, DataError, DataSplits, load_splits, stratified_split

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist package
IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def _quiet(_msg: str) -> None:
    pass


def test_offline_mnist_is_split_80_10_10(mnist_splits: DataSplits) -> None:
    assert (len(mnist_splits.train), len(mnist_splits.val), len(mnist_splits.test)) == (8000, 1000, 1000)
    assert "only one split" in mnist_splits.source and "stratified" in mnist_splits.source
    for split in (mnist_splits.train, mnist_splits.val, mnist_splits.test):
        assert split.images.dtype == torch.float32 and split.images.shape[1] == 784
        assert split.images.min() >= 0 and split.images.max() <= 1
        assert split.labels.dtype == torch.int64 and set(split.labels.tolist()) == set(range(10))
    # Each class is divided 80/10/10 (up to rounding), so class frequencies agree across the splits.
    for cls in range(10):
        counts = [int((s.labels == cls).sum()) for s in (mnist_splits.train, mnist_splits.val, mnist_splits.test)]
        total = sum(counts)
        assert abs(counts[0] - 0.8 * total) <= 1 and abs(counts[1] - 0.1 * total) <= 1
    # No image is in two splits (pixel rows are unique in MNIST's test set).
    everything = torch.cat([mnist_splits.train.images, mnist_splits.val.images, mnist_splits.test.images])
    assert torch.unique(everything, dim=0).shape[0] == 10_000


def test_environment_variable_is_the_fallback(mnist_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(mnist_data_dir))
    messages: list[str] = []
    splits = load_splits("mnist", seed=0, log_fn=messages.append)
    assert len(splits.train) == 8000
    assert len(messages) == 1 and "stratified" in messages[0] and str(mnist_data_dir) in messages[0]


def test_load_is_deterministic_and_seeded(mnist_data_dir: Path, mnist_splits: DataSplits) -> None:
    again = load_splits("mnist", mnist_data_dir, seed=0, log_fn=_quiet)
    assert torch.equal(again.val.images, mnist_splits.val.images)
    other = load_splits("mnist", mnist_data_dir, seed=1, log_fn=_quiet)
    assert not torch.equal(other.val.labels, mnist_splits.val.labels)


def _labels(counts: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), cls) for cls, n in enumerate(counts)])[torch.randperm(sum(counts))]


def test_stratified_split_is_deterministic_disjoint_and_stratified() -> None:
    torch.manual_seed(0)
    counts = [50 + 13 * cls for cls in range(10)]
    labels = _labels(counts)
    parts = stratified_split(labels, (0.8, 0.1), seed=3)
    assert all(torch.equal(a, b) for a, b in zip(parts, stratified_split(labels, (0.8, 0.1), seed=3), strict=True))
    assert not torch.equal(parts[0], stratified_split(labels, (0.8, 0.1), seed=4)[0])
    joined = torch.cat(parts)
    assert torch.equal(torch.sort(joined).values, torch.arange(len(labels)))
    for cls, n in enumerate(counts):
        sizes = [int((labels[p] == cls).sum()) for p in parts]
        assert sizes[0] == round(0.8 * n) and sizes[1] == round(0.1 * n) and sum(sizes) == n


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist") as info:
        load_splits("mnist", tmp_path / "nowhere", log_fn=_quiet)
    assert "nowhere" in str(info.value) and "--data-dir" in str(info.value)


def test_empty_folder_names_the_files_and_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_splits("mnist", tmp_path, log_fn=_quiet)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "t10k-images-idx3-ubyte[.gz]" in message and "train-images-idx3-ubyte[.gz]" in message
    assert DATA_DIR_ENV in message and "torchvision downloads" in message


def test_bad_environment_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "gone"))
    with pytest.raises(DataError, match="gone"):
        load_splits("mnist", log_fn=_quiet)


def _folder_with(
    tmp_path: Path, mnist_data_dir: Path, images: bytes | None = None, labels: bytes | None = None
) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for name, content in ((IMAGES, images), (LABELS, labels)):
        target = folder / name
        if content is None:
            target.symlink_to(mnist_data_dir / name)
        else:
            target.write_bytes(content)
    return folder


def test_corrupt_gzip_is_a_clear_error(tmp_path: Path, mnist_data_dir: Path) -> None:
    folder = _folder_with(tmp_path, mnist_data_dir, images=b"this is not a gzip file at all")
    with pytest.raises(DataError, match="not a valid gzip") as info:
        load_splits("mnist", folder, log_fn=_quiet)
    assert IMAGES in str(info.value)


def test_truncated_gzip_is_a_clear_error(tmp_path: Path, mnist_data_dir: Path) -> None:
    whole = (mnist_data_dir / IMAGES).read_bytes()
    folder = _folder_with(tmp_path, mnist_data_dir, images=whole[: len(whole) // 2])
    with pytest.raises(DataError, match="not a valid gzip"):
        load_splits("mnist", folder, log_fn=_quiet)


def test_wrong_md5_is_a_clear_error(tmp_path: Path, mnist_data_dir: Path) -> None:
    # A well-formed IDX label file with one label changed: only the checksum can tell.
    content = bytearray(gzip.decompress((mnist_data_dir / LABELS).read_bytes()))
    content[8] = (content[8] + 1) % 10
    folder = _folder_with(tmp_path, mnist_data_dir, labels=gzip.compress(bytes(content)))
    with pytest.raises(DataError, match="MD5") as info:
        load_splits("mnist", folder, log_fn=_quiet)
    assert LABELS in str(info.value)


def test_unknown_dataset_is_a_clear_error(mnist_data_dir: Path) -> None:
    with pytest.raises(DataError, match="unknown dataset 'cifar'.*mnist"):
        load_splits("cifar", mnist_data_dir, log_fn=_quiet)


@pytest.mark.skipif(not FASHION_DIR.is_dir() and not os.environ.get("CI"),
                    reason="needs Debian's dataset-fashion-mnist (.ci/run installs it, so in CI this runs)")
def test_official_train_and_test_splits_are_kept() -> None:
    splits = load_splits("fashion-mnist", FASHION_DIR, seed=0, log_fn=_quiet)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (54_000, 6_000, 10_000)
    assert "official test split" in splits.source
    assert splits.class_names[0] == "T-shirt/top"
    assert torch.bincount(splits.val.labels).tolist() == [600] * 10
