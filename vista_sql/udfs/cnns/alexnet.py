"""AlexNet (Krizhevsky et al. 2012) in the layout of Caffe's ``bvlc_alexnet``, the one VISTA used.

227x227x3 -> conv1 96@11x11/4 -> LRN -> maxpool 3/2 -> conv2 256@5x5 (2 groups) -> LRN -> maxpool
-> conv3 384@3x3 -> conv4 384@3x3 (2 groups) -> conv5 256@3x3 (2 groups) -> maxpool (6x6x256)
-> fc6 4096 -> fc7 4096 -> fc8 1000 softmax. ReLU is fused into every conv and fc layer, so a
layer's output is its rectified activation (as ``keras.applications`` models do); fc8 is the
softmax output (Caffe's ``prob``), like VGG16's ``predictions``. Dropout is left out: it does
nothing at inference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vista_sql.udfs.cnns import CnnDefinition

if TYPE_CHECKING:
    import keras

INPUT_SHAPE = (227, 227, 3)


def build() -> keras.Model:
    """The whole AlexNet, with Keras layer names as in ``cnns.json``."""
    import keras

    from vista_sql.udfs.layers import GroupedConv2D, LocalResponseNormalization

    image = keras.Input(shape=INPUT_SHAPE, name="input")
    x = keras.layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(image)
    x = LocalResponseNormalization(name="norm1")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = GroupedConv2D(256, 5, padding="same", groups=2, activation="relu", name="conv2")(x)
    x = LocalResponseNormalization(name="norm2")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = keras.layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = GroupedConv2D(384, 3, padding="same", groups=2, activation="relu", name="conv4")(x)
    x = GroupedConv2D(256, 3, padding="same", groups=2, activation="relu", name="conv5")(x)
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(4096, activation="relu", name="fc6")(x)
    x = keras.layers.Dense(4096, activation="relu", name="fc7")(x)
    x = keras.layers.Dense(1000, activation="softmax", name="fc8")(x)
    return keras.Model(image, x, name="alexnet")


DEFINITION = CnnDefinition(
    name="alexnet",
    build=build,
    imagenet=None,
    imagenet_help=(
        "Keras publishes no ImageNet weights for AlexNet. Convert Caffe's bvlc_alexnet weights to "
        "a Keras weights file for this architecture (layers conv1..conv5, fc6..fc8; kernels as "
        "(height, width, in/groups, out); fc6's rows in (height, width, channel) order) and use "
        "WEIGHTS '<file>'; build_model('alexnet').save_weights('<file>.weights.h5') shows the "
        "expected layout"
    ),
)
