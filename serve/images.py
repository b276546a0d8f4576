"""Turning a user's image (an upload or a sketch) into what the model sees: 28x28, grayscale,
light ink on a dark background, values in [0, 1]. Size is checked from the header before any
pixel is decoded, so a huge image is refused without allocating its pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vae.config import IMAGE_SIDE

MAX_INPUT_PIXELS = 4096 * 4096
INK_THRESHOLD = 0.1  # pixels brighter than this (after inversion) count as ink for the bounding box


class ImageInputError(ValueError):
    """The image cannot be used; the message is meant for the user."""


def open_image(path: str | Path, max_pixels: int = MAX_INPUT_PIXELS) -> Image.Image:
    """Open an image file, refusing non-images and images over ``max_pixels`` before decoding."""
    try:
        image = Image.open(path)
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
    return "the file is not an image PIL can read (use PNG, JPEG, WebP, GIF or BMP)"


def check_size(image: Image.Image, max_pixels: int = MAX_INPUT_PIXELS) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageInputError("the image is empty (0 pixels)")
    if width * height > max_pixels:
        raise ImageInputError(f"the image is too large: {width}x{height} pixels (at most {max_pixels:,} pixels)")


def to_model_input(image: Image.Image, *, digit_box: int = 20, max_pixels: int = MAX_INPUT_PIXELS) -> np.ndarray:
    """A [28, 28] float32 array in [0, 1], light ink on black, as the training images are.

    Transparent areas count as white paper. A dark-ink-on-light-paper image (judged by its border)
    is inverted. A 28x28 image is then taken as is; any other size is cropped to its ink, scaled so
    its longer side is ``digit_box`` pixels (MNIST's digits fill a 20x20 box; Fashion-MNIST's items
    fill the frame, 28) and placed in a 28x28 frame with its centre of mass in the middle, as MNIST
    was made.
    """
    check_size(image, max_pixels)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 0.5:
        gray = 1.0 - gray
    if gray.max() < INK_THRESHOLD:
        raise ImageInputError("the image is blank: draw or upload a digit")
    if gray.shape == (IMAGE_SIDE, IMAGE_SIDE):
        return gray
    return _center(_fit(gray, digit_box))


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
