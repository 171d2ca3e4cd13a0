"""Checks and preparation of the two sources before any inference runs.

Everything here reads keys, labels and structured columns only (never image pixels), so bad input
is refused in seconds, before the expensive part: duplicate keys, null or non-numeric features, null
labels, a label with one class, keys of incompatible types, empty inputs. Keys present on one side
only are counted (the join drops them; the result reports how many); when no key matches at all
the statement fails, since there would be nothing to train on.

Join keys of different types are made one type when no id changes: the image side's key is cast
to the structured side's type if every id survives the round trip (the string '7' to the integer
7, an int to a bigint), else the structured key to the image side's type; if neither is lossless
(the string 'abc' against a double 1.5, say) the statement fails naming the ids. Image files whose
name is not an id of the structured key's type follow ``on_bad_image``: 'fail' names them,
'skip' reports them in ``unnamed_files``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vista_sql.errors import DataError, SemanticError, VistaError, did_you_mean
from vista_sql.logical.query import TransferQuery
from vista_sql.physical.sources import KEY, ImageSource
from vista_sql.physical.train import LABEL

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

STRUCT = "_vista_struct"
SHOWN_IDS = 5
"""How many offending ids an error names."""


@dataclass(frozen=True)
class PreparedTable:
    """The structured side as (KEY, LABEL, STRUCT: array<double>), and the label's meaning."""

    frame: DataFrame
    features: tuple[str, ...]
    labels: tuple[Any, ...]
    """Original label values; LABEL = i means labels[i]."""

    @property
    def n_classes(self) -> int:
        return len(self.labels)


def check_weights(query: TransferQuery) -> None:
    """A WEIGHTS '<file>' that is missing or not a weights file fails before any data is read.

    Whether the file's variables fit the CNN is checked where they load (the Python workers);
    ``physical.worker_errors`` brings that error back as a WeightsError too.
    """
    if query.weights.kind != "file":
        return
    from vista_sql.udfs.weights import WeightsError, weights_file

    try:
        weights_file(query.cnn, query.weights)
    except WeightsError as error:
        raise WeightsError.at(str(error), query.sql, query.origins.get("weights")) from error


def _error(query: TransferQuery, clause: str, message: str, cls: type[VistaError]) -> VistaError:
    return cls.at(message, query.sql, query.origins.get(clause))


def _ids(rows: list[Any]) -> str:
    return ", ".join(repr(r[0]) for r in rows[:SHOWN_IDS])


def numeric_columns(frame: DataFrame) -> list[str]:
    from pyspark.sql.types import NumericType

    return [f.name for f in frame.schema.fields if isinstance(f.dataType, NumericType)]


def prepare_table(table: DataFrame, query: TransferQuery) -> PreparedTable:
    """Resolve FEATURES and LABEL, check them, index the label, gather the structured values."""
    from pyspark.sql import functions as F

    columns = {c.lower(): c for c in table.columns}
    label = columns.get(query.label.lower())
    if label is None or label == KEY:
        raise _error(
            query,
            "label",
            f"the structured source has no column {query.label}; "
            f"{did_you_mean(query.label, [c for c in table.columns if c != KEY])}",
            SemanticError,
        )
    numeric = [c for c in numeric_columns(table) if c not in (KEY, label)]
    if query.features is None:
        features = numeric
    else:
        features = []
        for name in query.features:
            column = columns.get(name.lower())
            if column is None or column == KEY:
                raise _error(
                    query,
                    "features",
                    f"the structured source has no column {name}; {did_you_mean(name, numeric)}",
                    SemanticError,
                )
            if column not in numeric:
                raise _error(
                    query,
                    "features",
                    f"FEATURES column {column} is not numeric; numeric columns: "
                    f"{', '.join(numeric) or '(none)'}",
                    SemanticError,
                )
            features.append(column)

    no_label = F.col(label).isNull()
    if dict(table.dtypes)[label] in ("float", "double"):
        no_label = no_label | F.isnan(F.col(label))
    # The per-column expressions are SQL text, parsed once by Spark: built as Column objects they
    # cost several Py4J round trips each, seconds for a table of a few hundred columns.
    gaps = [f"({sql_name(c)} IS NULL OR isnan(CAST({sql_name(c)} AS DOUBLE)))" for c in features]
    # One flat expression, not a chain of ORs: a chain over a wide table nests one level per
    # column, deeper than Spark Connect's protobuf decoder accepts (~100 levels).
    bad = F.expr(f"array_contains(array({', '.join(['false', *gaps])}), true)")
    gap_columns = ", ".join(f"max(CAST({gap} AS INT))" for gap in gaps)
    # One job profiles the whole table; the ids behind a problem are fetched only when there is
    # one (Spark jobs cost a fixed ~0.1-0.3 s each, which dominates small inputs).
    profile = table.select(
        *_key_aggregates(),
        F.sum(no_label.cast("int")),
        F.sum(bad.cast("int")),
        F.collect_set(F.when(~no_label, F.col(label))),
        F.expr(f"array({gap_columns})"),
    ).collect()[0]
    rows, null_keys, distinct_keys, no_labels, gap_rows, label_values = profile[:6]
    if rows == 0:
        raise _error(query, "table", "the structured source is empty", DataError)
    _check_keys(
        table.select(KEY), rows, null_keys or 0, distinct_keys, "structured source", query, "table"
    )
    if no_labels:
        null_labels = table.filter(no_label).select(KEY).orderBy(KEY).limit(SHOWN_IDS).collect()
        raise _data_error(
            query,
            "label",
            f"{no_labels} rows have no label {label} (null or NaN): ids {_ids(null_labels)}; give "
            "every row a label or filter them out",
            null_labels,
            no_labels,
        )
    if gap_rows:
        bad_rows = table.filter(bad).select(KEY).orderBy(KEY).limit(SHOWN_IDS).collect()
        columns_with_gaps = [c for c, gap in zip(features, profile[6], strict=True) if gap]
        raise _data_error(
            query,
            "features" if query.features is not None else "table",
            f"{gap_rows} rows have null or NaN structured features (in "
            f"{', '.join(columns_with_gaps[:SHOWN_IDS])}): ids {_ids(bad_rows)}; vista_sql "
            "does not impute: fill or drop them, or leave those columns out of FEATURES",
            bad_rows,
            gap_rows,
        )

    values = sorted(label_values, key=lambda v: (str(type(v)), v))
    if len(values) < 2:
        raise _error(
            query,
            "label",
            f"the label {label} has a single class ({values[0]!r}): nothing to learn",
            DataError,
        )
    mapping = F.create_map(*[x for i, v in enumerate(values) for x in (F.lit(v), F.lit(float(i)))])
    indexed = table.select(KEY, mapping[F.col(label)].alias(LABEL), *features)
    structured = F.expr(f"CAST(array({', '.join(map(sql_name, features))}) AS array<double>)")
    return PreparedTable(
        frame=indexed.select(KEY, LABEL, structured.alias(STRUCT)),
        features=tuple(features),
        labels=tuple(values),
    )


def sql_name(identifier: str) -> str:
    """One identifier (a column, a table, a database) backquoted for Spark SQL text."""
    return "`" + identifier.replace("`", "``") + "`"


def _data_error(
    query: TransferQuery, clause: str, message: str, rows: list[Any], count: int
) -> DataError:
    """A DataError pointing at ``clause`` that names the first offending ids."""
    base = DataError.at(message, query.sql, query.origins.get(clause))
    return DataError(str(base), base.errors, ids=tuple(r[0] for r in rows), count=count)


def _check_keys(
    keys: DataFrame,
    rows: int,
    nulls: int,
    distinct: int,
    side: str,
    query: TransferQuery,
    clause: str,
) -> None:
    """Null and duplicated keys fail: the join would drop the one and multiply the other.

    ``rows``, ``nulls`` and ``distinct`` come from the side's profile; the duplicated ids are
    fetched only when there are some.
    """
    from pyspark.sql import functions as F

    if nulls:
        raise _data_error(
            query,
            clause,
            f"the {side} has {nulls} rows with a null id; give every row an id",
            [],
            nulls,
        )
    if distinct < rows:
        duplicated = keys.groupBy(KEY).count().filter(F.col("count") > 1)
        found = duplicated.orderBy(KEY).limit(SHOWN_IDS).collect()
        count = duplicated.count()
        raise _data_error(
            query,
            clause,
            f"the {side} has {count} duplicated ids (first: {_ids(found)}); the join would "
            "multiply rows: make the key unique",
            found,
            count,
        )


def _key_aggregates() -> list[Column]:
    """Rows, null keys and distinct keys of a side: the key part of its one-job profile."""
    from pyspark.sql import functions as F

    return [
        F.count(F.lit(1)),
        F.sum(F.col(KEY).isNull().cast("int")),
        F.count_distinct(F.col(KEY)),
    ]


def _key_profile(keys: DataFrame) -> tuple[int, int, int]:
    """(rows, null keys, distinct keys) of a side, in one job."""
    profile = keys.select(*_key_aggregates()).collect()[0]
    return int(profile[0]), int(profile[1] or 0), int(profile[2])


def check_images(source: ImageSource, query: TransferQuery) -> None:
    """The image side: not empty, every file named by an id (or skipped), keys unique."""
    if source.unnamed_files and query.options.on_bad_image == "fail":
        shown = ", ".join(repr(p) for p in source.unnamed_files[:SHOWN_IDS])
        count = len(source.unnamed_files)
        base = DataError.at(
            f"{count} image files are not named by an id of the structured key's type: "
            f"{shown}; rename or remove them, or add WITH (on_bad_image = 'skip') to skip and "
            "count them",
            query.sql,
            query.origins.get("images"),
        )
        raise DataError(str(base), base.errors, ids=source.unnamed_files[:SHOWN_IDS], count=count)
    keys = source.frame.select(KEY)
    rows, nulls, distinct = _key_profile(keys)
    if rows == 0:
        raise _error(query, "images", "the image source has no images", DataError)
    _check_keys(keys, rows, nulls, distinct, "image source", query, "images")


def align_keys(
    images: DataFrame, table: DataFrame, query: TransferQuery
) -> tuple[DataFrame, DataFrame]:
    """Both sides with keys of one type, cast only where no id changes (see the module doc)."""
    image_type, table_type = _key_type(images), _key_type(table)
    if image_type == table_type:
        return images, table
    if _lossless(images, table_type):
        return _cast_key(images, table_type), table
    if _lossless(table, image_type):
        return images, _cast_key(table, image_type)
    shown = _ids(_changed(images, table_type))
    base = DataError.at(
        f"the join keys have different types, {image_type} (images) and {table_type} (table), "
        f"and neither side's ids can be cast without changing them: image ids {shown} are not "
        f"{table_type} values; make both keys one type",
        query.sql,
        query.origins.get("on"),
    )
    raise DataError(str(base), base.errors)


def _key_type(frame: DataFrame) -> str:
    return next(f.dataType.simpleString() for f in frame.schema.fields if f.name == KEY)


def _round_trip(frame: DataFrame, target: str) -> Any:
    """Whether a row's key survives a cast to ``target`` and back (nulls count as surviving)."""
    from pyspark.sql import functions as F

    key = F.col(KEY)
    back = key.try_cast(target).try_cast(_key_type(frame))
    return key.isNull() | (back.isNotNull() & (back == key))


def _changed(frame: DataFrame, target: str) -> list[Any]:
    return (
        frame.filter(~_round_trip(frame, target)).select(KEY).orderBy(KEY).limit(SHOWN_IDS)
    ).collect()


def _lossless(frame: DataFrame, target: str) -> bool:
    return frame.filter(~_round_trip(frame, target)).limit(1).count() == 0


def _cast_key(frame: DataFrame, target: str) -> DataFrame:
    from pyspark.sql import functions as F

    return frame.withColumn(KEY, F.col(KEY).cast(target))


def unmatched(
    images: DataFrame, table: DataFrame, query: TransferQuery | None = None
) -> dict[str, int]:
    """Keys on one side only: {"images": images without a row, "table": rows without an image}.

    With ``query``, no key in common at all is a DataError (pointing at the ON clause).
    """
    from pyspark.sql import functions as F

    image_keys = images.select(KEY)
    table_keys = table.select(KEY)
    sides = image_keys.withColumn("_image", F.lit(1)).join(
        table_keys.withColumn("_table", F.lit(1)), KEY, "full_outer"
    )
    only_images, only_table, both = sides.select(
        F.sum(F.col("_table").isNull().cast("int")),
        F.sum(F.col("_image").isNull().cast("int")),
        F.sum((F.col("_image").isNotNull() & F.col("_table").isNotNull()).cast("int")),
    ).collect()[0]
    counts = {"images": int(only_images or 0), "table": int(only_table or 0)}
    if query is not None and not both:
        image_ids = image_keys.orderBy(KEY).limit(3).collect()
        table_ids = table_keys.orderBy(KEY).limit(3).collect()
        raise _error(
            query,
            "on",
            f"no image id matches a row of the structured source: image ids {_ids(image_ids)} "
            f"..., table ids {_ids(table_ids)} ...",
            DataError,
        )
    return counts


def key_type(table: DataFrame) -> str:
    """The Spark SQL type of the structured key, used to cast ids taken from file names."""
    return next(f.dataType.simpleString() for f in table.schema.fields if f.name == KEY)
