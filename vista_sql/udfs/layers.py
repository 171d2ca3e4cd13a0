"""Keras layers the roster needs beyond Keras's own: AlexNet's LRN and fast grouped convolution,
and the in-graph pooling that turns a convolutional activation into its feature vector.

All are registered as serializable so a model holding them saves and loads as ``.keras``.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf
from keras import ops

PACKAGE = "vista_sql"


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalization, as Caffe's LRN layer (AlexNet's ``norm1/2``).

    Caffe computes ``x / (k + alpha / n * sum_{window of n channels} x^2) ^ beta``; TensorFlow's op
    takes ``alpha`` per element of the window, so it is given ``alpha / n``.
    """

    def __init__(
        self,
        size: int = 5,
        alpha: float = 1e-4,
        beta: float = 0.75,
        bias: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if size % 2 != 1:
            raise ValueError(f"LRN size must be odd, got {size}")
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.bias = bias

    def call(self, inputs: Any) -> Any:
        return tf.nn.local_response_normalization(
            inputs,
            depth_radius=self.size // 2,
            bias=self.bias,
            alpha=self.alpha / self.size,
            beta=self.beta,
        )

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "size": self.size,
            "alpha": self.alpha,
            "beta": self.beta,
            "bias": self.bias,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupedConv2D(keras.layers.Conv2D):
    """``Conv2D(groups=g)`` computed as g convolutions over channel slices, then concatenated.

    Same variables, same shapes and same results as Keras's grouped ``Conv2D`` (so weights files
    are interchangeable), but TensorFlow's CPU kernel for grouped convolution is about 2.5x slower
    than g separate ones (measured on AlexNet's conv2: 0.21 s vs 0.09 s for a batch of 80).
    """

    def convolution_op(self, inputs: Any, kernel: Any) -> Any:
        if self.groups == 1:
            return super().convolution_op(inputs, kernel)
        input_slices = ops.split(inputs, self.groups, axis=-1)
        kernel_slices = ops.split(kernel, self.groups, axis=-1)
        return ops.concatenate(
            [
                super(GroupedConv2D, self).convolution_op(part, weights)
                for part, weights in zip(input_slices, kernel_slices, strict=True)
            ],
            axis=-1,
        )


def adaptive_bins(size: int, bins: int) -> tuple[tuple[int, int], ...]:
    """[start, end) of each bin, as PyTorch's AdaptiveMaxPool2d: floor(i*n/b) to ceil((i+1)*n/b).

    Bins overlap by one row when ``size`` is odd (13 -> [0, 7), [6, 13)), so every bin is equal in
    size and every position is covered.
    """
    return tuple(
        (math.floor(i * size / bins), math.ceil((i + 1) * size / bins)) for i in range(bins)
    )


@keras.saving.register_keras_serializable(package=PACKAGE)
class AdaptiveMaxPool2x2(keras.layers.Layer):
    """Max-pool an (H, W, C) activation to a 2x2 grid keeping depth, flattened to 4*C (VISTA's
    ``max2x2``). Output order is row-major over (grid row, grid column, channel), as ``Flatten``
    would lay out the (2, 2, C) grid."""

    GRID = 2

    def call(self, inputs: Any) -> Any:
        height, width, channels = inputs.shape[1], inputs.shape[2], inputs.shape[3]
        cells = [
            ops.max(inputs[:, top:bottom, left:right, :], axis=(1, 2))
            for top, bottom in adaptive_bins(height, self.GRID)
            for left, right in adaptive_bins(width, self.GRID)
        ]
        return ops.reshape(ops.stack(cells, axis=1), (-1, self.GRID * self.GRID * channels))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return (input_shape[0], self.GRID * self.GRID * int(input_shape[-1] or 0))
