"""A tiny real Keras CNN registered with ``vista_sql.register_cnn``, for fast tests.

32x32 RGB -> conv1 (8 3x3, 30x30x8) -> max-pool -> conv2 (16 3x3, 13x13x16) -> max-pool -> flatten
-> fc1 (32) -> fc2 (10, softmax). Its weights are drawn from fixed seeds, so every build is the
same model; inference over a few dozen images takes milliseconds, where the roster's CNNs take
seconds. Use::

    from tiny_cnn import register_tiny_cnn

    cnn = register_tiny_cnn(tmp_path)            # "tiny", transfer layers conv1, conv2, fc1, fc2
    vista_sql.execute(f"TRANSFER FEATURES OF ... FROM CNN {cnn} LAYERS (conv2, fc1) ...")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

TINY_LAYERS = ("conv1", "conv2", "fc1", "fc2")
"""The tiny CNN's transfer layers, bottom to top (its Keras layer names)."""
TINY_FEATURES = {"conv1": 4 * 8, "conv2": 4 * 16, "fc1": 32, "fc2": 10}
"""Feature sizes under the default ``conv_pooling = max2x2``."""


def build_tiny_cnn(seed: int = 0) -> keras.Model:
    """The tiny CNN with weights drawn from ``seed`` (the same model for the same seed)."""
    import keras

    def init(offset: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=seed * 100 + offset)

    image = keras.Input(shape=(32, 32, 3), name="image")
    x = keras.layers.Conv2D(8, 3, activation="relu", kernel_initializer=init(1), name="conv1")(
        image
    )
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, activation="relu", kernel_initializer=init(2), name="conv2")(x)
    x = keras.layers.MaxPooling2D(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", kernel_initializer=init(3), name="fc1")(x)
    x = keras.layers.Dense(10, activation="softmax", kernel_initializer=init(4), name="fc2")(x)
    return keras.Model(image, x, name="tiny_cnn")


def register_tiny_cnn(cache_dir: str | os.PathLike[str], name: str = "tiny", seed: int = 0) -> str:
    """Register the tiny CNN (its model and statistics kept in ``cache_dir``); returns its name.

    Preprocessing ``unit`` (pixels scaled to 0..1), as a small model trained from scratch on
    ``image / 255`` would expect.
    """
    import vista_sql

    vista_sql.register_cnn(
        name, build_tiny_cnn(seed), list(TINY_LAYERS), preprocess="unit", cache_dir=str(cache_dir)
    )
    return name
