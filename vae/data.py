"""Data sets as in-memory tensors, split into train / validation / test: MNIST and Fashion-MNIST by name, or a
user's own images (a folder or an .npz path: vae.own_data).

The named data sets come from, in order: a folder of IDX ``*-ubyte[.gz]`` files (``data_dir`` argument, else the
``VAESEARCH_DATA_DIR`` environment variable); else torchvision's dataset class, which downloads.
Images are held as one float tensor [N, C*H*W] in [0, 1] (on the training device), channels first, and batches
are cut from it by index permutation: no per-sample Python transform sits in the training loop.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from vae.config import IMAGE_SIDE, INPUT_DIM
from vae.own_data import OwnDataError, is_own_data, load_own_images

log = logging.getLogger(__name__)

DATA_DIR_ENV = "VAESEARCH_DATA_DIR"
DEFAULT_DOWNLOAD_ROOT = Path.home() / ".cache" / "vaesearch" / "data"

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    class_names: tuple[str, ...]
    torchvision_class: str
    # Known MD5s per file: of the official .gz (torchvision's list) and, where known, of the
    # decompressed bytes (which survive re-compression, e.g. by Debian's packaging).
    md5: dict[str, tuple[str, ...]]
    how_to_get: str


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        class_names=tuple(str(d) for d in range(10)),
        torchvision_class="MNIST",
        md5={
            "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873",),
            "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432",),
            "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
            "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
        },
        how_to_get="with internet, omit --data-dir and torchvision downloads MNIST; offline, point "
        "--data-dir (or VAESEARCH_DATA_DIR) at a folder with the MNIST IDX files, e.g. ../shared/mnist",
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        class_names=(
            "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
            "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
        ),
        torchvision_class="FashionMNIST",
        md5={
            "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
            "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
            "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
        },
        how_to_get="with internet, omit --data-dir and torchvision downloads Fashion-MNIST; on Debian, "
        "'apt-get install dataset-fashion-mnist' puts it in /usr/share/datasets/fashion-mnist",
    ),
}


class DataError(RuntimeError):
    """Data missing or corrupt; the message says what was looked for and how to get it."""


@dataclass(frozen=True)
class Split:
    images: torch.Tensor  # [N, C*H*W] float32 in [0, 1]
    labels: torch.Tensor  # [N] int64; -1 where the data set has no labels

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class DataSplits:
    dataset: str  # a built-in data set's name, or the path of a user's images
    train: Split
    val: Split
    test: Split
    source: str  # where the data came from, and how it was split (for logs and checkpoints)
    image_shape: tuple[int, int, int] = (1, IMAGE_SIDE, IMAGE_SIDE)  # C, H, W
    class_names: tuple[str, ...] = tuple(str(d) for d in range(10))  # empty: the data set has no labels

    @property
    def labelled(self) -> bool:
        return bool(self.class_names)

    def to(self, device: torch.device | str) -> DataSplits:
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))

    def describe(self) -> str:
        return (
            f"{self.dataset}: train {len(self.train)}, val {len(self.val)}, test {len(self.test)} ({self.source})"
        )


@dataclass(frozen=True)
class PackedSplits:
    """DataSplits as uint8 numpy arrays (images [N, C*H*W] in 0..255): a quarter of the float size, and what Ray's
    object store shares between processes without copying. Loading gives float images in [0, 1] exactly
    (they were uint8 / 255 to begin with)."""

    dataset: str
    train: tuple[np.ndarray, np.ndarray]  # (images uint8 [N, C*H*W], labels int64 [N])
    val: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]
    source: str
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]

    @classmethod
    def pack(cls, splits: DataSplits) -> PackedSplits:
        def arrays(split: Split) -> tuple[np.ndarray, np.ndarray]:
            images = (split.images.cpu() * 255).round().to(torch.uint8).numpy()
            return images, split.labels.cpu().numpy()
        return cls(splits.dataset, arrays(splits.train), arrays(splits.val), arrays(splits.test), splits.source,
                   splits.image_shape, splits.class_names)

    def unpack(self, device: torch.device | str = "cpu") -> DataSplits:
        def split(arrays: tuple[np.ndarray, np.ndarray]) -> Split:
            images, labels = arrays
            return Split(torch.from_numpy(np.array(images)).to(device=device, dtype=torch.float32).div_(255.0),
                         torch.from_numpy(np.array(labels)).to(device=device, dtype=torch.int64))
        return DataSplits(self.dataset, split(self.train), split(self.val), split(self.test), self.source,
                          self.image_shape, self.class_names)


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _find_file(folder: Path, stem: str, torchvision_class: str) -> Path | None:
    for base in (folder, folder / torchvision_class / "raw"):
        for name in (stem + ".gz", stem):
            if (base / name).is_file():
                return base / name
    return None


def _read_idx(path: Path, info: DatasetInfo, stem: str) -> np.ndarray:
    """Read one IDX file (optionally gzipped), check its MD5 where known and its header always."""
    raw_file = path.read_bytes()
    try:
        content = gzip.decompress(raw_file) if path.suffix == ".gz" else raw_file
    except (OSError, EOFError) as exc:
        raise DataError(f"{path} is not a valid gzip file ({exc}); re-download it ({info.how_to_get})") from exc
    known = info.md5.get(stem, ())
    digests = {_md5(content)} | ({_md5(raw_file)} if path.suffix == ".gz" else set())
    if known and not digests & set(known):
        # Decompressed MD5s are known for every file except MNIST's train split, whose .gz may have
        # been re-compressed elsewhere; there only the header and size checks below can judge it.
        if len(known) > 1 or path.suffix != ".gz":
            raise DataError(f"{path} fails its MD5 check (corrupt or not the official {info.name}); re-download it")
        log.warning("%s: MD5 unknown for this compression, checked the IDX header only", path)
    if len(content) < 8:
        raise DataError(f"{path} is truncated ({len(content)} bytes); re-download it ({info.how_to_get})")
    magic, count = int.from_bytes(content[0:4], "big"), int.from_bytes(content[4:8], "big")
    is_images = "images" in stem
    expected_magic, header = (0x803, 16) if is_images else (0x801, 8)
    expected_size = header + count * (IMAGE_SIDE * IMAGE_SIDE if is_images else 1)
    if magic != expected_magic or len(content) != expected_size:
        raise DataError(f"{path} is not a valid IDX {'image' if is_images else 'label'} file; re-download it")
    array = np.frombuffer(content, dtype=np.uint8, offset=header)
    return array.reshape(count, INPUT_DIM) if is_images else array


def _to_split(images: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
              shape: tuple[int, ...] = (1, IMAGE_SIDE, IMAGE_SIDE)) -> Split:
    """uint8 images (any layout of ``shape`` per image, channels first) and labels as a float Split."""
    dim = int(np.prod(shape))
    images_t = torch.as_tensor(np.array(images, copy=True)).reshape(-1, dim).to(torch.float32).div_(255.0)
    return Split(images_t, torch.as_tensor(np.array(labels, copy=True)).to(torch.int64))


def _load_folder(folder: Path, info: DatasetInfo) -> tuple[Split | None, Split]:
    """(official train split or None, official test split) from a folder of IDX files."""
    paths = {key: _find_file(folder, stem, info.torchvision_class) for key, stem in FILES.items()}
    if paths["test_images"] is None or paths["test_labels"] is None:
        if paths["train_images"] is None or paths["train_labels"] is None:
            wanted = ", ".join(f"{s}[.gz]" for s in FILES.values())
            raise DataError(f"no {info.name} IDX files in {folder} (looked for {wanted}); {info.how_to_get}")
    def load(prefix: str) -> Split | None:
        img, lab = paths[f"{prefix}_images"], paths[f"{prefix}_labels"]
        if img is None or lab is None:
            return None
        images = _read_idx(img, info, FILES[f"{prefix}_images"])
        labels = _read_idx(lab, info, FILES[f"{prefix}_labels"])
        if len(images) != len(labels):
            raise DataError(f"{img} has {len(images)} images but {lab} has {len(labels)} labels")
        return _to_split(images, labels)
    train, test = load("train"), load("test")
    if test is None:  # only a train split: it plays the role of the one split below
        return None, train  # type: ignore[return-value]
    return train, test


def _load_torchvision(info: DatasetInfo, root: Path, download: bool) -> tuple[Split, Split]:
    import torchvision.datasets as tv_datasets

    cls = getattr(tv_datasets, info.torchvision_class)
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except Exception as exc:  # torchvision raises RuntimeError / URLError / OSError alike
        raise DataError(
            f"could not get {info.name} through torchvision into {root} ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); {info.how_to_get}"
        ) from exc
    return _to_split(train.data, train.targets), _to_split(test.data, test.targets)


def stratified_split(labels: torch.Tensor, fractions: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    """Split indices so that every class is divided in the same proportions; the last part gets
    the remainder. Deterministic for a given seed."""
    generator = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(len(fractions) + 1)]
    for cls in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        start = 0
        for i, frac in enumerate(fractions):
            stop = start + int(round(frac * len(idx)))
            parts[i].append(idx[start:stop])
            start = stop
        parts[-1].append(idx[start:])
    return [torch.sort(torch.cat(p)).values for p in parts]


def _subset(split: Split, idx: torch.Tensor) -> Split:
    return Split(split.images[idx], split.labels[idx])


MIN_IMAGES_PER_CLASS = 10  # what a stratified 80/10/10 split needs to leave every part of every class an image


def random_split(count: int, fractions: tuple[float, ...], seed: int) -> list[torch.Tensor]:
    """Split ``range(count)`` at random into parts of ``fractions`` (the last part gets the remainder), for data
    without labels. Deterministic for a given seed."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    parts, start = [], 0
    for frac in fractions:
        stop = start + int(round(frac * count))
        parts.append(order[start:stop])
        start = stop
    parts.append(order[start:])
    return [torch.sort(p).values for p in parts]


def load_splits(
    dataset: str = "mnist",
    data_dir: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    download: bool = True,
    device: torch.device | str = "cpu",
    image_size: int | None = None,
    log_fn: Callable[[str], None] | None = None,
) -> DataSplits:
    """Load ``dataset`` and return seeded train / validation / test splits, stratified by class where there are
    labels.

    ``dataset``: "mnist" or "fashion-mnist" (see the module docstring), or the path of a user's images (a folder
    or an .npz, vae.own_data; ``image_size`` resizes them). With the official train and test files, validation is
    carved from train and test is the official test split. With only one split (e.g. the offline MNIST test
    split, or a user's images), that split is divided into train / validation / test by ``val_fraction`` and
    ``test_fraction``.
    """
    say = log_fn or log.info
    if dataset not in DATASETS:
        if not is_own_data(dataset):
            raise DataError(f"unknown dataset {dataset!r}; choose one of: {', '.join(DATASETS)}, or give the path of "
                            "a folder of images or an .npz")
        try:
            own = load_own_images(dataset, image_size=image_size, log=say)
        except OwnDataError as exc:
            raise DataError(str(exc)) from exc
        shape = tuple(int(d) for d in own.images.shape[1:])
        if own.test is not None:  # split beforehand: validation is carved from its train split
            own_train = _to_split(own.images[~own.test], own.labels[~own.test], shape)
            own_test = _to_split(own.images[own.test], own.labels[own.test], shape)
            splits = _carve_validation(dataset, own_train, own_test, own.source, own.class_names, shape, seed,
                                       val_fraction)
        else:
            splits = _split_one(dataset, _to_split(own.images, own.labels, shape), own.source, own.class_names,
                                shape, seed, val_fraction, test_fraction)
        splits = _in_seeded_order(splits, seed)
        say(f"data: {splits.describe()}")
        return splits.to(device)
    if image_size is not None and image_size != IMAGE_SIDE:
        raise DataError(f"--image-size applies to a folder or an .npz of your own images, not to {dataset}")
    info = DATASETS[dataset]
    folder = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    if folder is not None:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise DataError(f"data folder {folder} does not exist; {info.how_to_get}")
        train, test = _load_folder(folder, info)
        origin = f"IDX files in {folder}"
    else:
        train, test = _load_torchvision(info, DEFAULT_DOWNLOAD_ROOT, download)
        origin = f"torchvision {info.torchvision_class} in {DEFAULT_DOWNLOAD_ROOT}"

    shape = (1, IMAGE_SIDE, IMAGE_SIDE)
    if train is not None:
        splits = _carve_validation(dataset, train, test, origin, info.class_names, shape, seed, val_fraction)
    else:
        splits = _split_one(dataset, test, origin, info.class_names, shape, seed, val_fraction, test_fraction)
    splits = _in_seeded_order(splits, seed)
    say(f"data: {splits.describe()}")
    return splits.to(device)


def _in_seeded_order(splits: DataSplits, seed: int) -> DataSplits:
    """Each split in a seeded random order. Consumers read the first N images of a split (a trial's
    validation images, the sample grids' originals), and a folder of images lists them class by class: in file
    order, the first 2000 validation images of a 10-class folder are three classes."""
    generator = torch.Generator().manual_seed(seed)

    def shuffled(split: Split) -> Split:
        return _subset(split, torch.randperm(len(split), generator=generator))

    return replace(splits, train=shuffled(splits.train), val=shuffled(splits.val), test=shuffled(splits.test))


def _carve_validation(dataset: str, train: Split, test: Split, origin: str, class_names: tuple[str, ...],
                      shape: tuple[int, ...], seed: int, val_fraction: float) -> DataSplits:
    """Train and test splits given: validation is ``val_fraction`` of train, per class where labelled."""
    fractions = (1.0 - val_fraction,)
    parts = stratified_split(train.labels, fractions, seed) if class_names else \
        random_split(len(train), fractions, seed)
    train_idx, val_idx = parts
    return DataSplits(dataset, _subset(train, train_idx), _subset(train, val_idx), test,
                      f"{origin}; official test split, validation = {val_fraction:.0%} of train, seed {seed}",
                      (int(shape[0]), int(shape[1]), int(shape[2])), class_names)


def _split_one(dataset: str, split: Split, origin: str, class_names: tuple[str, ...], shape: tuple[int, ...],
               seed: int, val_fraction: float, test_fraction: float) -> DataSplits:
    """One split of images divided into train / validation / test: stratified by class when labelled (every
    class needs MIN_IMAGES_PER_CLASS images), at random otherwise."""
    train_frac = 1.0 - val_fraction - test_fraction
    fractions = (train_frac, val_fraction)
    if class_names:
        counts = torch.bincount(split.labels, minlength=len(class_names)).tolist()
        small = [(name, n) for name, n in zip(class_names, counts, strict=False) if n < MIN_IMAGES_PER_CLASS]
        if small:
            name, n = small[0]
            raise DataError(f"class {name!r} has {n} image(s); each class needs at least {MIN_IMAGES_PER_CLASS} for "
                            f"the {train_frac:.0%}/{val_fraction:.0%}/{test_fraction:.0%} train/val/test split")
        parts = stratified_split(split.labels, fractions, seed)
        how = "stratified"
    else:
        if len(split) < MIN_IMAGES_PER_CLASS:
            raise DataError(f"{len(split)} image(s) are too few for a train/val/test split (at least "
                            f"{MIN_IMAGES_PER_CLASS})")
        parts = random_split(len(split), fractions, seed)
        how = "random"
    train_idx, val_idx, test_idx = parts
    return DataSplits(
        dataset, _subset(split, train_idx), _subset(split, val_idx), _subset(split, test_idx),
        f"{origin}; only one split ({len(split)} images): {how} "
        f"{train_frac:.0%}/{val_fraction:.0%}/{test_fraction:.0%} train/val/test split, seed {seed}",
        (int(shape[0]), int(shape[1]), int(shape[2])), class_names)
