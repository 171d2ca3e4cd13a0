"""Image decoding: bytes -> RGB pixels at the CNN's input size -> its Keras ``preprocess_input``.

Matches what a Keras user gets from ``keras.utils.load_img(path, target_size=size,
interpolation="bilinear")`` followed by ``keras.applications.<model>.preprocess_input``:

- Any mode becomes RGB as ``Image.convert("RGB")`` does, so an alpha channel is dropped (not
  composited over a background), as Keras does: the same image gives the same features whether a
  user decodes it or vista_sql does. Grayscale, palette and CMYK images are converted the same way.
- 16-bit images (PNG mode ``I;16``/``I``) are scaled to 8 bits (value * 255 / 65535, rounded)
  before conversion; Pillow's own ``convert`` would clip every value above 255 to white.
- Resizing is Pillow's bilinear filter straight to the input size (no aspect-ratio crop); EXIF
  orientation is not applied (Keras does not either).
- A JPEG at least twice the input size in both directions is decoded at a reduced DCT scale
  (``Image.draft``), never below twice the input size, so a 10,000 x 10,000 photograph takes 1/64
  of the memory; those pixels differ slightly from a full decode followed by the same resize.
- Pillow's decompression-bomb guard stays as Pillow sets it: images over ``2 *
  Image.MAX_IMAGE_PIXELS`` pixels (179M by default) are refused and reported; between that and
  ``Image.MAX_IMAGE_PIXELS`` Pillow's warning is silenced, since a JPEG's memory is bounded by the
  draft and other formats up to that size fit in memory.

A bad image (not an image, truncated, empty, too large) is reported for its row, never dropped and
never fatal for the batch: :func:`decode_batch` returns an error string per row.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)
"""ImageNet channel means, BGR, that Keras's caffe-mode ``preprocess_input`` subtracts."""

TORCH_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

DRAFT_FACTOR = 2
"""A JPEG this many times the input size (both ways) or more is decoded at reduced scale."""

LITE_MEAN = np.float32(127.0)
LITE_STD = np.float32(128.0)
"""EfficientNet-Lite's input normalisation (MEAN_RGB and STDDEV_RGB of the TensorFlow
``efficientnet_lite_builder``, which its PyTorch port's weights were trained with)."""

PREPROCESS_MODES = ("caffe", "tf", "torch", "efficientnet_lite", "raw", "unit")


class ImageError(ValueError):
    """An image that cannot be decoded; the message says why."""


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A batch of images, decoded: the good ones' model inputs, and an error per bad row."""

    pixels: np.ndarray
    """(len(rows), height, width, 3) float32, preprocessed."""
    rows: np.ndarray
    """Positions (in the input sequence) of the images that decoded, in order."""
    errors: list[str | None]
    """One per input: None, or why that image could not be used."""


def decode_image(data: bytes | None, size: tuple[int, int]) -> np.ndarray:
    """``data`` (an encoded image) as (height, width, 3) uint8 RGB at ``size`` = (height, width).

    Raises :class:`ImageError` for anything that is not a decodable image.
    """
    if data is None:
        raise ImageError("image is null")
    if len(data) == 0:
        raise ImageError("image is empty (0 bytes)")
    height, width = size
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format == "JPEG" and (
                    image.width >= DRAFT_FACTOR * width and image.height >= DRAFT_FACTOR * height
                ):
                    image.draft(None, (DRAFT_FACTOR * width, DRAFT_FACTOR * height))
                image.load()
                rgb = to_rgb(image)
                if rgb.size != (width, height):
                    rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
                return np.asarray(rgb, dtype=np.uint8)
    except Image.DecompressionBombError as error:
        raise ImageError(f"image too large to decode safely: {error}") from error
    except Image.UnidentifiedImageError as error:
        raise ImageError(f"not an image Pillow can read ({len(data)} bytes)") from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ImageError(f"cannot decode image: {error}") from error


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB, as ``convert("RGB")`` does, but scaling 16-bit values (not clipping)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        wide = np.asarray(image).astype(np.int64)
        scaled = (np.clip(wide, 0, 65535) * 255 + 32767) // 65535
        image = Image.fromarray(scaled.astype(np.uint8))
    return image if image.mode == "RGB" else image.convert("RGB")


def preprocess(pixels: np.ndarray, mode: str) -> np.ndarray:
    """RGB pixels (..., 3) in 0..255 -> the model's input, as Keras's ``preprocess_input``.

    ``caffe``: RGB -> BGR, minus the ImageNet BGR means (VGG16, ResNet50, AlexNet, SqueezeNet).
    ``tf``: scaled to -1..1 (MobileNet). ``torch``: 0..1, minus mean, over std, RGB.
    ``efficientnet_lite``: (x - 127) / 128, RGB (EfficientNet-Lite0). ``raw``: 0..255 as float,
    RGB (what ``keras.utils.load_img`` gives; registered models' default). ``unit``: 0..1, RGB.
    """
    values = np.asarray(pixels).astype(np.float32)
    if mode == "caffe":
        values = values[..., ::-1]
        values -= CAFFE_MEAN_BGR
        return values
    if mode == "tf":
        values /= np.float32(127.5)
        values -= np.float32(1.0)
        return values
    if mode == "torch":
        values /= np.float32(255.0)
        values -= TORCH_MEAN
        values /= TORCH_STD
        return values
    if mode == "efficientnet_lite":
        values -= LITE_MEAN
        values /= LITE_STD
        return values
    if mode == "raw":
        return values
    if mode == "unit":
        values /= np.float32(255.0)
        return values
    raise ValueError(f"unknown preprocessing {mode!r}; valid: {', '.join(PREPROCESS_MODES)}")


def decode_batch(
    images: Sequence[bytes | ImageError | None], size: tuple[int, int], mode: str
) -> DecodedBatch:
    """Decode and preprocess ``images``; a bad one gets an error string and no pixels.

    An item may already be an :class:`ImageError` (a file that could not be read, say): it is
    reported as it is.
    """
    decoded: list[np.ndarray] = []
    rows: list[int] = []
    errors: list[str | None] = []
    for position, data in enumerate(images):
        try:
            if isinstance(data, ImageError):
                raise data
            decoded.append(decode_image(data, size))
        except ImageError as error:
            errors.append(str(error))
            continue
        rows.append(position)
        errors.append(None)
    stacked = np.stack(decoded) if decoded else np.zeros((0, size[0], size[1], 3), dtype=np.uint8)
    return DecodedBatch(
        pixels=preprocess(stacked, mode), rows=np.asarray(rows, dtype=np.int64), errors=errors
    )
