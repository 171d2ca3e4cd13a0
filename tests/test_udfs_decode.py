"""Decoding: odd image modes become the Keras-equivalent model input; bad images are reported."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from udfs_images import encode, jpegs, photo

from vista_sql.udfs.decode import (
    CAFFE_MEAN_BGR,
    ImageError,
    decode_batch,
    decode_image,
    preprocess,
)

SIZE = (224, 224)


def keras_pixels(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """What a Keras user gets: load_img(bilinear) then img_to_array."""
    import keras

    image = keras.utils.load_img(io.BytesIO(data), target_size=size, interpolation="bilinear")
    return keras.utils.img_to_array(image)


@pytest.mark.tf
def test_jpeg_decodes_as_keras_load_img() -> None:
    for data in jpegs(3):
        np.testing.assert_array_equal(decode_image(data, SIZE), keras_pixels(data, SIZE))


@pytest.mark.tf
def test_caffe_preprocessing_equals_keras_exactly() -> None:
    from keras.applications import resnet50, vgg16

    pixels = np.stack([decode_image(data, SIZE) for data in jpegs(2)]).astype(np.float32)
    ours = preprocess(pixels, "caffe")
    np.testing.assert_array_equal(ours, vgg16.preprocess_input(pixels.copy()))
    np.testing.assert_array_equal(ours, resnet50.preprocess_input(pixels.copy()))
    assert ours.dtype == np.float32
    # BGR order: channel 0 is blue minus the blue mean.
    np.testing.assert_array_equal(ours[..., 0], pixels[..., 2] - CAFFE_MEAN_BGR[0])


@pytest.mark.tf
def test_tf_and_torch_preprocessing_equal_keras() -> None:
    from keras.applications import densenet, mobilenet_v2

    pixels = np.stack([decode_image(data, SIZE) for data in jpegs(2)]).astype(np.float32)
    np.testing.assert_array_equal(
        preprocess(pixels, "tf"), mobilenet_v2.preprocess_input(pixels.copy())
    )
    np.testing.assert_allclose(
        preprocess(pixels, "torch"), densenet.preprocess_input(pixels.copy()), rtol=1e-6
    )


def test_unknown_preprocessing_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown preprocessing 'bgr'"):
        preprocess(np.zeros((1, 2, 2, 3)), "bgr")


def _modes() -> dict[str, bytes]:
    rgb = photo(3, (160, 120))
    rgba = rgb.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    sixteen = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return {
        "grayscale jpeg": encode(rgb.convert("L")),
        "cmyk jpeg": encode(rgb.convert("CMYK")),
        "rgba png": encode(rgba, "PNG"),
        "la png": encode(rgba.convert("LA"), "PNG"),
        "palette png": encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "palette with transparency png": encode(
            rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0
        ),
        "16-bit grayscale png": encode(Image.fromarray(sixteen), "PNG"),
        "1-bit png": encode(rgb.convert("1"), "PNG"),
    }


@pytest.mark.parametrize("name", list(_modes()))
def test_odd_modes_decode_to_rgb(name: str) -> None:
    pixels = decode_image(_modes()[name], SIZE)
    assert pixels.shape == (224, 224, 3)
    assert pixels.dtype == np.uint8
    assert pixels.std() > 5, "the picture survived conversion (not a flat image)"


def test_alpha_is_dropped_as_keras_does() -> None:
    rgb = photo(4, (100, 80))
    rgba = rgb.copy()
    rgba.putalpha(0)  # fully transparent: compositing would give a flat background
    ours = decode_image(encode(rgba, "PNG"), (80, 100))
    np.testing.assert_array_equal(ours, np.asarray(rgb))


def test_sixteen_bit_png_is_scaled_not_clipped() -> None:
    gray = np.asarray(photo(5, (64, 48)).convert("L"), dtype=np.uint16)
    data = encode(Image.fromarray((gray * 257).astype(np.uint16)), "PNG")
    ours = decode_image(data, (48, 64))
    np.testing.assert_array_equal(ours[..., 0], gray.astype(np.uint8))
    np.testing.assert_array_equal(ours[..., 0], ours[..., 2])


def test_cmyk_jpeg_is_close_to_its_rgb_source() -> None:
    rgb = photo(6, (96, 96))
    ours = decode_image(encode(rgb.convert("CMYK"), quality=95), (96, 96)).astype(float)
    assert np.abs(ours - np.asarray(rgb, dtype=float)).mean() < 6


def test_huge_jpeg_is_accepted_through_draft() -> None:
    big = Image.new("RGB", (10_000, 10_000), (200, 30, 60))
    data = encode(big, quality=50)
    pixels = decode_image(data, SIZE)
    assert pixels.shape == (224, 224, 3)
    assert abs(int(pixels[..., 0].mean()) - 200) <= 3


def _bad() -> dict[str, bytes | None]:
    good = jpegs(1)[0]
    return {
        "truncated jpeg": good[: len(good) // 2],
        "zero bytes": b"",
        "not an image": b"%PDF-1.4 definitely not a picture",
        "null": None,
    }


@pytest.mark.parametrize("name", list(_bad()))
def test_bad_images_raise_image_error(name: str) -> None:
    with pytest.raises(ImageError):
        decode_image(_bad()[name], SIZE)


def test_decompression_bomb_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="too large"):
        decode_image(encode(photo(1, (100, 100))), SIZE)


def test_batch_keeps_every_row_and_reports_bad_ones() -> None:
    good = jpegs(2)
    bad = _bad()
    images = [good[0], bad["truncated jpeg"], bad["zero bytes"], good[1], bad["null"]]
    batch = decode_batch(images, SIZE, "caffe")
    assert list(batch.rows) == [0, 3]
    assert batch.pixels.shape == (2, 224, 224, 3)
    assert batch.errors[0] is None and batch.errors[3] is None
    assert "truncated" in (batch.errors[1] or "")
    assert batch.errors[2] == "image is empty (0 bytes)"
    assert batch.errors[4] == "image is null"
    expected = preprocess(decode_image(good[1], SIZE)[None], "caffe")[0]
    np.testing.assert_array_equal(batch.pixels[1], expected)


def test_all_bad_batch_is_empty_not_an_error() -> None:
    batch = decode_batch([b"", None], SIZE, "caffe")
    assert batch.pixels.shape == (0, 224, 224, 3)
    assert len(batch.errors) == 2
