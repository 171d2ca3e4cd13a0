"""Spark SQL subquery sources and INTO TABLE: grammar, round trip and the checked statement."""

from __future__ import annotations

import pytest
from sqlglot import exp

from vista_sql import parse_one
from vista_sql.errors import VistaSyntaxError
from vista_sql.grammar.expressions import TransferFeatures
from vista_sql.logical.builder import build
from vista_sql.logical.plan import SourceRef

SUBQUERIES = (
    "TRANSFER FEATURES OF (SELECT id, content FROM images_table) AS i (content)"
    " FROM CNN vgg16 LAYERS (fc7)"
    " JOIN (SELECT id, calories, healthy FROM foods WHERE calories < 500) AS f ON i.id = f.id"
    " TRAIN LOGREG LABEL healthy INTO TABLE feats"
)


def test_subquery_sources_tree() -> None:
    tree = parse_one(SUBQUERIES)
    assert isinstance(tree, TransferFeatures)
    images, table = tree.this, tree.args["join"]
    assert isinstance(images, exp.Subquery) and isinstance(table, exp.Subquery)
    assert images.this.sql(dialect="spark") == "SELECT id, content FROM images_table"
    where = table.this.args["where"]
    assert where.sql(dialect="spark") == "WHERE calories < 500"
    assert tree.args["column"].name == "content"
    assert tree.args["alias"].name == "i"
    assert tree.args["into_table"] == exp.to_table("feats")


@pytest.mark.parametrize("pretty", [False, True])
def test_subquery_and_into_table_round_trip(pretty: bool) -> None:
    tree = parse_one(SUBQUERIES)
    text = tree.sql(dialect="vista", pretty=pretty)
    assert parse_one(text) == tree
    assert parse_one(text).sql(dialect="vista", pretty=pretty) == text


def test_image_column_before_the_alias_is_the_same_tree() -> None:
    after = parse_one(SUBQUERIES)
    before = parse_one(SUBQUERIES.replace("AS i (content)", "(content) AS i"))
    assert before == after


def test_subquery_positions_point_at_the_parentheses() -> None:
    tree = parse_one(SUBQUERIES)
    start = tree.this.meta["start"]
    end = tree.this.meta["end"]
    assert SUBQUERIES[start : end + 1] == "(SELECT id, content FROM images_table)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TRANSFER FEATURES OF (1) AS i", "Expected SELECT or WITH after '('"),
        ("TRANSFER FEATURES OF (SELECT 1 AS i", "Expected ) after the query"),
        (
            "TRANSFER FEATURES OF i FROM CNN vgg16 LAYERS (fc7) JOIN t USING (id)"
            " TRAIN logreg LABEL y INTO TABLE",
            "Expected a table name after INTO TABLE",
        ),
        (
            "TRANSFER FEATURES OF i FROM CNN vgg16 LAYERS (fc7) JOIN t USING (id)"
            " TRAIN logreg LABEL y INTO TABLE t WITH (memory = '2g')",
            "Expected ; or the end of the input",
        ),
    ],
)
def test_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(VistaSyntaxError) as caught:
        parse_one(text)
    assert caught.value.errors[0]["description"].startswith(message)


def test_checked_statement_holds_queries_and_the_table() -> None:
    query = build(parse_one(SUBQUERIES), SUBQUERIES)
    assert query.image_source == SourceRef("query", "SELECT id, content FROM images_table")
    assert query.table_source == SourceRef(
        "query", "SELECT id, calories, healthy FROM foods WHERE calories < 500"
    )
    assert query.image_column == "content"
    assert (query.image_alias, query.table_alias) == ("i", "f")
    assert query.into_table == "feats" and query.into is None
    assert SUBQUERIES[query.origins["into"].start :].startswith("feats")


def test_unaliased_queries_are_called_images_and_table() -> None:
    text = (
        "TRANSFER FEATURES OF (SELECT * FROM pics) FROM CNN vgg16 LAYERS (fc7)"
        " JOIN (SELECT * FROM foods) USING (id) TRAIN logreg LABEL y INTO TABLE db.out"
    )
    query = build(parse_one(text), text)
    assert (query.image_alias, query.table_alias) == ("images", "table")
    assert query.into_table == "db.out"
