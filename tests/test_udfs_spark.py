"""Inference inside Spark equals the in-process path, over 3 partitions, bad rows included."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from udfs_images import jpegs

from vista_sql.errors import SemanticError
from vista_sql.logical.plan import LayerOut, WeightsSpec
from vista_sql.udfs.columns import ERROR_COLUMN, output_column
from vista_sql.udfs.inference import InferenceSpec, infer_local
from vista_sql.udfs.spark_infer import infer

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

pytestmark = [pytest.mark.spark, pytest.mark.tf]

WEIGHTS = WeightsSpec("random", seed=21)
TOP = tuple(LayerOut(name, "features") for name in ("fc6", "fc7", "fc8"))
PARTITIONS = 3


def max_relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def images() -> list[bytes | None]:
    good = jpegs(6, seed=70)
    return [*good[:3], b"this is not a picture", *good[3:], None]


@pytest.fixture(scope="module")
def frame(spark: SparkSession, images: list[bytes | None]) -> DataFrame:
    from pyspark.sql.types import BinaryType, IntegerType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("id", IntegerType()),
            StructField("image", BinaryType()),
            StructField("name", StringType()),
        ]
    )
    rows = [(i, data, f"image {i}") for i, data in enumerate(images)]
    return spark.createDataFrame(rows, schema).repartition(PARTITIONS, "id")


def collect(df: DataFrame, columns: tuple[str, ...]) -> dict[str, np.ndarray | list[object]]:
    rows = sorted(df.collect(), key=lambda row: row["id"])
    found: dict[str, np.ndarray | list[object]] = {
        "id": [row["id"] for row in rows],
        "name": [row["name"] for row in rows],
        ERROR_COLUMN: [row[ERROR_COLUMN] for row in rows],
    }
    for column in columns:
        found[column] = [row[column] for row in rows]
    return found


def as_matrix(values: list[object], size: int) -> np.ndarray:
    return np.array([np.full(size, np.nan) if v is None else v for v in values], np.float32)


def test_spark_path_equals_in_process_path(frame: DataFrame, images: list[bytes | None]) -> None:
    outputs = (*TOP, LayerOut("conv5", "resume"))
    spec = InferenceSpec("alexnet", WEIGHTS, None, outputs)
    assert frame.rdd.getNumPartitions() == PARTITIONS
    result = infer(frame, spec, input_column="image", passthrough=["id", "name"], batch_size=2)
    assert result.columns == ["id", "name", *spec.columns, ERROR_COLUMN]
    assert dict(result.dtypes)["f_fc6"] == "array<float>"
    found = collect(result, spec.columns)
    assert found["id"] == list(range(len(images)))
    assert found["name"] == [f"image {i}" for i in range(len(images))]
    local = infer_local(images, spec, batch_size=4)
    assert found[ERROR_COLUMN][:3] == [None] * 3
    assert "not an image" in str(found[ERROR_COLUMN][3])
    assert found[ERROR_COLUMN][-1] == "image is null"
    assert found[ERROR_COLUMN] == list(local[ERROR_COLUMN])
    for out in outputs:
        column = output_column(out)
        ours = found[column]
        assert isinstance(ours, list)
        assert ours[3] is None and ours[-1] is None
        matrix = as_matrix(ours, spec.output_size(out))
        good = [i for i, error in enumerate(found[ERROR_COLUMN]) if error is None]
        assert max_relative_error(matrix[good], local[column][good]) < 1e-5, column


def test_resuming_in_spark_from_a_stored_column(frame: DataFrame) -> None:
    from pyspark.sql import functions as F

    store = InferenceSpec("alexnet", WEIGHTS, None, (LayerOut("conv5", "resume"),))
    stored = infer(frame, store, input_column="image", passthrough=["id", "name"], batch_size=3)
    stored = stored.filter(F.col(ERROR_COLUMN).isNull()).drop(ERROR_COLUMN)
    resume = InferenceSpec("alexnet", WEIGHTS, "conv5", TOP)
    result = infer(
        stored, resume, input_column="resume_conv5", passthrough=["id", "name"], batch_size=2
    )
    found = collect(result, resume.columns)
    direct = collect(
        infer(
            frame,
            InferenceSpec("alexnet", WEIGHTS, None, TOP),
            input_column="image",
            passthrough=["id", "name"],
            batch_size=4,
        ),
        resume.columns,
    )
    good = [i for i, error in enumerate(direct[ERROR_COLUMN]) if error is None]
    assert found["id"] == [direct["id"][i] for i in good]
    for out in TOP:
        column = output_column(out)
        ours = as_matrix(found[column], resume.output_size(out))  # type: ignore[arg-type]
        theirs = as_matrix(direct[column], resume.output_size(out))[good]  # type: ignore[arg-type]
        assert max_relative_error(ours, theirs) < 1e-5, column


def test_weights_file_is_shipped_to_executors(
    frame: DataFrame, images: list[bytes | None], tmp_path: Path
) -> None:
    from vista_sql.udfs.models import build_model

    path = tmp_path / "alexnet.weights.h5"
    build_model("alexnet", WEIGHTS).save_weights(path)
    spec = InferenceSpec("alexnet", WeightsSpec("file", path=str(path)), None, TOP[-1:])
    result = infer(frame, spec, input_column="image", passthrough=["id"], batch_size=4)
    rows = sorted(result.collect(), key=lambda row: row["id"])
    reference = infer_local(images, InferenceSpec("alexnet", WEIGHTS, None, TOP[-1:]))["f_fc8"]
    for row in rows:
        if row[ERROR_COLUMN] is None:
            ours = np.array(row["f_fc8"], np.float32)
            assert max_relative_error(ours, reference[row["id"]]) < 1e-5


def test_image_paths_are_read_on_the_worker(spark: SparkSession, tmp_path: Path) -> None:
    good = jpegs(2, seed=80)
    paths = []
    for i, data in enumerate(good):
        path = tmp_path / f"{i}.jpg"
        path.write_bytes(data)
        paths.append(str(path))
    paths.append(str(tmp_path / "missing.jpg"))
    df = spark.createDataFrame([(i, p) for i, p in enumerate(paths)], "id int, path string")
    spec = InferenceSpec("alexnet", WEIGHTS, None, TOP[-1:])
    rows = sorted(
        infer(df, spec, input_column="path", passthrough=["id"], batch_size=2).collect(),
        key=lambda row: row["id"],
    )
    local = infer_local(good, spec)["f_fc8"]
    for i in range(2):
        assert max_relative_error(np.array(rows[i]["f_fc8"], np.float32), local[i]) < 1e-5
    assert rows[2]["f_fc8"] is None
    assert rows[2][ERROR_COLUMN] == f"cannot read image file {paths[2]}: No such file or directory"


def test_wrong_input_column_type_is_a_semantic_error(frame: DataFrame) -> None:
    spec = InferenceSpec("alexnet", WEIGHTS, "conv5", TOP)
    with pytest.raises(SemanticError, match="input column 'image' is binary"):
        infer(frame, spec, input_column="image", passthrough=["id"], batch_size=2)
    with pytest.raises(SemanticError, match="no column 'picture'"):
        infer(frame, spec, input_column="picture", passthrough=["id"], batch_size=2)
