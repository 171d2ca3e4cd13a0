"""Procedural food photographs for the Foods-like dataset (see ``vista_sql.datasets.foods``).

Each picture is a plate on a table seen from above, with the dish of the row's category drawn on it.
The three visual latents that move the label live at three spatial scales on purpose, so that CNN
layers with different receptive fields see different parts of the signal:

- ``vividness`` (colour, any scale): the saturation of the food, from dull and greyish to vivid;
- ``grain`` (fine texture, about 2 px): a zero-mean luminance speckle on the food (seeds, herbs,
  crumbs), which changes no mean colour and is visible only to small filters;
- ``portion`` (global layout): how much of the plate the dish covers, and how many items it has.

The category (salad, fried, dessert, grilled) shows as hue and as shape at the scale of the items
(scattered leaves, round balls, layered slices, striped fillets). Nuisances make the task honest:
table colour and wood grain, plate size and position, item positions and rotations, a lighting
gradient, colour temperature, exposure and sensor noise.

Everything is drawn with numpy and Pillow from one ``numpy.random.Generator``, so an image is a pure
function of that generator's seed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

CATEGORIES: tuple[str, ...] = ("salad", "fried", "dessert", "grilled")
"""The dish categories, in the order the generator draws them."""

JPEG_QUALITY = 90
"""Fixed so that the same seed gives the same bytes; 90 keeps the 2 px grain visible."""

_RGB = tuple[float, float, float]

_TABLE_COLOURS: tuple[_RGB, ...] = (
    (132.0, 104.0, 80.0),  # oak
    (92.0, 72.0, 60.0),  # walnut
    (120.0, 124.0, 128.0),  # slate
    (88.0, 98.0, 118.0),  # blue-grey cloth
    (196.0, 190.0, 178.0),  # linen
)
_GREENS: tuple[_RGB, ...] = (
    (70.0, 150.0, 50.0),
    (110.0, 172.0, 62.0),
    (42.0, 112.0, 44.0),
    (150.0, 192.0, 84.0),
)
_SALAD_EXTRAS: tuple[_RGB, ...] = (
    (204.0, 42.0, 36.0),  # tomato
    (232.0, 200.0, 62.0),  # corn
    (122.0, 52.0, 112.0),  # red cabbage
)
_FRIED_RIM: _RGB = (122.0, 70.0, 26.0)
_FRIED_BODY: _RGB = (206.0, 150.0, 60.0)
_FRIED_SHINE: _RGB = (236.0, 196.0, 112.0)
_DESSERT_LAYERS: tuple[_RGB, ...] = (
    (240.0, 226.0, 190.0),  # cream
    (96.0, 56.0, 36.0),  # chocolate
    (202.0, 58.0, 92.0),  # berry
    (226.0, 182.0, 110.0),  # sponge
)
_GRILLED_BODIES: tuple[_RGB, ...] = (
    (152.0, 86.0, 60.0),  # beef
    (230.0, 132.0, 92.0),  # salmon
    (196.0, 150.0, 104.0),  # chicken
)
_GRILL_MARK: _RGB = (58.0, 34.0, 20.0)


def render_food_jpeg(
    rng: np.random.Generator,
    *,
    category: str,
    grain: bool,
    portion: float,
    vividness: float,
    image_size: int,
) -> bytes:
    """The JPEG bytes of one food photograph (see the module docstring for what it shows)."""
    pixels = render_food_pixels(
        rng,
        category=category,
        grain=grain,
        portion=portion,
        vividness=vividness,
        image_size=image_size,
    )
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(
        buffer, format="JPEG", quality=JPEG_QUALITY, subsampling="4:2:0", optimize=False
    )
    return buffer.getvalue()


def render_food_pixels(
    rng: np.random.Generator,
    *,
    category: str,
    grain: bool,
    portion: float,
    vividness: float,
    image_size: int,
) -> np.ndarray:
    """One food photograph as an ``(image_size, image_size, 3)`` uint8 array."""
    size = image_size
    table = _table(rng, size)

    plate_radius = size * rng.uniform(0.42, 0.47)
    plate_squash = rng.uniform(0.86, 1.0)  # a slightly oblique view makes the plate an ellipse
    centre_x = size / 2 + rng.uniform(-0.05, 0.05) * size
    centre_y = size / 2 + rng.uniform(-0.05, 0.05) * size
    scene, shade = _set_table(rng, table, size, centre_x, centre_y, plate_radius, plate_squash)

    food_layer = Image.new("RGB", (size, size))
    food_mask = Image.new("1", (size, size))
    food_radius = plate_radius * (0.45 + 0.50 * portion)
    dish = _Dish(
        ImageDraw.Draw(food_layer),
        ImageDraw.Draw(food_mask),
        rng,
        centre_x + rng.uniform(-0.08, 0.08) * (plate_radius - food_radius),
        centre_y + rng.uniform(-0.08, 0.08) * (plate_radius - food_radius),
        food_radius,
        plate_squash,
    )
    _DRAWERS[category](dish, portion)
    # Pillow's colour enhancer blends each pixel with its own grey: factor 0 is grey, 1 unchanged,
    # above 1 more saturated (clipped to the byte range).
    food_layer = ImageEnhance.Color(food_layer).enhance(0.1 + 1.3 * vividness)
    scene.paste(food_layer, mask=food_mask)

    canvas = np.array(scene, dtype=np.float32)
    amplitude = rng.uniform(24.0, 36.0) if grain else rng.uniform(0.0, 4.0)
    on_food = np.asarray(food_mask, dtype=np.float32)[:, :, None]
    canvas += _speckle(rng, size, amplitude=amplitude) * on_food
    field, gains = _light(rng, size)
    canvas *= (field * shade)[:, :, None]
    canvas *= gains
    noise_level = int(rng.integers(1, 4))
    canvas += rng.integers(-noise_level, noise_level + 1, size=canvas.shape, dtype=np.int8)
    np.clip(canvas, 0, 255, out=canvas)
    return np.rint(canvas, out=canvas).astype(np.uint8)


def _table(rng: np.random.Generator, size: int) -> Image.Image:
    """A table top: one of a few colours with a soft wood grain at a random angle."""
    base = np.array(_TABLE_COLOURS[rng.integers(len(_TABLE_COLOURS))], dtype=np.float32)
    base += rng.normal(0.0, 5.0, size=3).astype(np.float32)
    angle = rng.uniform(0.0, math.pi)
    period = rng.uniform(14.0, 30.0) * size / 227
    phase = rng.uniform(0, 2 * math.pi)
    strength = rng.uniform(2.0, 7.0)
    # sin(a x + b y + phase), written as a sum of two outer products: two vectors of sines, not a
    # full image of them.
    coords = np.arange(size, dtype=np.float32) * np.float32(2 * math.pi / period)
    along_x = coords * np.float32(math.cos(angle)) + np.float32(phase)
    along_y = coords * np.float32(math.sin(angle))
    grain = np.sin(along_y)[:, None] * np.cos(along_x)[None, :]
    grain += np.cos(along_y)[:, None] * np.sin(along_x)[None, :]
    top = base[None, None, :] + (np.float32(strength) * grain)[:, :, None]
    return Image.fromarray(np.rint(np.clip(top, 0, 255)).astype(np.uint8), mode="RGB")


def _set_table(
    rng: np.random.Generator,
    scene: Image.Image,
    size: int,
    centre_x: float,
    centre_y: float,
    radius: float,
    squash: float,
) -> tuple[Image.Image, np.ndarray]:
    """Put a plate (a rim and a well) on ``scene``; return it and the shading of its shadow."""
    shadow = Image.new("L", (size, size), 255)
    shadow_draw = ImageDraw.Draw(shadow)
    offset = radius * 0.05
    shadow_draw.ellipse(
        _box(centre_x + offset, centre_y + offset, radius * 1.02, radius * squash * 1.02), fill=166
    )
    shadow_draw.ellipse(_box(centre_x, centre_y, radius, radius * squash), fill=255)
    shade = np.asarray(shadow, dtype=np.float32) * np.float32(1 / 255)

    white = np.array([246.0, 243.0, 236.0]) + rng.normal(0.0, 4.0, 3)
    draw = ImageDraw.Draw(scene)
    rim = tuple(_byte(channel * 0.90) for channel in white)
    draw.ellipse(_box(centre_x, centre_y, radius, radius * squash), fill=rim)
    well = tuple(_byte(channel) for channel in white)
    draw.ellipse(_box(centre_x, centre_y, radius * 0.78, radius * squash * 0.78), fill=well)
    return scene, shade


class _Dish:
    """Draws items at once onto the food colour layer and its mask, inside the dish's disc."""

    def __init__(
        self,
        colour: ImageDraw.ImageDraw,
        mask: ImageDraw.ImageDraw,
        rng: np.random.Generator,
        centre_x: float,
        centre_y: float,
        radius: float,
        squash: float,
    ) -> None:
        self.colour = colour
        self.mask = mask
        self.rng = rng
        self.centre_x = centre_x
        self.centre_y = centre_y
        self.radius = radius
        self.squash = squash

    def spot(self, spread: float = 1.0) -> tuple[float, float]:
        """A uniformly random point of the dish's disc (shrunk by ``spread``)."""
        distance = self.radius * spread * math.sqrt(self.rng.uniform())
        angle = self.rng.uniform(0.0, 2 * math.pi)
        return (
            self.centre_x + distance * math.cos(angle),
            self.centre_y + distance * math.sin(angle) * self.squash,
        )

    def jitter(self, rgb: _RGB, spread: float = 12.0) -> tuple[int, int, int]:
        red, green, blue = (c + self.rng.normal(0.0, spread) for c in rgb)
        return (_byte(red), _byte(green), _byte(blue))

    def polygon(self, points: Sequence[tuple[float, float]], rgb: _RGB, spread: float) -> None:
        self.colour.polygon(list(points), fill=self.jitter(rgb, spread))
        self.mask.polygon(list(points), fill=255)

    def line(self, points: Sequence[tuple[float, float]], rgb: _RGB, width: int) -> None:
        self.colour.line(list(points), fill=self.jitter(rgb, 6.0), width=width)


def _draw_salad(dish: _Dish, portion: float) -> None:
    """Many small leaves at random angles, a few coloured extras on top."""
    rng = dish.rng
    for _ in range(10 + int(30 * portion)):
        x, y = dish.spot(0.9)
        length = dish.radius * rng.uniform(0.22, 0.38)
        angle = rng.uniform(0.0, math.pi)
        leaf = _ellipse_points(x, y, length, length * rng.uniform(0.35, 0.55), angle, wobble=0.12)
        dish.polygon(leaf, _GREENS[rng.integers(len(_GREENS))], 14.0)
        vein_dx, vein_dy = length * 0.8 * math.cos(angle), length * 0.8 * math.sin(angle)
        dish.line([(x - vein_dx, y - vein_dy), (x + vein_dx, y + vein_dy)], (196, 220, 150), 1)
    for _ in range(2 + int(6 * portion)):
        x, y = dish.spot(0.8)
        radius = dish.radius * rng.uniform(0.07, 0.12)
        extra = _SALAD_EXTRAS[rng.integers(len(_SALAD_EXTRAS))]
        dish.polygon(_ellipse_points(x, y, radius, radius, 0.0), extra, 10.0)


def _draw_fried(dish: _Dish, portion: float) -> None:
    """A few round golden-brown balls with a dark crust and a shine."""
    rng = dish.rng
    for _ in range(2 + int(6 * portion)):
        x, y = dish.spot(0.7)
        radius = dish.radius * rng.uniform(0.24, 0.36)
        angle = rng.uniform(0.0, math.pi)
        dish.polygon(
            _ellipse_points(x, y, radius, radius * 0.92, angle, wobble=0.06), _FRIED_RIM, 10
        )
        inner = radius * 0.80
        dish.polygon(_ellipse_points(x, y, inner, inner * 0.9, angle, wobble=0.05), _FRIED_BODY, 12)
        shine = radius * 0.28
        dish.polygon(
            _ellipse_points(x - radius * 0.3, y - radius * 0.3, shine, shine * 0.7, angle),
            _FRIED_SHINE,
            8.0,
        )


def _draw_dessert(dish: _Dish, portion: float) -> None:
    """One to three rotated slices made of three to five coloured layers."""
    rng = dish.rng
    slices = 1 + int(portion * 2.5)
    for _ in range(slices):
        x, y = dish.spot(0.45 if slices > 1 else 0.1)
        width = dish.radius * rng.uniform(1.0, 1.4) / math.sqrt(slices)
        height = dish.radius * rng.uniform(0.7, 1.0) / math.sqrt(slices)
        angle = rng.uniform(-0.6, 0.6)
        layers = int(rng.integers(3, 6))
        first = int(rng.integers(len(_DESSERT_LAYERS)))
        for layer in range(layers):
            top = -height / 2 + height * layer / layers
            bottom = top + height / layers
            band = _rotated_rectangle(x, y, width / 2, top, bottom, angle)
            colour = _DESSERT_LAYERS[(first + layer) % len(_DESSERT_LAYERS)]
            dish.polygon(band, colour, 10.0)


def _draw_grilled(dish: _Dish, portion: float) -> None:
    """One to three long fillets crossed by dark parallel grill marks, a little garnish."""
    rng = dish.rng
    body = _GRILLED_BODIES[rng.integers(len(_GRILLED_BODIES))]
    marks_angle = rng.uniform(0.0, math.pi)
    for _ in range(1 + int(portion * 2.5)):
        x, y = dish.spot(0.5)
        length = dish.radius * rng.uniform(0.55, 0.8)
        angle = rng.uniform(0.0, math.pi)
        fillet = _ellipse_points(x, y, length, length * rng.uniform(0.35, 0.5), angle, wobble=0.05)
        dish.polygon(fillet, body, 10.0)
        spacing = dish.radius * 0.16
        for step in range(-3, 4):
            dx = step * spacing * math.cos(marks_angle + math.pi / 2)
            dy = step * spacing * math.sin(marks_angle + math.pi / 2)
            reach_x, reach_y = (
                length * 0.6 * math.cos(marks_angle),
                length * 0.6 * math.sin(marks_angle),
            )
            if math.hypot(dx, dy) < length * 0.45:
                dish.line(
                    [(x + dx - reach_x, y + dy - reach_y), (x + dx + reach_x, y + dy + reach_y)],
                    _GRILL_MARK,
                    max(2, round(dish.radius * 0.05)),
                )
    for _ in range(1 + int(3 * portion)):
        x, y = dish.spot(0.9)
        length = dish.radius * rng.uniform(0.12, 0.2)
        leaf = _ellipse_points(x, y, length, length * 0.45, rng.uniform(0.0, math.pi))
        dish.polygon(leaf, _GREENS[rng.integers(len(_GREENS))], 12.0)


_DRAWERS = {
    "salad": _draw_salad,
    "fried": _draw_fried,
    "dessert": _draw_dessert,
    "grilled": _draw_grilled,
}


def _ellipse_points(
    x: float,
    y: float,
    radius_x: float,
    radius_y: float,
    angle: float,
    *,
    wobble: float = 0.0,
    points: int = 18,
) -> list[tuple[float, float]]:
    """The vertices of a rotated ellipse; ``wobble`` makes a deterministic organic outline."""
    theta = np.linspace(0.0, 2 * math.pi, points, endpoint=False)
    scale = 1.0 + wobble * np.sin(3 * theta + angle * 7.0) * np.cos(2 * theta - angle * 3.0)
    local_x = radius_x * np.cos(theta) * scale
    local_y = radius_y * np.sin(theta) * scale
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    xs = x + local_x * cos_a - local_y * sin_a
    ys = y + local_x * sin_a + local_y * cos_a
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def _rotated_rectangle(
    x: float, y: float, half_width: float, top: float, bottom: float, angle: float
) -> list[tuple[float, float]]:
    """Corners of the band ``[-half_width, half_width] x [top, bottom]`` turned about (x, y)."""
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    corners = ((-half_width, top), (half_width, top), (half_width, bottom), (-half_width, bottom))
    return [(x + cx * cos_a - cy * sin_a, y + cx * sin_a + cy * cos_a) for cx, cy in corners]


def _box(x: float, y: float, radius_x: float, radius_y: float) -> tuple[float, float, float, float]:
    return (x - radius_x, y - radius_y, x + radius_x, y + radius_y)


def _byte(value: float) -> int:
    return min(255, max(0, round(value)))


def _speckle(rng: np.random.Generator, size: int, *, amplitude: float) -> np.ndarray:
    """Zero-mean grey noise in blocks of about 2 px (at 227 px): texture without colour."""
    block = max(1, round(size / 113))
    cells = -(-size // block)
    noise = rng.standard_normal((cells, cells)).astype(np.float32) * np.float32(amplitude)
    fine = np.repeat(np.repeat(noise, block, axis=0), block, axis=1)[:size, :size]
    return fine[:, :, None]


def _light(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A linear lighting gradient across the picture, and per-channel exposure and warmth gains."""
    exposure = rng.uniform(0.82, 1.08)
    warmth = rng.uniform(-0.06, 0.06)
    gains = np.array([1.0 + warmth, 1.0, 1.0 - warmth], dtype=np.float32) * np.float32(exposure)
    direction = rng.uniform(0.0, 2 * math.pi)
    strength = rng.uniform(0.0, 0.16)
    coords = (np.arange(size, dtype=np.float32) - size / 2) / size
    field = 1.0 + np.float32(strength) * (
        coords[None, :] * np.float32(math.cos(direction))
        + coords[:, None] * np.float32(math.sin(direction))
    )
    return field, gains
