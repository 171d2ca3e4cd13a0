"""Partial, multi-output and resumed inference equal Keras's own models, on every roster CNN.

The reference for a layer k is Keras itself: ``keras.Model(model.input, model.get_layer(k).output)``
over the whole model with the same seeded weights, on the same preprocessed images, pooled here in
NumPy. "Equal" is a maximum relative error (max |ours - keras| / max |keras|) of 1e-4.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from udfs_images import jpegs

from vista_sql.catalog import CnnInfo, roster
from vista_sql.errors import SemanticError
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs.columns import ERROR_COLUMN, output_column
from vista_sql.udfs.decode import decode_batch
from vista_sql.udfs.inference import InferenceSpec, infer_local

pytestmark = pytest.mark.tf

CNNS = ("alexnet", "vgg16", "resnet50", "squeezenet", "efficientnet_lite0")
WEIGHTS = WeightsSpec("random", seed=11)
TOLERANCE = 1e-4


def max_relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    scale = float(np.abs(reference).max())
    return float(np.abs(ours - reference).max()) / (scale if scale > 0 else 1.0)


def adaptive_max_2x2(activation: np.ndarray) -> np.ndarray:
    """PyTorch's AdaptiveMaxPool2d((2, 2)) bins, written out independently of vista_sql."""
    count, height, width, channels = activation.shape
    grid = np.empty((count, 2, 2, channels), activation.dtype)
    for i in range(2):
        top, bottom = (i * height) // 2, math.ceil((i + 1) * height / 2)
        for j in range(2):
            left, right = (j * width) // 2, math.ceil((j + 1) * width / 2)
            grid[:, i, j] = activation[:, top:bottom, left:right].max(axis=(1, 2))
    return grid.reshape(count, -1)


def pooled(activation: np.ndarray, pooling: str) -> np.ndarray:
    if activation.ndim == 2:
        return activation
    if pooling == "max2x2":
        return adaptive_max_2x2(activation)
    if pooling == "avg":
        return activation.mean(axis=(1, 2))
    if pooling == "max":
        return activation.max(axis=(1, 2))
    return activation.reshape(len(activation), -1)


@dataclass
class Reference:
    info: CnnInfo
    images: list[bytes]
    tensors: dict[str, np.ndarray]
    """Keras's own output of every transfer and resume layer, by Keras layer name."""

    def features(self, layer: str, pooling: str = "max2x2") -> np.ndarray:
        found = self.info.layer(layer)
        assert found is not None
        return pooled(self.tensors[found.keras], pooling)

    def resume(self, layer: str) -> np.ndarray:
        found = self.info.layer(layer)
        assert found is not None and found.resume_keras is not None
        tensor = self.tensors[found.resume_keras]
        return tensor.reshape(len(tensor), -1)


@pytest.fixture(scope="module")
def images() -> list[bytes]:
    return jpegs(3, seed=20)


@pytest.fixture(scope="module", params=CNNS)
def reference(request: pytest.FixtureRequest, images: list[bytes]) -> Reference:
    import keras

    from vista_sql.udfs.models import build_model

    info = roster().cnn(request.param)
    assert info is not None
    model = build_model(info.name, WEIGHTS)
    names = sorted(
        {layer.keras for layer in info.layers}
        | {layer.resume_keras for layer in info.layers if layer.resume_keras}
    )
    keras_model = keras.Model(model.input, [model.get_layer(name).output for name in names])
    pixels = decode_batch(images, info.input_size, info.preprocess).pixels
    outputs = keras_model(pixels, training=False)
    return Reference(info, images, {n: o.numpy() for n, o in zip(names, outputs, strict=True)})


def spec(info: CnnInfo, start: str | None, *outputs: LayerOut, pooling: str = "max2x2") -> Any:
    return InferenceSpec(info.name, WEIGHTS, start, outputs, pooling)


def test_one_pass_to_every_layer_equals_keras(reference: Reference) -> None:
    info = reference.info
    outputs = [LayerOut(layer.name, "features") for layer in info.layers]
    middle = info.layers[len(info.layers) // 2].name
    outputs += [LayerOut(middle, "resume"), LayerOut(middle, "activation")]
    result = infer_local(reference.images, spec(info, None, *outputs), batch_size=2)
    assert list(result[ERROR_COLUMN]) == [None] * len(reference.images)
    for layer in info.layers:
        ours = result[output_column(LayerOut(layer.name, "features"))]
        assert ours.shape == (len(reference.images), layer.feature_size("max2x2"))
        assert np.isfinite(ours).all()
        assert max_relative_error(ours, reference.features(layer.name)) < TOLERANCE, layer.name
    resume = result[output_column(LayerOut(middle, "resume"))]
    assert max_relative_error(resume, reference.resume(middle)) < TOLERANCE
    activation = result[output_column(LayerOut(middle, "activation"))]
    assert max_relative_error(activation, reference.features(middle, "none")) < TOLERANCE


def test_staged_inference_from_each_stored_layer_equals_keras(reference: Reference) -> None:
    """Resume from every transfer layer's stored tensor (Keras's) to the next layer."""
    info = reference.info
    for lower, upper in zip(info.layers, info.layers[1:], strict=False):
        stored = reference.resume(lower.name)
        outputs = [LayerOut(upper.name, "features")]
        if upper.resume_keras is not None:
            outputs.append(LayerOut(upper.name, "resume"))
        result = infer_local(stored, spec(info, lower.name, *outputs), batch_size=3)
        ours = result[output_column(outputs[0])]
        error = max_relative_error(ours, reference.features(upper.name))
        assert error < TOLERANCE, f"{lower.name} -> {upper.name}: {error}"
        if upper.resume_keras is not None:
            ours_resume = result[output_column(outputs[1])]
            assert max_relative_error(ours_resume, reference.resume(upper.name)) < TOLERANCE


def test_resuming_the_top_layers_from_our_own_stored_layer(reference: Reference) -> None:
    """Store a lower layer's resume output with one pass, resume the top three from it."""
    info = reference.info
    store, *top = info.layers[-4:]
    first = infer_local(
        reference.images, spec(info, None, LayerOut(store.name, "resume")), batch_size=3
    )
    stored = first[output_column(LayerOut(store.name, "resume"))]
    outputs = [LayerOut(layer.name, "features") for layer in top]
    second = infer_local(stored, spec(info, store.name, *outputs), batch_size=2)
    for layer in top:
        ours = second[output_column(LayerOut(layer.name, "features"))]
        assert max_relative_error(ours, reference.features(layer.name)) < TOLERANCE, layer.name


@pytest.mark.parametrize("pooling", ["max2x2", "avg", "max", "none"])
def test_every_pooling_equals_numpy(reference: Reference, pooling: str) -> None:
    info = reference.info
    convs = [layer for layer in info.layers if layer.kind == "conv"]
    lower, upper = convs[-2], convs[-1]
    result = infer_local(
        reference.resume(lower.name),
        spec(info, lower.name, LayerOut(upper.name, "features"), pooling=pooling),
    )
    ours = result[output_column(LayerOut(upper.name, "features"))]
    assert ours.shape[1] == upper.feature_size(pooling)
    assert max_relative_error(ours, reference.features(upper.name, pooling)) < TOLERANCE


def test_bad_images_get_nan_rows_and_an_error() -> None:
    info = roster().cnn("alexnet")
    assert info is not None
    good = jpegs(2, seed=30)
    inputs: list[bytes | None] = [good[0], b"not an image", None, good[1]]
    result = infer_local(inputs, spec(info, None, LayerOut("fc8", "features")), batch_size=3)
    fc8 = result[output_column(LayerOut("fc8", "features"))]
    assert np.isnan(fc8[[1, 2]]).all()
    assert np.isfinite(fc8[[0, 3]]).all()
    np.testing.assert_allclose(fc8[[0, 3]].sum(axis=1), 1.0, rtol=1e-5)  # softmax rows
    errors = list(result[ERROR_COLUMN])
    assert errors[0] is None and errors[3] is None
    assert errors[2] == "image is null"
    assert "not an image" in errors[1]
    alone = infer_local([good[1]], spec(info, None, LayerOut("fc8", "features")))
    assert max_relative_error(fc8[3:], alone[output_column(LayerOut("fc8", "features"))]) < 1e-5


def test_a_wrongly_sized_stored_tensor_is_reported() -> None:
    info = roster().cnn("alexnet")
    assert info is not None
    size = 6 * 6 * 256
    stored = [np.ones(size, np.float32), np.ones(size - 1, np.float32), None]
    result = infer_local(stored, spec(info, "conv5", LayerOut("fc6", "features")))
    assert list(result[ERROR_COLUMN][:1]) == [None]
    assert result[ERROR_COLUMN][1] == f"stored conv5 tensor has {size - 1} values, expected {size}"
    assert result[ERROR_COLUMN][2] == "no stored conv5 tensor to resume from"
    assert np.isnan(result["f_fc6"][1:]).all()


@pytest.mark.parametrize(
    ("start", "outputs", "pooling", "message"),
    [
        (None, (LayerOut("fc9", "features"),), "max2x2", "no transfer layer 'fc9'"),
        ("conv5", (LayerOut("conv4", "features"),), "max2x2", "cannot be computed from conv5"),
        ("conv5", (LayerOut("conv5", "features"),), "max2x2", "cannot be computed from conv5"),
        ("fc8", (LayerOut("fc8", "features"),), "max2x2", "nothing resumes from it"),
        (None, (LayerOut("fc8", "resume"),), "max2x2", "it has no resume"),
        (None, (LayerOut("fc8", "features"),), "max3x3", "unknown conv_pooling"),
        (None, (), "max2x2", "at least one output"),
        (None, (LayerOut("fc8", "features"),) * 2, "max2x2", "duplicate outputs"),
    ],
)
def test_invalid_specs_are_semantic_errors(
    start: str | None, outputs: tuple[LayerOut, ...], pooling: str, message: str
) -> None:
    with pytest.raises(SemanticError, match=message):
        InferenceSpec("alexnet", WEIGHTS, start, outputs, pooling)


def test_resuming_from_a_layer_that_stores_itself_can_emit_it() -> None:
    """VGG16 conv5_1 stores its own activation, so its features are computable from it."""
    spec_ = InferenceSpec("vgg16", WEIGHTS, "conv5_1", (LayerOut("conv5_1", "features"),))
    assert spec_.input_shape == (14, 14, 512)
    assert spec_.columns == ("f_conv5_1",)


def test_unknown_cnn_is_a_semantic_error() -> None:
    with pytest.raises(SemanticError, match="unknown CNN 'vgg61'"):
        InferenceSpec("vgg61", WEIGHTS, None, (LayerOut("fc8", "features"),))
