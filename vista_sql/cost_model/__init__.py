"""Logical alternatives + catalog + data statistics + resources -> estimates and the chosen plan.

Pure Python: imports neither Spark nor TensorFlow (pyarrow only inside ``gather_stats``, to read
Parquet footers). The pieces, in the order data flows through them:

- ``stats``: ``DataStats`` and ``gather_stats`` (listings and footers, never a scan);
- ``resources``: ``Resources`` and ``detect_resources`` (WITH, else the machine and its cgroup);
- ``facts``: every operator of a plan sized (rows, columns, bytes) and its passes counted;
- ``memory``: one node's memory, region by region, the heap size, and whether a plan fits;
- ``runtime``: every operator's time under one choice;
- ``optimizer``: the search, the comparison key, ``choose`` -> ``Decision``, ``ResourceError``s;
- ``explain``: EXPLAIN text and JSON of a decision;
- ``constants``: every number assumed, with its provenance; ``calibration``: predicted vs measured.

``decide`` (in ``decide``) runs the whole chain for a checked statement.
"""

from __future__ import annotations

from vista_sql.cost_model.config import Choice, SparkConfig, storage_level_name
from vista_sql.cost_model.constants import CostConstants, constants, provenance
from vista_sql.cost_model.decide import decide
from vista_sql.cost_model.estimate import Estimate, Precision
from vista_sql.cost_model.explain import explain_json, explain_text
from vista_sql.cost_model.optimizer import AlternativeLike, Decision, PhysicalPlan, choose
from vista_sql.cost_model.resources import Resources, detect_resources
from vista_sql.cost_model.stats import DataStats, gather_stats

__all__ = [
    "AlternativeLike",
    "Choice",
    "CostConstants",
    "DataStats",
    "Decision",
    "Estimate",
    "PhysicalPlan",
    "Precision",
    "Resources",
    "SparkConfig",
    "choose",
    "constants",
    "decide",
    "detect_resources",
    "explain_json",
    "explain_text",
    "gather_stats",
    "provenance",
    "storage_level_name",
]
