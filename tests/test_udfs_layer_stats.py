"""The layer statistics in cnns.json are what the models compute, and the counts are right."""

from __future__ import annotations

import pytest

from vista_sql.catalog import roster

pytestmark = pytest.mark.tf

CNNS = ("alexnet", "vgg16", "resnet50")


@pytest.mark.parametrize("cnn", CNNS)
def test_checked_in_statistics_match_the_models(cnn: str) -> None:
    """Regenerate with ``python -m vista_sql.udfs.layer_stats`` when a model changes."""
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
    """Parameter counts and multiply-accumulates as the papers and Keras report them."""
    gmacs = {"vgg16": 15.47, "resnet50": 3.86, "alexnet": 0.72}
    params = {"vgg16": 138_357_544, "resnet50": 25_636_712, "alexnet": 60_965_224}
    for cnn in CNNS:
        info = roster().cnn(cnn)
        assert info is not None and info.param_bytes is not None
        assert info.param_bytes == 4 * params[cnn]
        total = sum(layer.flops or 0 for layer in info.layers)
        assert total / 2e9 == pytest.approx(gmacs[cnn], rel=0.02), cnn


def test_measurement_is_recorded() -> None:
    measured = roster().measured
    assert measured is not None
    assert {"when", "machine", "tensorflow", "keras", "batch_size"} <= set(measured)
    assert measured["machine"]["cores"] >= 1


def test_peak_activation_counts_a_branch_while_it_is_live() -> None:
    import keras

    from vista_sql.udfs.layer_stats import peak_activation_bytes, segment_layers

    image = keras.Input((8, 8, 4))
    left = keras.layers.Conv2D(4, 1, name="left")(image)
    right = keras.layers.Conv2D(4, 1, name="right")(image)
    total = keras.layers.Add(name="add")([left, right])
    model = keras.Model(image, total)
    producer = {id(layer.output): layer for layer in model.layers}
    segment = segment_layers(model, model.input, total, producer)
    assert [layer.name for layer in segment] == ["left", "right", "add"]
    tensor = 8 * 8 * 4 * 4
    # Three tensors at most: input + left + right while "right" runs (the input is freed after
    # its last reader), then left + right + sum while "add" runs.
    assert peak_activation_bytes(segment, total) == 3 * tensor
