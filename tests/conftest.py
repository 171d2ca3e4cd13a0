"""Shared pytest setup. Append your fixtures; do not rewrite others'."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

# The rule driver proves, under tests, that fixed-point batches converge and Once batches are
# idempotent (vista_sql.logical.driver.strict_default).
os.environ.setdefault("VISTA_SQL_STRICT_RULES", "1")
# The shipped calibration, not one `vista-sql calibrate` wrote for this machine: the tests'
# plans and estimates are the same on every machine (tests of the user's file set it themselves).
os.environ["VISTA_SQL_CALIBRATION"] = os.devnull + ".none"


# --- Spark (udfs) ---------------------------------------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    """One small local SparkSession (2 cores, 1 GiB driver, no UI, loopback) for the whole run.

    Python workers run this interpreter and can import this checkout of vista_sql even when it
    is not installed.
    """
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    paths = [str(REPO_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    session = (
        SparkSession.builder.master("local[2]")
        .appName("vista_sql-tests")
        .config("spark.driver.memory", "1g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.python.worker.reuse", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


# --- Feature store (physical/store.py) ------------------------------------------------------------


@pytest.fixture(scope="session", autouse=True)
def feature_store_off_by_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests never touch the user's cache directory, and a statement reads or writes the feature
    store only when it says WITH (cache = true): no test's plan depends on what another stored."""
    saved = {name: os.environ.get(name) for name in ("VISTA_SQL_CACHE", "VISTA_SQL_CACHE_DIR")}
    os.environ["VISTA_SQL_CACHE"] = "0"
    os.environ["VISTA_SQL_CACHE_DIR"] = str(tmp_path_factory.mktemp("vista_sql_cache"))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# --- Registered CNNs (catalog.register) -----------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def registered_cnns_per_module() -> Iterator[None]:
    """CNNs a test module registers (``vista_sql.register_cnn``) leave the catalog with it: a
    later module sees the shipped roster, whatever order the modules run in."""
    from vista_sql import catalog

    saved = dict(catalog._registered)
    yield
    catalog._registered.clear()
    catalog._registered.update(saved)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny test CNN (``tiny_cnn.py``), registered for the module that asks for it."""
    from tiny_cnn import register_tiny_cnn  # tests/ is on sys.path (pytest's rootdir conftest)

    return register_tiny_cnn(tmp_path_factory.mktemp("tiny_cnn"))


# --- Order (pytest-xdist) -------------------------------------------------------------------------

SLOWEST_FIRST = (
    "test_cluster_netns.py",
    "test_interfaces_spark.py",
    "test_physical_equivalence.py",
    "test_reliability_faults.py",
    "test_reliability_memory.py",
    "test_reliability_replan.py",
    "test_store_spark.py",
    "test_store_incremental.py",
    "test_search_halving.py",
    "test_end_to_end.py",
    "test_security.py",
    "test_spark_interfaces.py",
    "test_register_cnn.py",
    "test_quickstart_notebook.py",
    "test_physical_train.py",
    "test_udfs_weights.py",
    "test_ml_featurizer.py",
)
"""Modules of a minute or more, longest first. Under the Makefile's ``-n 2 --dist loadfile``
xdist hands out modules by their number of tests first (most first), so this order only settles
ties; with ``--no-loadscope-reorder`` it is the order itself, which starts the heaviest modules
together and made the suite slower here (31 against 25 minutes): they contend for the 2 cores."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return SLOWEST_FIRST.index(name) if name in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)  # stable: the order within a module, and of the others, is kept
