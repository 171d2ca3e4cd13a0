"""ResNet50 (He et al. 2015), from ``keras.applications`` with its own layer names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vista_sql.udfs.cnns import CnnDefinition, ImagenetWeights

if TYPE_CHECKING:
    import keras


def build() -> keras.Model:
    """The whole ResNet50 with its classifier; ``weights=None``: the weights module sets them."""
    import keras

    return keras.applications.ResNet50(weights=None)


DEFINITION = CnnDefinition(
    name="resnet50",
    build=build,
    imagenet=ImagenetWeights(
        file_name="resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        url=(
            "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
        ),
        md5="2cb95161c43110f7111970584f804107",
    ),
)
