"""The vista dialect: fixture round trips, the trees it builds, positions, and the public API."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

import vista_sql
from vista_sql.errors import Origin, VistaError, VistaSyntaxError
from vista_sql.grammar.dialect import Vista, origin, parse, parse_one
from vista_sql.grammar.expressions import (
    DescribeCnn,
    ShowCnns,
    TransferFeatures,
    VistaExplain,
    Weights,
)

FIXTURES = Path(__file__).parent / "fixtures" / "grammar"
STATEMENTS_SQL = (FIXTURES / "statements.sql").read_text()
IDENTITY_LINES = (FIXTURES / "identity.sql").read_text().splitlines()
PRETTY_SQL = (FIXTURES / "pretty.sql").read_text()


def _source_texts(sql: str) -> list[str]:
    """Each statement's own text, cut out of ``sql`` by the positions the parser recorded."""
    texts = []
    for tree in parse(sql):
        where = origin(tree)
        assert where is not None
        texts.append(sql[where.start : where.end + 1])
    return texts


FIXTURE_STATEMENTS = _source_texts(STATEMENTS_SQL)


def test_fixture_file_parses_to_every_statement() -> None:
    trees = parse(STATEMENTS_SQL)
    kinds = [type(tree).__name__ for tree in trees]
    assert kinds.count("TransferFeatures") == 12
    assert kinds.count("VistaExplain") == 6
    assert kinds.count("DescribeCnn") == 2
    assert kinds.count("ShowCnns") == 3


@pytest.mark.parametrize("text", FIXTURE_STATEMENTS, ids=range(len(FIXTURE_STATEMENTS)))
def test_fixture_statement_round_trips(text: str) -> None:
    tree = parse_one(text)
    canonical = tree.sql(dialect="vista")
    assert parse_one(canonical) == tree
    assert parse_one(canonical).sql(dialect="vista") == canonical
    pretty = tree.sql(dialect="vista", pretty=True)
    assert parse_one(pretty) == tree
    assert parse_one(pretty).sql(dialect="vista", pretty=True) == pretty


@pytest.mark.parametrize("line", IDENTITY_LINES, ids=range(len(IDENTITY_LINES)))
def test_canonical_text_regenerates_unchanged(line: str) -> None:
    assert parse_one(line).sql(dialect="vista") == line


def test_pretty_text_regenerates_unchanged() -> None:
    trees = parse(PRETTY_SQL)
    assert len(trees) == 4
    regenerated = ";\n\n".join(tree.sql(dialect="vista", pretty=True) for tree in trees) + ";\n"
    assert regenerated == PRETTY_SQL


def test_paper_workload_tree() -> None:
    tree = parse_one(FIXTURE_STATEMENTS[0])
    assert isinstance(tree, TransferFeatures)
    assert tree.this == exp.Literal.string("data/foods/images")
    assert tree.args["alias"].name == "i"
    assert tree.args["cnn"] == exp.to_identifier("vgg16")
    weights = tree.args["weights"]
    assert isinstance(weights, Weights)
    assert weights.this == exp.var("RANDOM")
    assert weights.args["seed"] == exp.Literal.number(7)
    assert [layer.name for layer in tree.args["layers"]] == ["fc6", "fc7", "fc8"]
    assert tree.args.get("top") is None
    assert tree.args["join"] == exp.Literal.string("data/foods/foods.parquet")
    assert tree.args["join_alias"].name == "f"
    on = tree.args["on"]
    assert isinstance(on, exp.EQ)
    assert (on.this.table, on.this.name, on.expression.table, on.expression.name) == (
        "i",
        "id",
        "f",
        "id",
    )
    assert tree.args["model"].name == "LOGREG"
    params = {pair.this.name: pair.expression for pair in tree.args["params"]}
    assert params == {"max_iter": exp.Literal.number(10), "reg_param": exp.Literal.number(0.1)}
    assert tree.args["label"].name == "healthy"
    assert tree.args["validate"] == exp.Literal.number(0.2)
    assert tree.args["validate_seed"] == exp.Literal.number(2019)
    for absent in ("column", "using", "features", "options", "into"):
        assert tree.args.get(absent) is None


def test_every_clause_tree() -> None:
    tree = parse_one(FIXTURE_STATEMENTS[2])
    assert isinstance(tree, TransferFeatures)
    source = tree.this
    assert isinstance(source, exp.Table)
    assert (source.catalog, source.db, source.name) == ("warehouse", "raw", "images")
    assert tree.args["column"] == exp.to_identifier("image_bytes")
    assert tree.args["weights"].this == exp.Literal.string("/models/resnet50_weights.h5")
    assert [c.name for c in tree.args["features"]] == ["calories", "protein", "fat"]
    params = {pair.this.name: pair.expression for pair in tree.args["params"]}
    assert params["num_trees"] == exp.Tuple(
        expressions=[exp.Literal.number(n) for n in (10, 50, 100)]
    )
    assert params["impurity"] == exp.var("gini")
    options = {pair.this.name: pair.expression for pair in tree.args["options"]}
    assert options["memory"] == exp.Literal.string("24g")
    assert options["inference"] == exp.var("staged")
    assert options["join"] == exp.var("shuffle")
    assert options["overwrite"] == exp.true()
    assert options["cache"] == exp.false()
    assert options["cache_dir"] == exp.Literal.string("/tmp/vista cache")
    assert len(options) == 16
    assert tree.args["into"] == exp.Literal.string("out/foods run")


def test_top_k_imagenet_and_using() -> None:
    tree = parse_one(FIXTURE_STATEMENTS[3])
    assert tree.args["top"] == exp.Literal.number(3)
    assert tree.args.get("layers") is None
    assert tree.args["weights"].this == exp.var("IMAGENET")
    assert tree.args["weights"].args.get("seed") is None
    assert [key.name for key in tree.args["using"]] == ["id"]
    assert tree.args.get("on") is None


def test_keywords_any_case_names_keep_theirs() -> None:
    tree = parse_one(FIXTURE_STATEMENTS[4])
    assert tree.args["cnn"].name == "VGG16"
    assert [layer.name for layer in tree.args["layers"]] == ["FC6", "Fc7"]
    assert tree.args["weights"].this == exp.var("RANDOM")
    assert tree.args["validate"] == exp.Literal.number("0.3")
    assert parse_one(FIXTURE_STATEMENTS[5]).args.get("weights") is None


def test_backquoted_names_are_quoted_identifiers() -> None:
    tree = parse_one(FIXTURE_STATEMENTS[6])
    assert tree.this == exp.Table(this=exp.to_identifier("my images", quoted=True))
    assert tree.args["alias"].this == exp.to_identifier("from", quoted=True)
    layers = tree.args["layers"]
    assert [(layer.name, layer.quoted) for layer in layers] == [
        ("fire2/concat", True),
        ("block5_conv3", True),
        ("a`b", True),
    ]
    assert tree.args["model"] == exp.to_identifier("LOGREG", quoted=True)
    assert tree.args["model"] != exp.to_identifier("LOGREG")


def test_comments_are_dropped() -> None:
    tree = parse_one(FIXTURE_STATEMENTS[8])
    assert all(not node.comments for node in tree.walk())
    assert "/*" not in tree.sql(dialect="vista")
    assert [layer.name for layer in tree.args["layers"]] == ["conv1", "conv3", "conv5"]


def test_string_escapes_and_adjacent_literals() -> None:
    tree = parse_one(FIXTURE_STATEMENTS[9])
    assert tree.this.this == "data/it's here"
    assert tree.args["join"].this == "C:\\data\\foods.parquet"
    assert tree.args["into"].this == "C:\\output"
    tree = parse_one(FIXTURE_STATEMENTS[10])
    assert tree.this.this == "tab\tseparated\nand 'quoted'"
    assert tree.args["join"].this == ""


def test_value_shapes() -> None:
    tree = parse_one(FIXTURE_STATEMENTS[11])
    params = {pair.this.name: pair.expression for pair in tree.args["params"]}
    assert params["reg_param"] == exp.Tuple(
        expressions=[exp.Literal.number(n) for n in ("0.001", "0.01", "1e-1", "1.5E2")]
    )
    assert params["elastic_net_param"] == exp.Literal(this="-0.5", is_string=False)
    assert params["tol"] == exp.Literal.number("1e-6")
    assert params["standardization"] == exp.false()
    assert params["family"] == exp.Literal.string("multinomial")
    assert params["solver"] == exp.var("auto")
    assert tree.args["validate_seed"] == exp.Literal(this="-1", is_string=False)
    options = {pair.this.name: pair.expression for pair in tree.args["options"]}
    assert options["memory"] == exp.var("24g")
    assert options["gpu_memory"] == exp.var("1.5g")
    assert options["partitions"] == exp.Literal.number("10.")
    assert options["batch_size"] == exp.Literal.number("007")


@pytest.mark.parametrize(
    ("index", "mode", "format_"),
    [
        (12, None, None),
        (13, "LOGICAL", None),
        (14, "COST", "JSON"),
        (15, "VERBOSE", "TEXT"),
        (16, "ANALYZE", None),
        (17, None, "JSON"),
    ],
)
def test_explain_modes_and_formats(index: int, mode: str | None, format_: str | None) -> None:
    tree = parse_one(FIXTURE_STATEMENTS[index])
    assert isinstance(tree, VistaExplain)
    assert isinstance(tree.this, TransferFeatures)
    assert (tree.args["mode"].name if tree.args.get("mode") else None) == mode
    assert (tree.args["format"].name if tree.args.get("format") else None) == format_


def test_catalog_statements() -> None:
    trees = parse("DESCRIBE CNN vgg16; describe cnn `ResNet50`; SHOW CNNS; show cnns")
    assert trees[0] == DescribeCnn(this=exp.to_identifier("vgg16"))
    assert trees[1] == DescribeCnn(this=exp.to_identifier("ResNet50", quoted=True))
    assert trees[2] == ShowCnns() == trees[3]


def test_several_statements_skip_empty_ones() -> None:
    trees = parse(";; SHOW CNNS ;;; -- comment\n DESCRIBE CNN x ; /* trailing */ ;")
    assert [type(tree) for tree in trees] == [ShowCnns, DescribeCnn]


def test_parse_one_wants_exactly_one() -> None:
    assert parse_one("SHOW CNNS;") == ShowCnns()
    with pytest.raises(VistaSyntaxError) as caught:
        parse_one("SHOW CNNS;\nDESCRIBE CNN vgg16")
    assert caught.value.errors[0]["description"] == "Expected exactly one statement, found 2"
    assert (caught.value.line, caught.value.col, caught.value.highlight) == (2, 1, "DESCRIBE")


# ---------------------------------------------------------------- positions


@pytest.mark.parametrize("text", FIXTURE_STATEMENTS, ids=range(len(FIXTURE_STATEMENTS)))
def test_every_node_has_a_position_matching_the_text(text: str) -> None:
    tree = parse_one(text)
    for node in tree.walk():
        where = origin(node)
        assert where is not None, repr(node)
        written = text[where.start : where.end + 1]
        assert where.line == text.count("\n", 0, where.start) + 1
        assert where.col == where.start - (text.rfind("\n", 0, where.start) + 1) + 1
        identifier = node.this if isinstance(node, exp.TableAlias) else node
        if isinstance(identifier, exp.Identifier):
            name = identifier.name
            assert written == (f"`{name.replace('`', '``')}`" if identifier.quoted else name)
        elif isinstance(node, exp.Var | exp.Boolean):
            assert written.upper() == node.sql(dialect="vista").upper()


def test_positions_of_the_paper_workload() -> None:
    sql = FIXTURE_STATEMENTS[0]
    tree = parse_one(sql)
    start = sql.index("vgg16")
    assert origin(tree.args["cnn"]) == Origin(line=2, col=12, start=start, end=start + 4)
    fc7 = tree.args["layers"][1]
    assert origin(fc7) == Origin(line=3, col=16, start=sql.index("fc7"), end=sql.index("fc7") + 2)
    label = origin(tree.args["label"])
    assert label is not None and (label.line, label.col) == (6, 9)
    clauses = tree.meta["clauses"]
    assert set(clauses) == {"cnn", "weights", "layers", "join", "train", "label", "validate"}
    layers = clauses["layers"]
    assert sql[layers["start"] : layers["end"] + 1] == "LAYERS (fc6, fc7, fc8)"
    on = origin(tree.args["on"])
    assert on is not None and sql[on.start : on.end + 1] == "i.id = f.id"


def test_origin_is_none_for_built_nodes() -> None:
    assert origin(exp.to_identifier("x")) is None


def test_positions_survive_copy_but_not_equality() -> None:
    first = parse_one("SHOW CNNS")
    second = parse_one("\n\n   show   cnns")
    assert first == second
    assert origin(second) == Origin(line=3, col=4, start=5, end=15)
    assert origin(second.copy()) == origin(second)


# ---------------------------------------------------------------- API and registration


def test_dialect_is_registered_with_sqlglot() -> None:
    tree = sqlglot.parse_one("SHOW CNNS", read="vista")
    assert tree == ShowCnns()
    assert tree.sql(dialect="vista") == "SHOW CNNS"
    assert sqlglot.Dialect.get_or_raise("vista").__class__ is Vista


def test_str_and_default_sql_write_vista_text() -> None:
    tree = parse_one(FIXTURE_STATEMENTS[1])
    assert str(tree) == tree.sql() == tree.sql(dialect="vista")
    assert str(parse_one("show cnns")) == "SHOW CNNS"
    assert str(parse_one("describe cnn `a b`")) == "DESCRIBE CNN `a b`"


def test_package_functions_delegate() -> None:
    assert vista_sql.parse("SHOW CNNS; SHOW CNNS") == [ShowCnns(), ShowCnns()]
    assert vista_sql.parse_one("DESCRIBE CNN alexnet") == DescribeCnn(
        this=exp.to_identifier("alexnet")
    )


def test_syntax_error_is_both_vista_and_sqlglot_error() -> None:
    with pytest.raises(VistaSyntaxError) as caught:
        sqlglot.parse_one("SELECT 1", read="vista")
    assert isinstance(caught.value, VistaError)
    assert isinstance(caught.value, ParseError)


def test_grammar_imports_neither_spark_nor_tensorflow() -> None:
    code = (
        "import sys, vista_sql; from vista_sql.grammar.dialect import parse; "
        "parse('SHOW CNNS'); "
        "assert not {'pyspark', 'tensorflow', 'keras'} & set(sys.modules), 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
