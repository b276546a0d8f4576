"""Turning a user's image (an upload or a sketch) into what the model sees (``model_input``): for the MNIST-style
models (1 x 28 x 28 digits or Fashion-MNIST items), light ink on a dark background, centred as those data sets
were made; for a model of a user's own images, the upload in the model's channels and size. Values in [0, 1].

User bytes only ever reach the decoders of ALLOWED_FORMATS (Pillow's ``formats=``: without it every
installed plugin may read the file, and EPS hands it to Ghostscript). Size is checked from the header
before any pixel is decoded, so a huge image is refused without allocating its pixels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vae.config import IMAGE_SIDE
from vae.own_data import ALLOWED_FORMATS, FORMAT_NAMES

MAX_INPUT_PIXELS = 4096 * 4096
INK_BOXES = {"mnist": 20, "fashion-mnist": IMAGE_SIDE}  # the side a data set's object fills in its 28x28 frame
GONE = "the uploaded file is no longer on the server (uploads are kept for a while only): upload it again"
INK_THRESHOLD = 0.1  # pixels brighter than this (after inversion) count as ink for the bounding box


class ImageInputError(ValueError):
    """The image cannot be used; the message is meant for the user."""


def open_image(path: str | Path | BinaryIO, max_pixels: int = MAX_INPUT_PIXELS,
               max_bytes: int | None = None) -> Image.Image:
    """Open an image file (a path or a binary file object) with the decoders of ALLOWED_FORMATS only,
    refusing files over ``max_bytes`` (if given) before reading them, other formats, and images over
    ``max_pixels`` before decoding."""
    if max_bytes is not None:
        check_bytes(path, max_bytes)
    try:
        image = Image.open(path, formats=ALLOWED_FORMATS)
    except FileNotFoundError as exc:
        raise ImageInputError(GONE) from exc
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise ImageInputError(_open_error(exc)) from exc
    check_size(image, max_pixels)
    try:
        image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageInputError(f"the image file is damaged or truncated ({exc})") from exc
    return image


def _open_error(exc: Exception) -> str:
    if isinstance(exc, Image.DecompressionBombError):
        return f"the image is too large (at most {MAX_INPUT_PIXELS:,} pixels)"
    return f"the file is not an image this app reads ({FORMAT_NAMES} only)"


def check_bytes(source: str | Path | BinaryIO, max_bytes: int) -> None:
    """Refuse a file of more than ``max_bytes`` bytes from its size alone, before reading it."""
    size = _byte_size(source)
    if size > max_bytes:
        raise ImageInputError(f"the file is too large: {size:,} bytes (at most {max_bytes:,} bytes)")


def _byte_size(source: str | Path | BinaryIO) -> int:
    """The bytes of a file on disk, or those left from the current position of a file object (kept)."""
    if isinstance(source, (str, Path)):
        try:
            return os.stat(source).st_size
        except FileNotFoundError as exc:
            raise ImageInputError(GONE) from exc
    start = source.tell()
    size = source.seek(0, os.SEEK_END) - start
    source.seek(start)
    return size


def check_size(image: Image.Image, max_pixels: int = MAX_INPUT_PIXELS) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageInputError("the image is empty (0 pixels)")
    if width * height > max_pixels:
        raise ImageInputError(f"the image is too large: {width}x{height} pixels (at most {max_pixels:,} pixels)")


def model_input(image: Image.Image, dataset: str, shape: tuple[int, int, int]) -> np.ndarray:
    """``image`` as a model of ``dataset`` with images of ``shape`` (C, H, W) sees it: float32 [C, H, W] in [0, 1].
    MNIST and Fashion-MNIST models get the ink found, centred and scaled as those data sets were made
    (``to_model_input``); any other model the whole image, in its channels, resized to its H x W."""
    if dataset in INK_BOXES and shape == (1, IMAGE_SIDE, IMAGE_SIDE):
        return to_model_input(image, digit_box=INK_BOXES[dataset])[None]
    check_size(image)
    channels, height, width = shape
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    resized = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.Resampling.LANCZOS)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    return np.ascontiguousarray(pixels[None] if channels == 1 else pixels.transpose(2, 0, 1))


def to_model_input(image: Image.Image, *, digit_box: int = 20, max_pixels: int = MAX_INPUT_PIXELS) -> np.ndarray:
    """A [28, 28] float32 array in [0, 1], light ink on black, as the training images are.

    Transparent areas count as white paper. The paper's level is the median of the border; an
    image whose ink lies further below that level than above it (dark ink) is inverted, and the
    paper's level is then mapped to 0 (grey paper becomes black, full ink stays 1). A 28x28 image is
    then taken as is; any other size is cropped to its ink, scaled so
    its longer side is ``digit_box`` pixels (MNIST's digits fill a 20x20 box; Fashion-MNIST's items
    fill the frame, 28) and placed in a 28x28 frame with its centre of mass in the middle, as MNIST
    was made.
    """
    check_size(image, max_pixels)
    image = ImageOps.exif_transpose(image)
    gray = _gray(image)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background - gray.min() > gray.max() - background:  # the ink is darker than the paper
        gray, background = 1.0 - gray, 1.0 - background
    if background > 0:  # grey paper: its level becomes black, full ink stays white
        gray = np.clip((gray - background) / max(1.0 - background, 1e-6), 0.0, 1.0)
    if gray.max() < INK_THRESHOLD:
        raise ImageInputError("the image is blank: draw or upload a digit")
    if gray.shape == (IMAGE_SIDE, IMAGE_SIDE):
        return gray
    return _center(_fit(gray, digit_box))


def _gray(image: Image.Image) -> np.ndarray:
    """Grayscale in [0, 1] by the image's own range: 16-bit images (modes I;16*, and I as Pillow opens
    16-bit PNGs) over 65535, others over 255. Transparent areas count as white paper."""
    if image.mode.startswith("I"):
        gray = np.asarray(image, dtype=np.float64)
        gray = (gray / 65535.0).astype(np.float32)
        if "transparency" in image.info and isinstance(image.info["transparency"], int):
            gray[np.asarray(image) == image.info["transparency"]] = 1.0
        return np.clip(gray, 0.0, 1.0)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _fit(gray: np.ndarray, box: int) -> np.ndarray:
    rows = np.flatnonzero(gray.max(axis=1) > INK_THRESHOLD)
    cols = np.flatnonzero(gray.max(axis=0) > INK_THRESHOLD)
    crop = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = box / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _center(digit: np.ndarray) -> np.ndarray:
    """Place ``digit`` in a 28x28 black frame with its centre of mass at the centre (kept inside)."""
    height, width = digit.shape
    total = digit.sum()
    com_y = (digit.sum(axis=1) @ np.arange(height)) / total
    com_x = (digit.sum(axis=0) @ np.arange(width)) / total
    top = int(np.clip(round(IMAGE_SIDE / 2 - 0.5 - com_y), 0, IMAGE_SIDE - height))
    left = int(np.clip(round(IMAGE_SIDE / 2 - 0.5 - com_x), 0, IMAGE_SIDE - width))
    frame = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    frame[top : top + height, left : left + width] = digit
    return frame
