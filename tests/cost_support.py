"""Shared setup of the cost model's tests: statements, their alternatives, statistics, resources.

Statements are built and rewritten by the real front end (grammar, builder, rule driver), over the
shipped roster or over ``tests/fixtures/cost/catalog.json`` (``tinynet``, hand-set statistics;
``blindnet``, every statistic unknown).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import vista_sql
from vista_sql.catalog import Catalog, parse_catalog, roster
from vista_sql.cost_model.constants import CostConstants
from vista_sql.cost_model.optimizer import Decision, choose
from vista_sql.cost_model.resources import Resources
from vista_sql.cost_model.stats import DataStats
from vista_sql.logical.builder import build
from vista_sql.logical.driver import Alternative, alternatives
from vista_sql.logical.query import TransferQuery

GiB = 2**30
MiB = 2**20
FIXTURE = Path(__file__).parent / "fixtures" / "cost" / "catalog.json"


@cache
def test_catalog() -> Catalog:
    return parse_catalog(json.loads(FIXTURE.read_text()))


def catalog_for(cnn: str) -> Catalog:
    return test_catalog() if cnn in ("tinynet", "blindnet") else roster()


def statement(
    cnn: str = "tinynet",
    layers: str = "conv2, fc3, fc4",
    options: str = "",
    model: str = "LOGREG (max_iter = 10)",
) -> str:
    with_clause = f" WITH ({options})" if options else ""
    return (
        f"TRANSFER FEATURES OF 'data/images' AS i\n"
        f"  FROM CNN {cnn} WEIGHTS RANDOM SEED 7\n"
        f"  LAYERS ({layers})\n"
        f"  JOIN 'data/table.parquet' AS t ON i.id = t.id\n"
        f"  TRAIN {model}\n"
        f"  LABEL label{with_clause}"
    )


@cache
def query_and_alternatives(sql: str, cnn: str) -> tuple[TransferQuery, tuple[Alternative, ...]]:
    catalog = catalog_for(cnn)
    query = build(vista_sql.parse_one(sql), sql, catalog)
    assert isinstance(query, TransferQuery)
    return query, tuple(alternatives(query, catalog))


def stats(
    images: int = 2000,
    image_bytes: int = 20_000,
    table_rows: int | None = None,
    features: int = 20,
) -> DataStats:
    return DataStats.of(
        image_rows=images,
        image_bytes=images * image_bytes,
        table_rows=images if table_rows is None else table_rows,
        feature_columns=features,
        table_format="parquet",
    )


def resources(memory: float = 8 * GiB, cores: int = 2, nodes: int = 1) -> Resources:
    return Resources(int(memory), cores, nodes)


def decide(
    sql: str,
    cnn: str = "tinynet",
    data: DataStats | None = None,
    machine: Resources | None = None,
    consts: CostConstants | None = None,
) -> Decision:
    query, alts = query_and_alternatives(sql, cnn)
    return choose(query, alts, catalog_for(cnn), data or stats(), machine or resources(), consts)
