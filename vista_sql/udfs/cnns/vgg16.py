"""VGG16 (Simonyan & Zisserman 2014), from ``keras.applications`` with its own layer names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vista_sql.udfs.cnns import CnnDefinition, ImagenetWeights

if TYPE_CHECKING:
    import keras


def build() -> keras.Model:
    """The whole VGG16 with its classifier; ``weights=None``: the weights module sets them."""
    import keras

    return keras.applications.VGG16(weights=None)


DEFINITION = CnnDefinition(
    name="vgg16",
    build=build,
    imagenet=ImagenetWeights(
        file_name="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        url=(
            "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5"
        ),
        md5="64373286793e3c8b2b4e3219cbf3544b",
    ),
)
