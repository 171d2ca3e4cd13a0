"""Weights: seeded random weights identical across processes; files load or fail clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from udfs_images import jpegs

from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs import weights as weights_module
from vista_sql.udfs.weights import VariableInit, WeightsError, seeded_values, weights_file

pytestmark = pytest.mark.tf

REPO_ROOT = Path(__file__).resolve().parents[1]

FINGERPRINT = """
import hashlib, json, sys
from udfs_images import jpegs
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs.inference import InferenceSpec, infer_local
from vista_sql.udfs.models import build_model
from vista_sql.udfs.weights import weights_digest

seed = int(sys.argv[1])
model = build_model("alexnet", WeightsSpec("random", seed=seed))
weights = WeightsSpec("random", seed=seed)
spec = InferenceSpec("alexnet", weights, None, (LayerOut("fc7", "features"),))
features = infer_local(jpegs(2, seed=40), spec)["f_fc7"]
print(json.dumps({"weights": weights_digest(model.weights),
                  "features": hashlib.sha256(features.tobytes()).hexdigest()}))
"""


def fingerprint_in_subprocess(seed: int) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(REPO_ROOT / "tests")]),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    done = subprocess.run(
        [sys.executable, "-c", FINGERPRINT, str(seed)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_seeded_weights_and_features_are_byte_identical_across_processes() -> None:
    from vista_sql.udfs.models import build_model
    from vista_sql.udfs.weights import weights_digest

    first = fingerprint_in_subprocess(5)
    second = fingerprint_in_subprocess(5)
    assert first == second
    here = weights_digest(build_model("alexnet", WeightsSpec("random", seed=5)).weights)
    assert here == first["weights"]
    assert weights_digest(build_model("alexnet", WeightsSpec("random", seed=6)).weights) != here


def test_seeded_values_depend_on_seed_and_path_only() -> None:
    init = VariableInit(limit=0.5)
    a = seeded_values(3, "conv1/kernel", (3, 3, 8), init)
    assert a.ctypes.data % weights_module.ALIGNMENT == 0
    np.testing.assert_array_equal(a, seeded_values(3, "conv1/kernel", (3, 3, 8), init))
    assert not np.array_equal(a, seeded_values(4, "conv1/kernel", (3, 3, 8), init))
    assert not np.array_equal(a, seeded_values(3, "conv2/kernel", (3, 3, 8), init))
    assert np.abs(a).max() <= 0.5 and a.std() > 0.2
    np.testing.assert_array_equal(seeded_values(3, "b", (4,), VariableInit(None, 1.0)), np.ones(4))


def test_partial_materialisation_gives_the_same_values_as_the_whole() -> None:
    from vista_sql.udfs.models import WeightedModel, build_model, is_materialized

    spec = WeightsSpec("random", seed=9)
    partial = WeightedModel("alexnet", spec, None)
    fc7 = partial.model.get_layer("fc7")
    partial.materialize(fc7.weights)
    assert not is_materialized(partial.model.get_layer("fc6").kernel)
    whole = build_model("alexnet", spec).get_layer("fc7")
    for ours, theirs in zip(fc7.weights, whole.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_random_weights_keep_resnet_activations_moderate() -> None:
    """Unit-scale features at every layer: the init is neither exploding nor vanishing."""
    from vista_sql.udfs.inference import InferenceSpec, infer_local

    outputs = tuple(LayerOut(name, "features") for name in ("conv2_3", "conv4_6", "conv5_3"))
    spec = InferenceSpec("resnet50", WeightsSpec("random", seed=1), None, outputs)
    result = infer_local(jpegs(2, seed=50), spec)
    for out in outputs:
        rms = float(np.sqrt(np.mean(result[f"f_{out.layer}"] ** 2)))
        assert 0.1 < rms < 100, (out.layer, rms)
    fc6 = infer_local(
        jpegs(2, seed=50),
        InferenceSpec(
            "resnet50", WeightsSpec("random", seed=1), None, (LayerOut("fc6", "features"),)
        ),
    )["f_fc6"]
    assert fc6.max() < 0.5, "the softmax is not saturated"


def test_weights_file_round_trip(tmp_path: Path) -> None:
    from vista_sql.udfs.inference import InferenceSpec, infer_local
    from vista_sql.udfs.models import build_model
    from vista_sql.udfs.weights import weights_digest

    seeded = WeightsSpec("random", seed=12)
    model = build_model("alexnet", seeded)
    path = tmp_path / "alexnet.weights.h5"
    model.save_weights(path)
    from_file = WeightsSpec("file", path=str(path))
    assert weights_digest(build_model("alexnet", from_file).weights) == weights_digest(
        model.weights
    )
    outputs = (LayerOut("fc8", "features"),)
    images = jpegs(2, seed=60)
    ours = infer_local(images, InferenceSpec("alexnet", from_file, None, outputs))
    theirs = infer_local(images, InferenceSpec("alexnet", seeded, None, outputs))
    np.testing.assert_array_equal(ours["f_fc8"], theirs["f_fc8"])


def test_corrupt_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    from vista_sql.udfs.models import build_model

    path = tmp_path / "broken.weights.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(WeightsError, match=r"cannot load weights file '.*broken\.weights\.h5'"):
        build_model("alexnet", WeightsSpec("file", path=str(path)))


def test_weights_of_another_architecture_are_a_clear_error(tmp_path: Path) -> None:
    import keras

    from vista_sql.udfs.models import build_model

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="fc6")])
    path = tmp_path / "other.weights.h5"
    other.save_weights(path)
    with pytest.raises(WeightsError, match="alexnet") as raised:
        build_model("alexnet", WeightsSpec("file", path=str(path)))
    assert "other.weights.h5" in str(raised.value)


def test_missing_weights_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.weights.h5"
    with pytest.raises(WeightsError, match="does not exist") as raised:
        weights_file("vgg16", WeightsSpec("file", path=str(missing)))
    assert str(missing) in str(raised.value)


@pytest.fixture
def empty_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(weights_module.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    return tmp_path / "keras" / "models"


def test_imagenet_without_cache_or_network_says_where_to_put_the_file(
    empty_keras_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def offline(url: str, target: Path, md5: str) -> None:
        raise OSError("network unreachable")

    monkeypatch.setattr(weights_module, "_download", offline)
    with pytest.raises(WeightsError) as raised:
        weights_file("vgg16", WeightsSpec("imagenet"))
    message = str(raised.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in message
    assert str(empty_keras_cache) in message
    assert "network unreachable" in message
    assert "WEIGHTS '<file>'" in message


def test_alexnet_imagenet_explains_how_to_supply_a_file() -> None:
    with pytest.raises(WeightsError, match="no ImageNet weights for alexnet") as raised:
        weights_file("alexnet", WeightsSpec("imagenet"))
    assert "WEIGHTS '<file>'" in str(raised.value)


@pytest.mark.slow
def test_imagenet_file_in_the_keras_cache_is_found_and_loads(empty_keras_cache: Path) -> None:
    """A Keras-applications style (legacy HDF5) file in the cache is what WEIGHTS IMAGENET uses."""
    import h5py
    from keras.src.legacy.saving import legacy_h5_format

    from vista_sql.udfs.models import build_model
    from vista_sql.udfs.weights import weights_digest

    source = build_model("resnet50", WeightsSpec("random", seed=3))
    empty_keras_cache.mkdir(parents=True)
    path = empty_keras_cache / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, source)
    assert weights_file("resnet50", WeightsSpec("imagenet"), download=False) == str(path)
    loaded = build_model("resnet50", WeightsSpec("imagenet"))
    assert weights_digest(loaded.weights) == weights_digest(source.weights)


def test_random_without_a_seed_is_seed_zero() -> None:
    from vista_sql.udfs.models import WeightedModel

    unseeded = WeightedModel("alexnet", WeightsSpec("random"), None)
    zero = WeightedModel("alexnet", WeightsSpec("random", seed=0), None)
    for weighted in (unseeded, zero):
        weighted.materialize(weighted.model.get_layer("fc8").weights)
    np.testing.assert_array_equal(
        unseeded.model.get_layer("fc8").kernel.numpy(), zero.model.get_layer("fc8").kernel.numpy()
    )
