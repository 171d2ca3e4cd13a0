"""``vista_sql.register_cnn``: a user's Keras model as a CNN of the roster, end to end.

The tiny CNN (``tiny_cnn.py``) is registered as a user would register theirs; its catalog entry is
checked against what Keras says of the model, its features in this process against Keras's own
output, and a statement naming it runs on Spark, whose Python workers know nothing of it but what
the inference spec and the shipped model file tell them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tiny_cnn import TINY_FEATURES, TINY_LAYERS, build_tiny_cnn, register_tiny_cnn

import vista_sql
from vista_sql.catalog import current
from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs import registry
from vista_sql.udfs.registry import RegistrationError

pytestmark = [pytest.mark.tf]

ROWS = 16
STRUCTURED = 129


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("register_cache")


@pytest.fixture(scope="module")
def tiny(cache: Path) -> str:
    return register_tiny_cnn(cache)


def test_the_catalog_entry_describes_the_model(tiny: str) -> None:
    info = current().cnn(tiny)
    assert info is not None
    assert info.input_size == (32, 32) and info.preprocess == "unit"
    assert info.layer_names == TINY_LAYERS
    shapes = {layer.name: (layer.kind, layer.shape) for layer in info.layers}
    assert shapes == {
        "conv1": ("conv", (30, 30, 8)),
        "conv2": ("conv", (13, 13, 16)),
        "fc1": ("fc", (32,)),
        "fc2": ("fc", (10,)),
    }
    assert {layer.name: layer.feature_size() for layer in info.layers} == TINY_FEATURES
    # Each layer resumes from its own output; the top one has nothing above it.
    assert [layer.resume_keras for layer in info.layers] == ["conv1", "conv2", "fc1", None]
    conv1, conv2, fc1, fc2 = info.layers
    assert conv1.flops == 2 * 30 * 30 * (3 * 3 * 3 * 8)
    assert conv2.flops == 2 * 13 * 13 * (3 * 3 * 8 * 16)
    assert fc1.flops == 2 * (6 * 6 * 16) * 32 and fc2.flops == 2 * 32 * 10
    assert conv1.param_bytes == (3 * 3 * 3 * 8 + 8) * 4
    assert fc2.param_bytes == (32 * 10 + 10) * 4
    assert info.param_bytes == sum(layer.param_bytes or 0 for layer in info.layers)
    assert all(layer.activation_bytes and layer.activation_bytes > 0 for layer in info.layers)
    described = vista_sql.explain(f"DESCRIBE CNN {tiny}")
    assert "input 32x32, unit preprocessing" in described and "conv2" in described


def test_statistics_are_stored_and_read_back(
    tiny: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = sorted((cache / "models").glob(f"{tiny}-*.json"))
    assert len(stored) == 1
    assert stored[0].with_suffix(".keras").is_file()

    def measured_again(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("statistics were measured again")

    monkeypatch.setattr(registry, "describe", measured_again)
    again = vista_sql.register_cnn(
        tiny, build_tiny_cnn(), list(TINY_LAYERS), preprocess="unit", cache_dir=str(cache)
    )
    assert again == current().cnn(tiny)


def test_a_model_file_registers_as_the_model_does(tiny: str, cache: Path, tmp_path: Path) -> None:
    original = registry.registered(tiny)
    assert original is not None
    for suffix in (".keras", ".h5"):
        path = tmp_path / f"saved{suffix}"
        build_tiny_cnn().save(path)
        info = vista_sql.register_cnn(
            f"from_file_{suffix[1:]}", str(path), ["conv2", "fc2"], cache_dir=str(cache)
        )
        found = registry.registered(info.name)
        assert found is not None and found.digest == original.digest
        assert info.preprocess == "raw"  # the default: pixels as keras.utils.load_img gives them
        assert [layer.name for layer in info.layers] == ["conv2", "fc2"]


@pytest.mark.parametrize(
    ("name", "layers", "kwargs", "message"),
    [
        ("vgg16", ["fc1"], {}, "vgg16 is a CNN of the roster"),
        ("tiny-2", ["fc1"], {}, "a CNN name must be an identifier"),
        ("tiny2", ["fc3"], {}, "the model has no layer 'fc3'"),
        ("tiny2", ["fc1", "conv1"], {}, "layers must be listed bottom to top"),
        ("tiny2", ["flatten", "fc1"], {}, None),
        ("tiny2", ["fc1"], {"preprocess": "cafe"}, "unknown preprocess 'cafe'"),
        ("tiny2", ["fc1"], {"input_size": (64, 64)}, "input_size=(64, 64) disagrees"),
        ("tiny2", [], {}, "at least one Keras layer"),
    ],
)
def test_what_cannot_be_registered_says_why(
    name: str, layers: list[str], kwargs: dict[str, Any], message: str | None, cache: Path
) -> None:
    model = build_tiny_cnn()
    if message is None:  # flatten is a vector: a valid fc transfer layer
        info = vista_sql.register_cnn(name, model, layers, cache_dir=str(cache), **kwargs)
        assert info.layers[0].kind == "fc"
        return
    with pytest.raises(RegistrationError) as raised:
        vista_sql.register_cnn(name, model, layers, cache_dir=str(cache), **kwargs)
    assert message in str(raised.value)
    if "no layer" in message:
        assert "fc1" in str(raised.value)  # did you mean


def test_an_open_input_size_is_fixed_by_input_size(cache: Path) -> None:
    import keras

    image = keras.Input(shape=(None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(image)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(image, x)
    with pytest.raises(RegistrationError, match="give input_size"):
        vista_sql.register_cnn("open", model, ["conv", "gap"], cache_dir=str(cache))
    info = vista_sql.register_cnn(
        "open", model, ["conv", "gap"], input_size=(20, 24), cache_dir=str(cache)
    )
    assert info.input_size == (20, 24)
    assert info.layers[0].shape == (18, 22, 4)


def test_no_resume_across_a_skip_connection(cache: Path) -> None:
    import keras

    image = keras.Input(shape=(16, 16, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", name="a")(image)
    b = keras.layers.Conv2D(4, 3, padding="same", name="b")(a)
    c = keras.layers.Add(name="c")([a, b])
    out = keras.layers.GlobalAveragePooling2D(name="out")(c)
    info = vista_sql.register_cnn(
        "skip", keras.Model(image, out), ["a", "b", "out"], cache_dir=str(cache)
    )
    # b alone cannot give c (which also reads a); a can give everything above it.
    assert [layer.resume_keras for layer in info.layers] == ["a", None, None]


def test_inference_gives_the_models_own_outputs(tiny: str, cache: Path) -> None:
    from udfs_images import jpegs

    from vista_sql.udfs.decode import decode_batch
    from vista_sql.udfs.inference import InferenceSpec, infer_local

    images = jpegs(5)
    spec = InferenceSpec(tiny, WeightsSpec("imagenet"), None, (LayerOut("fc2", "features"),))
    ours = infer_local(images, spec)["f_fc2"]
    pixels = decode_batch(images, (32, 32), "unit").pixels
    expected = registry.model_from_registered(tiny)(pixels).numpy()
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    resumed = InferenceSpec(tiny, WeightsSpec("imagenet"), None, (LayerOut("conv1", "resume"),))
    tensor = infer_local(images, resumed)["resume_conv1"]
    from_conv1 = InferenceSpec(
        tiny, WeightsSpec("imagenet"), "conv1", (LayerOut("fc2", "features"),)
    )
    np.testing.assert_allclose(infer_local(tensor, from_conv1)["f_fc2"], ours, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("registered") / "foods", rows=ROWS, image_size=32)


@pytest.mark.spark
@pytest.mark.slow
def test_a_registered_cnn_runs_end_to_end_on_spark(
    spark: Any, tiny: str, foods: FoodsDataset, tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    from vista_sql.udfs.inference import InferenceSpec, infer_local

    target = tmp_path / "out"
    sql = (
        f"TRANSFER FEATURES OF '{foods.images_dir}' AS i FROM CNN {tiny} LAYERS (conv2, fc2)"
        f" JOIN '{foods.table_path}' AS f ON i.id = f.id TRAIN LOGREG (max_iter = 3)"
        f" LABEL healthy VALIDATE 0.25 WITH (cache = false) INTO '{target}'"
    )
    result = vista_sql.execute(sql, spark=spark, progress=False)
    frame = result.to_pandas()
    assert list(frame["layer"]) == ["fc2", "conv2"]
    assert list(frame["n_features"]) == [STRUCTURED + 10, STRUCTURED + 64]
    assert all(0.0 <= accuracy <= 1.0 for accuracy in frame["accuracy"])
    # The workers built the model from the spec and the shipped file: the same features as here.
    table = pq.read_table(target / "fc2" / "features.parquet").to_pandas().sort_values("id")
    images = [(foods.images_dir / f"{key}.jpg").read_bytes() for key in table["id"]]
    spec = InferenceSpec(tiny, WeightsSpec("imagenet"), None, (LayerOut("fc2", "features"),))
    expected = infer_local(images, spec)["f_fc2"]
    spark_features = np.stack([np.asarray(v["values"])[-10:] for v in table["features"]])
    np.testing.assert_allclose(spark_features, expected, rtol=1e-6, atol=1e-7)
    assert not math.isnan(float(frame["accuracy"].iloc[0]))
