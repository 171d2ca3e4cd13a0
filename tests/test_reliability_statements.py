"""Statements: ``vista_sql.explain`` never raises anything but a VistaError or a sqlglot ParseError,
whatever the text (random statements, random mutations of valid ones, real and missing paths);
errors found only when the statement runs (unknown tables, missing columns, paths) point at the
text like the builder's do."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_support import statement, tiny_foods
from sqlglot.errors import ParseError
from strategies import KEYWORDS, PUNCTUATION, scripts, statements, transfer_statements

import vista_sql
from vista_sql.datasets.foods import FoodsDataset
from vista_sql.errors import SemanticError, VistaError

RUNS = re.compile(r"\banalyze\b", re.IGNORECASE)
"""EXPLAIN ANALYZE runs the statement: the properties here are about explaining only."""


def _fast(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return tiny_foods(tmp_path_factory.mktemp("statements") / "foods")


def explains_or_refuses(text: str) -> None:
    """``explain(text)`` gives text, or raises one of vista_sql's errors, nothing else."""
    with contextlib.suppress(VistaError, ParseError):
        assert isinstance(vista_sql.explain(text), str)


def with_real_paths(text: str, data: FoodsDataset, real: bool) -> str:
    """The strategies' placeholder paths swapped for the tiny dataset's (when ``real``)."""
    if not real:
        return text
    return text.replace("'data/images'", f"'{data.images_dir}'").replace(
        "'data/foods'", f"'{data.table_path}'"
    )


@_fast(120)
@given(text=statements().filter(lambda s: not RUNS.search(s)))
def test_random_statements_explain_or_raise_vista_errors(text: str) -> None:
    explains_or_refuses(text)


@_fast(40)
@given(text=scripts().filter(lambda s: not RUNS.search(s)))
def test_random_scripts_explain_or_raise_vista_errors(text: str) -> None:
    explains_or_refuses(text)


MUTATIONS = ("delete", "duplicate", "insert", "swap", "number", "truncate")
INSERTIONS = st.one_of(
    st.sampled_from([k for k in KEYWORDS if k != "ANALYZE"]),
    st.sampled_from(PUNCTUATION),
    st.sampled_from(["-1", "0", "1e309", "99999999999999999999", "0.0", "''", "`x`", "NULL"]),
)


def mutate(text: str, data: st.DataObject) -> str:
    """One random edit: a slice deleted or duplicated, a token inserted, two words swapped, a
    number replaced by an extreme one, or the text cut short."""
    kind = data.draw(st.sampled_from(MUTATIONS))
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 12)))
    if kind == "delete":
        return text[:start] + text[end:]
    if kind == "duplicate":
        return text[:end] + text[start:]
    if kind == "insert":
        return f"{text[:start]} {data.draw(INSERTIONS)} {text[start:]}"
    if kind == "swap":
        words = text.split(" ")
        i = data.draw(st.integers(0, len(words) - 1))
        j = data.draw(st.integers(0, len(words) - 1))
        words[i], words[j] = words[j], words[i]
        return " ".join(words)
    if kind == "number":
        extreme = data.draw(st.sampled_from(["0", "-5", "1e300", "2147483648", "0.0000001"]))
        return re.sub(r"\d+(\.\d+)?", extreme, text, count=1)
    return text[:start]


@_fast(30)
@given(
    text=transfer_statements(valid=True),
    real=st.booleans(),
    explain=st.sampled_from(["", "EXPLAIN ", "EXPLAIN COST ", "EXPLAIN LOGICAL FORMAT JSON "]),
    data=st.data(),
)
def test_mutated_valid_statements_explain_or_raise_vista_errors(
    foods: FoodsDataset, text: str, real: bool, explain: str, data: st.DataObject
) -> None:
    """Near misses of valid statements (over the tiny dataset's real paths, or missing ones).

    Few examples: explaining a statement over real paths runs the whole cost model (about a
    second for several layers of VGG16 on this 2-core machine)."""
    original = explain + with_real_paths(text, foods, real)
    explains_or_refuses(original)
    mutated = original
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = mutate(mutated, data)
    if not RUNS.search(mutated):
        explains_or_refuses(mutated)


@pytest.mark.parametrize("missing", ["images", "table"])
def test_explaining_missing_paths_is_a_semantic_error_pointing_at_them(
    foods: FoodsDataset, tmp_path: Path, missing: str
) -> None:
    images = tmp_path / "nowhere" if missing == "images" else foods.images_dir
    table = tmp_path / "nowhere.parquet" if missing == "table" else foods.table_path
    with pytest.raises(SemanticError) as raised:
        vista_sql.explain(statement(images, table))
    path = images if missing == "images" else table
    assert raised.value.highlight == f"'{path}'"
    assert str(path) in (raised.value.description or "")


def test_explaining_an_unreadable_table_is_a_vista_error(
    foods: FoodsDataset, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not a parquet file PAR1")
    with pytest.raises(VistaError) as raised:
        vista_sql.explain(statement(foods.images_dir, broken))
    assert "cannot read" in (raised.value.description or "")
    assert raised.value.highlight == f"'{broken}'"


# --- errors found when the statement runs point at the text ---------------------------------------


def runtime_error(spark: Any, sql: str, tables: dict[str, Any] | None = None) -> VistaError:
    with pytest.raises(VistaError) as raised:
        vista_sql.execute(sql, spark=spark, tables=tables, progress=False)
    return raised.value


@pytest.mark.spark
def test_unknown_table_names_point_at_the_name(spark: Any, foods: FoodsDataset) -> None:
    error = runtime_error(spark, statement(foods.images_dir, "fods"), {"foods": "x", "img": "y"})
    assert isinstance(error, SemanticError)
    assert error.highlight == "fods"
    assert "unknown table fods; did you mean foods?" in (error.description or "")


@pytest.mark.spark
def test_missing_columns_point_at_their_clause(spark: Any, foods: FoodsDataset) -> None:
    table = spark.read.parquet(str(foods.table_path))
    images = spark.createDataFrame([(0, b"")], "id int, picture binary")
    cases = [
        # (statement edit, tables, highlighted text, words of the description)
        (("ON i.id = f.id", "ON i.id = f.ident"), {}, "i.id = f.ident", "no column ident"),
        (("LABEL healthy", "LABEL healty"), {}, "healty", "did you mean healthy?"),
        (("TRAIN", "FEATURES (fat, sugar) TRAIN"), {}, "FEATURES (fat, sugar)", "no column sugar"),
        (("AS i", "(photo) AS i"), {"images": images}, "photo", "valid: id, picture"),
    ]
    for (old, new), image_table, highlight, words in cases:
        images_source = "images" if image_table else foods.images_dir
        sql = statement(images_source, "foods").replace(old, new)
        error = runtime_error(spark, sql, {"foods": table, **image_table})
        assert isinstance(error, SemanticError), sql
        assert error.highlight == highlight, sql
        assert words in (error.description or ""), sql
