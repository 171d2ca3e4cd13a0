"""Checks and preparation of the two sources before any inference runs.

Everything here reads keys, labels and structured columns only (never image pixels), so bad input
is refused in seconds, before the expensive part: duplicate keys, null or non-numeric features, null
labels, a label with one class, keys of incompatible types, empty inputs. Keys present on one side
only are counted (the join drops them; the result reports how many).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vista_sql.errors import DataError, SemanticError, VistaError, did_you_mean
from vista_sql.logical.query import TransferQuery
from vista_sql.physical.sources import KEY
from vista_sql.physical.train import LABEL

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

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

    if table.limit(1).count() == 0:
        raise _error(query, "table", "the structured source is empty", DataError)
    _check_duplicates(table.select(KEY), "structured source", query, "table")

    null_labels = table.filter(F.col(label).isNull()).select(KEY).limit(SHOWN_IDS).collect()
    if null_labels:
        count = table.filter(F.col(label).isNull()).count()
        raise DataError(
            f"{count} rows have no label {label}: ids {_ids(null_labels)}; give every row a "
            "label or filter them out",
            ids=tuple(r[0] for r in null_labels),
            count=count,
        )
    if features:
        bad = F.lit(False)
        for column in features:
            bad = bad | F.col(column).isNull() | F.isnan(F.col(column).cast("double"))
        bad_rows = table.filter(bad).select(KEY).limit(SHOWN_IDS).collect()
        if bad_rows:
            count = table.filter(bad).count()
            raise DataError(
                f"{count} rows have null or NaN structured features: ids {_ids(bad_rows)}; "
                "vista_sql does not impute: fill or drop them, or leave those columns out of "
                "FEATURES",
                ids=tuple(r[0] for r in bad_rows),
                count=count,
            )

    values = sorted(
        (r[0] for r in table.select(label).distinct().collect()),
        key=lambda v: (str(type(v)), v),
    )
    if len(values) < 2:
        raise _error(
            query,
            "label",
            f"the label {label} has a single class ({values[0]!r}): nothing to learn",
            DataError,
        )
    mapping = F.create_map(*[x for i, v in enumerate(values) for x in (F.lit(v), F.lit(float(i)))])
    indexed = table.select(KEY, mapping[F.col(label)].alias(LABEL), *features)
    structured = F.array(*[F.col(c) for c in features]).cast("array<double>")
    return PreparedTable(
        frame=indexed.select(KEY, LABEL, structured.alias(STRUCT)),
        features=tuple(features),
        labels=tuple(values),
    )


def _check_duplicates(keys: DataFrame, side: str, query: TransferQuery, clause: str) -> None:
    from pyspark.sql import functions as F

    duplicated = keys.groupBy(KEY).count().filter(F.col("count") > 1)
    rows = duplicated.orderBy(KEY).limit(SHOWN_IDS).collect()
    if rows:
        count = duplicated.count()
        raise DataError(
            f"the {side} has {count} duplicated ids (first: {_ids(rows)}); the join would "
            "multiply rows: make the key unique",
            ids=tuple(r[0] for r in rows),
            count=count,
        )


def check_images(images: DataFrame, query: TransferQuery) -> None:
    """The image side's keys: not empty, unique."""
    if images.limit(1).count() == 0:
        raise _error(query, "images", "the image source has no images", DataError)
    _check_duplicates(images.select(KEY), "image source", query, "images")


def unmatched(images: DataFrame, table: DataFrame) -> dict[str, int]:
    """Keys on one side only: {"images": images without a row, "table": rows without an image}."""
    image_keys = images.select(KEY)
    table_keys = table.select(KEY)
    return {
        "images": image_keys.join(table_keys, KEY, "left_anti").count(),
        "table": table_keys.join(image_keys, KEY, "left_anti").count(),
    }


def key_type(table: DataFrame) -> str:
    """The Spark SQL type of the structured key, used to cast ids taken from file names."""
    return next(f.dataType.simpleString() for f in table.schema.fields if f.name == KEY)
