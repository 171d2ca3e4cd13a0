"""The builder: parsed statements -> checked statements, and the semantic errors it raises.

Errors are compared by their fields (description, line, col, highlight), never by their text.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from vista_sql.catalog import roster
from vista_sql.errors import SemanticError
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical.builder import build
from vista_sql.logical.plan import ModelSpec, SourceRef, WeightsSpec
from vista_sql.logical.query import (
    DescribeCnnStatement,
    ExplainStatement,
    ShowCnnsStatement,
    Statement,
    TransferQuery,
)
from vista_sql.units import parse_size as parse_memory

BASE = """TRANSFER FEATURES OF 'data/images' AS i
  FROM CNN vgg16 WEIGHTS RANDOM SEED 7
  LAYERS (fc6, fc7, fc8)
  JOIN 'data/foods.parquet' AS f ON i.id = f.id
  TRAIN LOGREG (max_iter = 10)
  LABEL healthy"""


def checked(sql: str) -> Statement:
    return build(parse_one(sql), sql, roster())


def query_of(sql: str) -> TransferQuery:
    statement = checked(sql)
    assert isinstance(statement, TransferQuery)
    return statement


def variant(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


def test_the_base_statement_checks_into_a_transfer_query() -> None:
    query = query_of(BASE)
    assert query.image_source == SourceRef("path", "data/images")
    assert (query.image_alias, query.image_key) == ("i", "id")
    assert (query.table_alias, query.table_key) == ("f", "id")
    assert query.table_source == SourceRef("path", "data/foods.parquet")
    assert query.cnn == "vgg16"
    assert query.weights == WeightsSpec("random", seed=7)
    assert query.layers == ("fc8", "fc7", "fc6")
    assert query.model == ModelSpec("logreg", params=(("max_iter", 10),))
    assert (query.label, query.validate, query.validate_seed) == ("healthy", 0.2, 2019)
    assert query.features is None and query.into is None
    origin = query.origins["cnn"]
    assert (origin.line, origin.col) == (2, 12)
    assert BASE[origin.start : origin.end + 1] == "vgg16"
    assert BASE[query.origins["layer:fc7"].start :].startswith("fc7")


def test_layers_are_case_insensitive_keras_aliases_and_come_back_top_first() -> None:
    query = query_of(variant("(fc6, fc7, fc8)", "(FC7, block1_conv2, predictions, conv3_3)"))
    assert query.layers == ("fc8", "fc7", "conv3_3", "conv1_2")


def test_layers_top_k_are_the_top_k_transfer_layers() -> None:
    assert query_of(variant("(fc6, fc7, fc8)", "TOP 4")).layers == (
        "fc8",
        "fc7",
        "fc6",
        "conv5_3",
    )
    assert query_of(variant("(fc6, fc7, fc8)", "TOP 10")).layers[-1] == "conv1_2"


def test_sources_without_as_are_named_after_themselves() -> None:
    sql = (
        "TRANSFER FEATURES OF 'data/foods/images/' FROM CNN alexnet LAYERS (fc6) "
        "JOIN lake.foods ON images.id = foods.key TRAIN LOGREG LABEL y"
    )
    query = query_of(sql)
    assert (query.image_alias, query.table_alias) == ("images", "foods")
    assert query.table_source == SourceRef("table", "lake.foods")
    assert (query.image_key, query.table_key) == ("id", "key")


def test_on_keys_may_come_in_either_order_and_using_names_both() -> None:
    swapped = query_of(variant("ON i.id = f.id", "ON f.food_id = I.image_id"))
    assert (swapped.image_key, swapped.table_key) == ("image_id", "food_id")
    using = query_of(variant("ON i.id = f.id", "USING (id)"))
    assert (using.image_key, using.table_key) == ("id", "id")


def test_weights_default_to_imagenet_and_take_a_file() -> None:
    assert query_of(variant(" WEIGHTS RANDOM SEED 7", "")).weights == WeightsSpec("imagenet")
    assert query_of(variant("RANDOM SEED 7", "'w.h5'")).weights == WeightsSpec("file", path="w.h5")
    assert query_of(variant("RANDOM SEED 7", "RANDOM")).weights == WeightsSpec("random")


def test_parameters_grids_and_folds_become_a_model_spec() -> None:
    query = query_of(
        variant(
            "LOGREG (max_iter = 10)",
            "LOGREG (MAX_ITER = 5, reg_param = (0, 0.1), Family = 'Multinomial', "
            "fit_intercept = FALSE, folds = 4)",
        )
    )
    assert query.model == ModelSpec(
        "logreg",
        params=(("max_iter", 5), ("family", "multinomial"), ("fit_intercept", False)),
        grid=(("reg_param", (0.0, 0.1)),),
        folds=4,
    )


def test_mlp_layers_are_hidden_sizes() -> None:
    query = query_of(variant("LOGREG (max_iter = 10)", "MLP (layers = '64, 32', solver = GD)"))
    assert query.model.params == (("layers", (64, 32)), ("solver", "gd"))
    grid = query_of(variant("LOGREG (max_iter = 10)", "mlp (layers = (16, '8,4'))"))
    assert grid.model.grid == (("layers", ((16,), (8, 4))),)


def test_random_forest_subset_strategy_takes_names_and_numbers() -> None:
    query = query_of(
        variant(
            "LOGREG (max_iter = 10)",
            "RANDOM_FOREST (feature_subset_strategy = (sqrt, 0.5, 3), num_trees = 5)",
        )
    )
    assert query.model.grid == (("feature_subset_strategy", ("sqrt", "0.5", "3")),)


def test_options_are_checked_and_keep_their_origins() -> None:
    sql = variant(
        "LABEL healthy",
        "LABEL healthy WITH (memory = 24g, GPU_memory = '1.5GiB', inference = EAGER, "
        "placement = 'after_join', cores = 8, overwrite = true, conv_pooling = none, "
        "cache_dir = '/tmp/c') INTO 'out'",
    )
    query = query_of(sql)
    options = query.options
    assert options.memory == 24 * 2**30
    assert options.gpu_memory == int(1.5 * 2**30)
    assert (options.inference, options.placement, options.cores) == ("eager", "after_join", 8)
    assert (options.overwrite, options.conv_pooling, options.cache_dir) == (True, "none", "/tmp/c")
    assert options.join is None and options.cache is True
    memory = options.origins["memory"]
    assert sql[memory.start : memory.end + 1] == "memory = 24g"
    assert query.into == "out"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("24g", 24 * 2**30),
        ("512m", 512 * 2**20),
        ("1.5GiB", 3 * 2**29),
        ("100KB", 102400),
        ("2 t", 2 * 2**40),
        ("1073741824", 2**30),
    ],
)
def test_memory_sizes_are_binary_bytes(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["24", "24x", "g", "1.5", "0m", "-1g", "1.2.3g", "1 iB"])
def test_memory_sizes_need_a_unit_and_a_positive_amount(text: str) -> None:
    if text == "24":
        assert parse_memory(text) == 24  # a whole number of bytes, written as a string
        return
    with pytest.raises(ValueError):
        parse_memory(text)


def test_explain_describe_and_show_statements() -> None:
    explain = checked("EXPLAIN VERBOSE FORMAT JSON " + BASE)
    assert isinstance(explain, ExplainStatement)
    assert (explain.mode, explain.format) == ("verbose", "json")
    assert replace(explain.query, sql=BASE) == query_of(BASE)
    plain = checked("EXPLAIN " + BASE)
    assert isinstance(plain, ExplainStatement) and (plain.mode, plain.format) == (None, "text")
    assert checked("DESCRIBE CNN VGG16") == DescribeCnnStatement("vgg16")
    assert checked("SHOW CNNS") == ShowCnnsStatement()


VALID_OPTIONS = (
    "memory, cores, nodes, gpu_memory, inference, placement, join, persist, executor_cores, "
    "partitions, batch_size, conv_pooling, on_bad_image, overwrite, cache, cache_dir, "
    "cache_match, search, mlflow, calibrate"
)
LOGREG_PARAMS = (
    "max_iter, reg_param, elastic_net_param, tol, fit_intercept, standardization, threshold, "
    "family, aggregation_depth, max_block_size_in_mb, folds"
)
VGG16_LAYERS = "conv1_2, conv2_2, conv3_3, conv4_3, conv5_1, conv5_2, conv5_3, fc6, fc7, fc8"
VGG16_KERAS = (
    "block1_conv2, block2_conv2, block3_conv3, block4_conv3, block5_conv1, block5_conv2, "
    "block5_conv3, fc1, fc2, predictions"
)
ROSTER = "alexnet, vgg16, resnet50, squeezenet, efficientnet_lite0"

ERRORS = [
    (
        ("vgg16", "vgg61"),
        f"Unknown CNN vgg61; did you mean vgg16? valid: {ROSTER}",
        (2, 12, "vgg61"),
    ),
    (
        ("(fc6, fc7, fc8)", "(fc6, fc9)"),
        f"Unknown layer fc9 of vgg16; did you mean fc8? valid: {VGG16_LAYERS} "
        f"(or their Keras names: {VGG16_KERAS})",
        (3, 16, "fc9"),
    ),
    (
        ("(fc6, fc7, fc8)", "(fc6, FC7, fc7)"),
        "Layer fc7 is listed twice: as FC7 and as fc7",
        (3, 21, "fc7"),
    ),
    (
        ("(fc6, fc7, fc8)", "(fc6, block5_conv1, conv5_1)"),
        "Layer conv5_1 is listed twice: as block5_conv1 and as conv5_1",
        (3, 30, "conv5_1"),
    ),
    (
        ("(fc6, fc7, fc8)", "TOP 11"),
        "LAYERS TOP 11: vgg16 has 10 transfer layers; valid: 1 to 10",
        (3, 14, "11"),
    ),
    (
        ("(fc6, fc7, fc8)", "TOP 0"),
        "Bad value 0 for LAYERS TOP: expected an integer >= 1",
        (3, 14, "0"),
    ),
    (
        ("LABEL healthy", "LABEL healthy WITH (memroy = '24g')"),
        f"Unknown option memroy; did you mean memory? valid: {VALID_OPTIONS}",
        (6, 23, "memroy"),
    ),
    (
        ("LABEL healthy", "LABEL healthy WITH (memory = 24)"),
        "Bad value 24 for option memory: expected a memory size with a unit, like '24g', "
        "'512m' or '1.5GiB' (a bare number has no unit)",
        (6, 32, "24"),
    ),
    (
        ("LABEL healthy", "LABEL healthy WITH (memory = '24x')"),
        "Bad value '24x' for option memory: expected a memory size with a unit, like '24g', "
        "'512m' or '1.5GiB', got '24x'",
        (6, 32, "'24x'"),
    ),
    (
        ("LABEL healthy", "LABEL healthy WITH (inference = lazzy)"),
        "Bad value lazzy for option inference: expected one of lazy, eager, staged",
        (6, 35, "lazzy"),
    ),
    (
        ("LABEL healthy", "LABEL healthy WITH (cores = 2.5)"),
        "Bad value 2.5 for option cores: expected an integer >= 1",
        (6, 31, "2.5"),
    ),
    (
        ("LABEL healthy", "LABEL healthy WITH (overwrite = 'yes')"),
        "Bad value 'yes' for option overwrite: expected TRUE or FALSE",
        (6, 35, "'yes'"),
    ),
    (
        ("LABEL healthy", "LABEL healthy WITH (cores = 2, CORES = 3)"),
        "Option cores is given twice",
        (6, 34, "CORES"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREGG"),
        "Unknown model LOGREGG; did you mean LOGREG? valid: LOGREG, LINEAR_SVC, DECISION_TREE, "
        "RANDOM_FOREST, GBT, MLP",
        (5, 9, "LOGREGG"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREG (max_iters = 10)"),
        f"Unknown parameter max_iters of LOGREG; did you mean max_iter? valid: {LOGREG_PARAMS}",
        (5, 17, "max_iters"),
    ),
    (
        ("LOGREG (max_iter = 10)", "DECISION_TREE (reg_param = 0.1)"),
        "Unknown parameter reg_param of DECISION_TREE; valid: max_depth, max_bins, "
        "min_instances_per_node, min_weight_fraction_per_node, min_info_gain, max_memory_in_mb, "
        "cache_node_ids, checkpoint_interval, seed, impurity, prune_tree, folds",
        (5, 24, "reg_param"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREG (max_iter = 10.5)"),
        "Bad value 10.5 for parameter max_iter of LOGREG: expected an integer >= 0",
        (5, 28, "10.5"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREG (elastic_net_param = 1.5)"),
        "Bad value 1.5 for parameter elastic_net_param of LOGREG: expected a number in [0, 1]",
        (5, 37, "1.5"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREG (family = 'bi')"),
        "Bad value 'bi' for parameter family of LOGREG: expected one of auto, binomial, "
        "multinomial",
        (5, 26, "'bi'"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREG (reg_param = (0.1, -1))"),
        "Bad value -1 for parameter reg_param of LOGREG: expected a number >= 0",
        (5, 35, "-1"),
    ),
    (
        ("LOGREG (max_iter = 10)", "MLP (layers = '64,x')"),
        "Bad value '64,x' for parameter layers of MLP: expected hidden layer sizes: an integer "
        "> 0, or a string like '64,32'",
        (5, 23, "'64,x'"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREG (max_iter = 1, MAX_ITER = 2)"),
        "Parameter max_iter is given twice",
        (5, 31, "MAX_ITER"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREG (max_iter = 10, folds = 4)"),
        "folds sets the cross-validation folds of a grid search, but no parameter has a list "
        "of values to search, like reg_param = (0.01, 0.1)",
        (5, 32, "folds = 4"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREG (reg_param = (0.1, 1), folds = 1)"),
        "Bad value 1 for parameter folds: expected an integer >= 2",
        (5, 47, "1"),
    ),
    (
        ("LOGREG (max_iter = 10)", "LOGREG (reg_param = (0.1, 1), folds = (2, 3))"),
        "Bad value (2, 3) for parameter folds: expected one value",
        (5, 47, "(2, 3)"),
    ),
    (
        ("LABEL healthy", "LABEL healthy VALIDATE 1.5"),
        "VALIDATE 1.5: expected the fraction of rows held out, a number in (0, 1), "
        "like VALIDATE 0.2",
        (6, 26, "1.5"),
    ),
    (
        ("LABEL healthy", "LABEL healthy VALIDATE 0"),
        "VALIDATE 0: expected the fraction of rows held out, a number in (0, 1), like VALIDATE 0.2",
        (6, 26, "0"),
    ),
    (
        ("ON i.id = f.id", "ON i.id = g.id"),
        "Unknown source g in the join key g.id; valid: i, f",
        (4, 44, "g"),
    ),
    (
        ("ON i.id = f.id", "ON i.id = i.key"),
        "ON must compare a key of the images (i) with a key of the table (f); both keys are of i",
        (4, 44, "i"),
    ),
    (
        ("ON i.id = f.id", "USING (id, key)"),
        "USING takes one key column, present in both sources; found 2: id, key",
        (4, 45, "key"),
    ),
    (
        ("AS f ON", "AS i ON"),
        "Both sources are called i, so ON cannot tell their keys apart: name them with AS "
        "(OF ... AS i ... JOIN ... AS t ON i.id = t.id)",
        (4, 37, "i.id = f.id"),
    ),
    (
        ("TRAIN", "FEATURES (x1, X1) TRAIN"),
        "Feature X1 is listed twice",
        (5, 17, "X1"),
    ),
    (
        ("TRAIN", "FEATURES (x1, healthy) TRAIN"),
        "healthy is the label; it cannot also be a feature",
        (5, 17, "healthy"),
    ),
    (
        ("TRAIN", "FEATURES (id) TRAIN"),
        "id is the join key; it cannot also be a feature",
        (5, 13, "id"),
    ),
    (("'data/images'", "''"), "Expected a non-empty path in quotes", (1, 22, "''")),
    (
        ("LABEL healthy", "LABEL healthy INTO ''"),
        "Expected a non-empty INTO directory in quotes",
        (6, 22, "''"),
    ),
]


@pytest.mark.parametrize(
    ("change", "description", "where"), ERRORS, ids=[change[1] for change, _, _ in ERRORS]
)
def test_semantic_errors_point_at_the_text_and_name_the_valid_choices(
    change: tuple[str, str], description: str, where: tuple[int, int, str]
) -> None:
    sql = variant(*change)
    with pytest.raises(SemanticError) as raised:
        checked(sql)
    error = raised.value
    assert (error.description, (error.line, error.col, error.highlight)) == (description, where)


def test_describe_of_an_unknown_cnn_is_a_semantic_error() -> None:
    with pytest.raises(SemanticError) as raised:
        checked("DESCRIBE CNN vgg")
    error = raised.value
    assert error.description == f"Unknown CNN vgg; did you mean vgg16? valid: {ROSTER}"
    assert (error.line, error.col, error.highlight) == (1, 14, "vgg")


def test_errors_point_into_the_whole_text_of_several_statements() -> None:
    from vista_sql.grammar.dialect import parse

    sql = "SHOW CNNS;\n" + variant("vgg16", "vgg61")
    trees = parse(sql)
    with pytest.raises(SemanticError) as raised:
        build(trees[1], sql, roster())
    assert (raised.value.line, raised.value.col, raised.value.highlight) == (3, 12, "vgg61")
