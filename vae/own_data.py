"""A user's own images as a data set: a folder with one sub-folder per class (torchvision's ImageFolder layout;
the class names are the folder names), a flat folder of unlabelled images, either of them split beforehand into
``train/`` and ``test/`` sub-folders, or an ``.npz`` with ``images`` (uint8, [N, H, W] or [N, H, W, C]), optional
``labels`` (ints) and optional ``class_names``.

A data folder or file is untrusted input, so everything is checked before anything large is decoded or
allocated: only the decoders of ALLOWED_FORMATS read an image (Pillow's ``formats=``), the file count, each
file's size and each image's pixels (from its header) are capped, an ``.npz`` is read with
``allow_pickle=False`` and its arrays' shapes and types are read from their headers first, and the decoded data
set is capped in bytes. Nothing in the data is ever executed. A corrupt or unreadable image is skipped and
reported in one line; more than ``MAX_BAD_SHARE`` of them and the data set is refused.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from vae.config import IMAGE_CHANNELS, MAX_SIDE, MIN_SIDE

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")  # the only decoders a user's image ever reaches (app too)
FORMAT_NAMES = "PNG, JPEG, WebP, GIF or BMP"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
MAX_FILES = 250_000
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_SOURCE_PIXELS = 4096 * 4096  # one image before resizing, from its header
MAX_DATA_BYTES = 4 * 1024**3  # the decoded data set, uint8
MAX_BAD_SHARE = 0.01
MAX_CLASSES = 1000
MAX_CLASS_NAME_CHARS = 100
SHOWN_NAMES = 3  # bad files named in the one-line report
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class OwnDataError(ValueError):
    """The data set cannot be used; the message is one line naming the file, class or key at fault."""


@dataclass(frozen=True)
class OwnImages:
    """A decoded data set: images uint8 [N, C, H, W], labels int64 [N] (-1 without labels), class names
    (empty without labels), where it came from, what was skipped, and for a folder split beforehand which images
    are its test split (``test``, bool [N]; None otherwise)."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    skipped: tuple[str, ...] = ()
    test: np.ndarray | None = None


def is_own_data(dataset: str) -> bool:
    """Whether ``dataset`` names a user's images (a folder or an .npz) rather than a built-in data set."""
    return dataset.endswith(".npz") or os.sep in dataset or Path(dataset).expanduser().exists()


def load_own_images(path: str | os.PathLike, *, image_size: int | None = None,
                    log: Callable[[str], None] = print) -> OwnImages:
    """Decode the folder or ``.npz`` at ``path`` (see the module docstring); ``image_size``: resize every image
    to image_size x image_size (needed when the images differ in size)."""
    path = Path(path).expanduser()
    if image_size is not None and not MIN_SIDE <= image_size <= MAX_SIDE:
        raise OwnDataError(f"--image-size must be from {MIN_SIDE} to {MAX_SIDE}, got {image_size}")
    if path.is_dir() and {p.name for p in path.iterdir() if p.is_dir()} == {"train", "test"}:
        data = _load_split_folder(path, image_size, log)
    elif path.is_dir():
        data = _load_folder(path, image_size, log)
    elif path.is_file() and path.suffix == ".npz":
        data = _load_npz(path, image_size)
    else:
        raise OwnDataError(f"{path} is neither a folder of images nor an .npz file")
    _check_shape(data.images, image_size, path)
    return data


# --- folders ---------------------------------------------------------------------------------------


def _image_files(folder: Path) -> Iterator[Path]:
    """The image files under ``folder`` (recursively, by suffix, not following links), sorted."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        found.extend(Path(root) / name for name in sorted(files) if name.lower().endswith(IMAGE_SUFFIXES)
                     and not (Path(root) / name).is_symlink())
        if len(found) > MAX_FILES:
            raise OwnDataError(f"{folder} holds more than {MAX_FILES:,} image files")
    return iter(found)


def _load_folder(folder: Path, image_size: int | None, log: Callable[[str], None]) -> OwnImages:
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    top_files = [p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES)]
    if class_dirs and top_files:
        raise OwnDataError(f"{folder} holds both images ({top_files[0].name}) and class sub-folders "
                           f"({class_dirs[0].name}): use one layout")
    if len(class_dirs) > MAX_CLASSES:
        raise OwnDataError(f"{folder} has {len(class_dirs)} class folders; at most {MAX_CLASSES}")
    labelled = bool(class_dirs)
    groups = [(k, list(_image_files(d))) for k, d in enumerate(class_dirs)] if labelled else \
        [(-1, list(_image_files(folder)))]
    total = sum(len(files) for _, files in groups)
    if total == 0:
        raise OwnDataError(f"no {FORMAT_NAMES} files in {folder}")
    if total > MAX_FILES:
        raise OwnDataError(f"{folder} holds {total:,} image files; at most {MAX_FILES:,}")
    for name in (d.name for d in class_dirs):
        if len(name) > MAX_CLASS_NAME_CHARS:
            raise OwnDataError(f"class folder name {name[:40]!r}... is longer than {MAX_CLASS_NAME_CHARS} characters")
    images, labels, bad = [], [], []
    shape: tuple[int, int] | None = None
    for label, files in groups:
        for file in files:
            try:
                pixels = _decode(file, image_size)
            except _BadImage as exc:
                bad.append(f"{file.relative_to(folder)} ({exc})")
                continue
            if shape is None:
                shape = pixels.shape[:2]
            elif pixels.shape[:2] != shape:
                raise OwnDataError(f"{file} is {pixels.shape[1]}x{pixels.shape[0]} pixels, others "
                                   f"{shape[1]}x{shape[0]}: pass --image-size S to resize them all to S x S")
            images.append(pixels)
            labels.append(label)
            if len(images) * pixels.size > MAX_DATA_BYTES:
                raise OwnDataError(f"{folder} decodes to more than {MAX_DATA_BYTES // 1024**3} GB; use fewer or "
                                   "smaller images (--image-size)")
    if bad:
        more = f"; and {len(bad) - SHOWN_NAMES} more" if len(bad) > SHOWN_NAMES else ""
        shown = "; ".join(bad[:SHOWN_NAMES]) + more
        if len(bad) > MAX_BAD_SHARE * total:
            raise OwnDataError(f"{len(bad)} of {total} files in {folder} cannot be read (more than "
                               f"{MAX_BAD_SHARE:.0%}): {shown}")
        log(f"data: skipped {len(bad)} of {total} files that cannot be read: {shown}")
    color = any(p.ndim == 3 and p.shape[2] == 3 for p in images)
    stacked = np.stack([_channels(p, 3 if color else 1) for p in images])
    names = tuple(d.name for d in class_dirs)
    layout = f"{len(names)} class folders" if labelled else "unlabelled images"
    return OwnImages(stacked, np.asarray(labels, dtype=np.int64), names, f"{total - len(bad)} images in {folder} "
                     f"({layout})", tuple(bad))


def _load_split_folder(folder: Path, image_size: int | None, log: Callable[[str], None]) -> OwnImages:
    """A folder of ``train/`` and ``test/``, each laid out as a data folder, with the same classes."""
    train, test = (_load_folder(folder / part, image_size, log) for part in ("train", "test"))
    if train.class_names != test.class_names:
        raise OwnDataError(f"the classes of {folder / 'train'} ({', '.join(train.class_names)[:80]}) and of "
                           f"{folder / 'test'} ({', '.join(test.class_names)[:80]}) differ")
    if train.images.shape[1:] != test.images.shape[1:]:
        raise OwnDataError(f"the images of {folder / 'train'} and of {folder / 'test'} differ in size or channels: "
                           "pass --image-size S")
    return OwnImages(np.concatenate([train.images, test.images]), np.concatenate([train.labels, test.labels]),
                     train.class_names, f"{train.source}; test split: {test.source}", train.skipped + test.skipped,
                     np.concatenate([np.zeros(len(train.images), bool), np.ones(len(test.images), bool)]))


class _BadImage(Exception):
    """One image cannot be used (it is skipped and reported)."""


def _decode(file: Path, image_size: int | None) -> np.ndarray:
    """One image file as uint8 [H, W] (grayscale) or [H, W, 3], resized to ``image_size`` if given."""
    try:
        if file.stat().st_size > MAX_FILE_BYTES:
            raise _BadImage(f"over {MAX_FILE_BYTES // 1024**2} MB")
        with Image.open(file, formats=ALLOWED_FORMATS) as image:
            if image.width * image.height > MAX_SOURCE_PIXELS:
                raise _BadImage(f"{image.width}x{image.height} pixels, over {MAX_SOURCE_PIXELS:,}")
            pixels = image.convert("L" if image.mode in GRAY_MODES else "RGB")
            if image_size is not None and pixels.size != (image_size, image_size):
                pixels = pixels.resize((image_size, image_size), Image.Resampling.LANCZOS)
            return np.asarray(pixels, dtype=np.uint8)
    except _BadImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
        raise _BadImage(type(exc).__name__) from exc


def _channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """[H, W] or [H, W, 3] -> [C, H, W] with ``channels`` channels (a gray image repeated into RGB)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] != channels:
        pixels = np.repeat(pixels, channels, axis=2)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


# --- .npz ------------------------------------------------------------------------------------------


def _npz_header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype] | None:
    """The shape and dtype of array ``key`` of an .npz, from its .npy header (nothing else read); None if absent."""
    name = f"{key}.npy"
    if name not in archive.namelist():
        return None
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise OwnDataError(f"{key} in the .npz has an unknown .npy version {version}")
    if dtype.hasobject:
        raise OwnDataError(f"{key} in the .npz holds Python objects; only numbers and strings are read")
    return tuple(shape), dtype


def _load_npz(path: Path, image_size: int | None) -> OwnImages:
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {key: _npz_header(archive, key) for key in ("images", "labels", "class_names")}
    except OwnDataError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise OwnDataError(f"{path} is not a readable .npz file ({type(exc).__name__})") from exc
    if headers["images"] is None:
        raise OwnDataError(f"{path} has no 'images' array (keys: images, optional labels and class_names)")
    shape, dtype = headers["images"]
    if dtype != np.uint8 or len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in IMAGE_CHANNELS):
        raise OwnDataError(f"'images' in {path} must be uint8 [N, H, W] or [N, H, W, C] with C 1 or 3, got "
                           f"{dtype} {list(shape)}")
    if int(np.prod(shape)) > MAX_DATA_BYTES:
        raise OwnDataError(f"'images' in {path} holds {int(np.prod(shape)):,} bytes; at most {MAX_DATA_BYTES:,}")
    count = shape[0]
    if headers["labels"] is not None:
        label_shape, label_dtype = headers["labels"]
        if label_shape != (count,) or label_dtype.kind not in "iu":
            raise OwnDataError(f"'labels' in {path} must be {count} integers, got {label_dtype} {list(label_shape)}")
    if headers["class_names"] is not None:
        names_shape, names_dtype = headers["class_names"]
        if len(names_shape) != 1 or names_dtype.kind not in "US" or names_shape[0] > MAX_CLASSES:
            raise OwnDataError(f"'class_names' in {path} must be at most {MAX_CLASSES} strings")
    with np.load(path, allow_pickle=False) as npz:
        images = npz["images"]
        labels = np.asarray(npz["labels"], dtype=np.int64) if headers["labels"] is not None else None
        names = [str(n) for n in npz["class_names"]] if headers["class_names"] is not None else None
    if images.ndim == 3:
        images = images[..., None]
    if image_size is not None and images.shape[1:3] != (image_size, image_size):
        images = np.stack([np.asarray(Image.fromarray(im.squeeze(-1) if im.shape[-1] == 1 else im).resize(
            (image_size, image_size), Image.Resampling.LANCZOS), dtype=np.uint8).reshape(image_size, image_size, -1)
            for im in images])
    images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    if labels is None:
        return OwnImages(images, np.full(count, -1, dtype=np.int64), (), f"{count} unlabelled images in {path}")
    if labels.min(initial=0) < 0:
        raise OwnDataError(f"'labels' in {path} must be >= 0, got {int(labels.min())}")
    classes = int(labels.max(initial=-1)) + 1
    if names is None:
        names = [str(k) for k in range(classes)]
    if len(names) < classes or any(not 0 < len(n) <= MAX_CLASS_NAME_CHARS for n in names):
        raise OwnDataError(f"'class_names' in {path} must name each of the {classes} classes the labels use, in 1 to "
                           f"{MAX_CLASS_NAME_CHARS} characters")
    return OwnImages(images, labels, tuple(names[:classes]), f"{count} images in {path} ({classes} classes)")


def _check_shape(images: np.ndarray, image_size: int | None, path: Path) -> None:
    _, channels, height, width = images.shape
    if channels not in IMAGE_CHANNELS:
        raise OwnDataError(f"images in {path} have {channels} channels; 1 (grayscale) or 3 (RGB) are read")
    if not (MIN_SIDE <= height <= MAX_SIDE and MIN_SIDE <= width <= MAX_SIDE):
        raise OwnDataError(f"images in {path} are {width}x{height} pixels; sides from {MIN_SIDE} to {MAX_SIDE} are "
                           f"searched: pass --image-size S to resize them")
