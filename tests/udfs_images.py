"""Small real images for the udfs tests, made with Pillow (deterministic per seed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth RGB picture: a colour gradient with a few blurred shapes, photo-like."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    slope = rng.uniform(-0.5, 0.5, (3, 2))
    channels = [base[c] + slope[c, 0] * x + slope[c, 1] * y for c in range(3)]
    image = Image.fromarray(np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(10, min(size) / 3)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse((x0 - radius, y0 - radius, x0 + radius, y0 + radius), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(1.5))


def encode(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpegs(count: int, seed: int = 0) -> list[bytes]:
    """``count`` JPEGs of assorted sizes and aspect ratios."""
    sizes = [(320, 240), (200, 300), (500, 375), (227, 227), (640, 480)]
    return [encode(photo(seed + i, sizes[i % len(sizes)]), quality=90) for i in range(count)]
