"""Messy structured tables and keys through ``vista_sql.execute``: every problem that would make the
join or the training wrong fails before inference, naming the ids and pointing at the text; keys on
one side only are counted; string labels and keys of two types work."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from reliability_support import ROWS, statement, tiny_foods

import vista_sql
from vista_sql.catalog import current
from vista_sql.datasets.foods import FoodsDataset
from vista_sql.errors import DataError, SemanticError, VistaError
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical.builder import build
from vista_sql.logical.query import TransferQuery
from vista_sql.physical.run import prepare
from vista_sql.physical.sources import KEY

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

pytestmark = [pytest.mark.spark]


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return tiny_foods(tmp_path_factory.mktemp("tables") / "foods")


@pytest.fixture(scope="module")
def table(spark: Any, foods: FoodsDataset) -> DataFrame:
    return spark.read.parquet(str(foods.table_path))


@pytest.fixture(scope="module")
def images(spark: Any, foods: FoodsDataset) -> DataFrame:
    """The images as a table (id int, image binary), as a user's DataFrame would hold them."""
    rows = [(row, (foods.images_dir / f"{row}.jpg").read_bytes()) for row in range(ROWS)]
    return spark.createDataFrame(rows, "id int, image binary")


def fails(spark: Any, sql: str, **tables: Any) -> VistaError:
    with pytest.raises(VistaError) as raised:
        vista_sql.execute(sql, spark=spark, tables=tables, progress=False)
    return raised.value


def where(row_ids: tuple[int, ...], column: str, value: Any) -> Any:
    """``column`` set to ``value`` on the rows whose id is in ``row_ids``."""
    from pyspark.sql import functions as F

    return F.when(F.col("id").isin(list(row_ids)), F.lit(value)).otherwise(F.col(column))


def test_duplicate_ids_in_the_table_are_named(
    spark: Any, foods: FoodsDataset, table: DataFrame
) -> None:
    doubled = table.unionByName(table.filter("id in (3, 5)"))
    error = fails(spark, statement(foods.images_dir, "foods"), foods=doubled)
    assert isinstance(error, DataError)
    assert (error.ids, error.count) == ((3, 5), 2)
    assert "duplicated ids" in (error.description or "")
    assert error.highlight == "foods"


def test_null_ids_are_refused(spark: Any, foods: FoodsDataset, table: DataFrame) -> None:
    error = fails(
        spark,
        statement(foods.images_dir, "foods"),
        foods=table.withColumn("id", where((4,), "id", None)),
    )
    assert isinstance(error, DataError)
    assert error.count == 1
    assert "null id" in (error.description or "")


def test_null_and_nan_structured_values_are_an_error_naming_ids_and_columns(
    spark: Any, foods: FoodsDataset, table: DataFrame
) -> None:
    holes = table.withColumn("fat", where((2,), "fat", float("nan"))).withColumn(
        "salt", where((7,), "salt", None)
    )
    error = fails(spark, statement(foods.images_dir, "foods"), foods=holes)
    assert isinstance(error, DataError)
    assert (error.ids, error.count) == ((2, 7), 2)
    assert "null or NaN structured features (in fat, salt)" in (error.description or "")
    assert "does not impute" in (error.description or "")
    assert error.highlight == "foods"

    listed = statement(foods.images_dir, "foods").replace(" TRAIN", " FEATURES (fat, salt) TRAIN")
    error = fails(spark, listed, foods=holes)
    assert error.highlight == "FEATURES (fat, salt)"


@pytest.mark.parametrize("missing", [None, float("nan")], ids=["null", "NaN"])
def test_rows_without_a_label_are_named(
    spark: Any, foods: FoodsDataset, table: DataFrame, missing: float | None
) -> None:
    labels = table.withColumn("healthy", table["healthy"].cast("double"))
    labels = labels.withColumn("healthy", where((6, 9), "healthy", missing))
    error = fails(spark, statement(foods.images_dir, "foods"), foods=labels)
    assert isinstance(error, DataError)
    assert (error.ids, error.count) == ((6, 9), 2)
    assert "no label healthy" in (error.description or "")
    assert error.highlight == "healthy"


def test_a_label_with_one_class_is_refused(
    spark: Any, foods: FoodsDataset, table: DataFrame
) -> None:
    from pyspark.sql import functions as F

    error = fails(
        spark,
        statement(foods.images_dir, "foods"),
        foods=table.withColumn("healthy", F.lit(1)),
    )
    assert isinstance(error, DataError)
    assert "single class (1)" in (error.description or "")
    assert error.highlight == "healthy"


def test_features_must_name_numeric_columns(
    spark: Any, foods: FoodsDataset, table: DataFrame
) -> None:
    from pyspark.sql import functions as F

    named = table.withColumn("category", F.lit("salad"))
    sql = statement(foods.images_dir, "foods").replace(" TRAIN", " FEATURES (fat, category) TRAIN")
    error = fails(spark, sql, foods=named)
    assert isinstance(error, SemanticError)
    assert "FEATURES column category is not numeric" in (error.description or "")
    assert error.highlight == "FEATURES (fat, category)"

    error = fails(spark, sql.replace("category", "fatt"), foods=named)
    assert "no column fatt; did you mean fat?" in (error.description or "")


def test_an_empty_table_is_a_data_error(spark: Any, foods: FoodsDataset, table: DataFrame) -> None:
    error = fails(spark, statement(foods.images_dir, "foods"), foods=table.limit(0))
    assert isinstance(error, DataError)
    assert error.description == "the structured source is empty"
    assert error.highlight == "foods"


def test_no_key_in_common_is_a_data_error_pointing_at_the_join(
    spark: Any, foods: FoodsDataset, table: DataFrame
) -> None:
    shifted = table.withColumn("id", table["id"] + 1000)
    error = fails(spark, statement(foods.images_dir, "foods"), foods=shifted)
    assert isinstance(error, DataError)
    assert "no image id matches" in (error.description or "")
    assert error.highlight == "i.id = f.id"


def query_of(sql: str) -> TransferQuery:
    built = build(parse_one(sql), sql, current())
    assert isinstance(built, TransferQuery)
    return built


def test_file_names_are_read_as_the_table_keys_type(
    spark: Any, foods: FoodsDataset, table: DataFrame
) -> None:
    strings = table.withColumn("id", table["id"].cast("string"))
    sql = statement(foods.images_dir, "foods")
    prepared = prepare(spark, query_of(sql), {"foods": strings})
    assert dict(prepared.images.dtypes)[KEY] == "string"
    assert prepared.unmatched == {"images": 0, "table": 0}


def test_keys_that_no_cast_keeps_are_an_error_naming_them(
    spark: Any, foods: FoodsDataset, images: DataFrame, table: DataFrame
) -> None:
    halves = images.withColumn("id", images["id"] + 0.5)
    huge = table.withColumn("id", table["id"] + 2**60 + 1)
    sql = statement("images", "foods")
    with pytest.raises(DataError) as raised:
        prepare(spark, query_of(sql), {"images": halves, "foods": huge})
    assert "different types, double (images) and bigint (table)" in str(raised.value)
    assert "0.5, 1.5" in str(raised.value)
    assert raised.value.highlight == "i.id = f.id"


@pytest.mark.tf
@pytest.mark.slow
def test_string_labels_and_keys_of_two_types_run_end_to_end(
    spark: Any, images: DataFrame, table: DataFrame, tmp_path: Path
) -> None:
    """Images keyed by int, the table by string with string labels and one row without an image;
    images 10 and 11 have no row: both are counted, and INTO writes the original labels."""
    from pyspark.sql import functions as F

    named = (
        table.filter("id < 10")
        .withColumn("id", F.col("id").cast("string"))
        .withColumn("healthy", F.when(F.col("healthy") == 1, "healthy").otherwise("unhealthy"))
    )
    extra = named.limit(1).withColumn("id", F.lit("99"))
    target = tmp_path / "out"
    result = vista_sql.execute(
        statement("images", "foods", f"INTO '{target}'"),
        spark=spark,
        tables={"images": images, "foods": named.unionByName(extra)},
        progress=False,
    )
    assert result.unmatched == {"images": 2, "table": 1}
    row = result.to_pandas().iloc[0]
    assert row.train_rows + row.validation_rows == 10
    written = spark.read.parquet(str(target / "fc8" / "features.parquet")).collect()
    expected = {r["id"]: r["healthy"] for r in named.collect()}
    assert {r["id"]: r["label"] for r in written} == expected
    assert set(expected.values()) == {"healthy", "unhealthy"}
    report = json.loads((target / "report.json").read_text())
    assert report["unmatched"] == {"images": 2, "table": 1}
