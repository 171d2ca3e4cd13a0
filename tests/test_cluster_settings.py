"""Cluster settings without a cluster: the driver's address, the workers' Python, the shape read
from a standalone master's status, the resources a plan is sized for, and the refusal of a plan
no worker can host. Nothing here starts Spark."""

from __future__ import annotations

import socket
import sys

import pytest

from vista_sql.cost_model.config import SparkConfig
from vista_sql.cost_model.resources import Resources
from vista_sql.errors import ResourceError
from vista_sql.logical.query import Options
from vista_sql.physical import cluster, session

STATUS = {
    "url": "spark://198.18.0.10:7077",
    "workers": [
        {"host": "198.18.0.11", "cores": 2, "memory": 4096, "state": "ALIVE"},
        {"host": "198.18.0.12", "cores": 1, "memory": 3072, "state": "ALIVE"},
        {"host": "198.18.0.13", "cores": 8, "memory": 65536, "state": "DEAD"},
    ],
}


def config(mode: str = "cluster", cores: int = 1, heap: int = 2**30) -> SparkConfig:
    return SparkConfig(
        mode=mode,  # type: ignore[arg-type]
        nodes=2,
        executor_cores=cores,
        tf_threads=1,
        partitions=4,
        heap_bytes=heap,
        driver_heap_bytes=2**30,
        memory_fraction=0.6,
        storage_fraction=0.5,
        batch_size=8,
        arrow_rows=64,
        cache_rows=1000,
        compress_cached=True,
        max_result_bytes=None,
        gpu=False,
        persist_level=None,
    )


@pytest.mark.parametrize(
    ("master", "local"),
    [
        ("local", True),
        ("local[2]", True),
        ("local[*,2]", True),
        ("local-cluster[2,1,1024]", True),
        ("spark://h:7077", False),
        ("yarn", False),
        ("k8s://https://api:6443", False),
    ],
)
def test_local_masters_are_told_apart(master: str, local: bool) -> None:
    assert session.is_local(master) is local


def test_master_endpoints() -> None:
    assert session.master_endpoint("spark://198.18.0.10:7077") == ("198.18.0.10", 7077)
    assert session.master_endpoint("spark://a:7078,b:7078") == ("a", 7078)
    assert session.master_endpoint("spark://host") == ("host", 7077)
    assert session.master_endpoint("yarn") is None


def test_driver_address_is_loopback_only_in_local_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    assert session.driver_conf("local[2]", {})["spark.driver.host"] == "127.0.0.1"
    # a standalone master: the address of the interface that routes to it
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("127.0.0.2", 7077))
        expected = probe.getsockname()[0]
    assert session.driver_conf("spark://127.0.0.2:7077", {}) == {"spark.driver.host": expected}
    # Spark's own settings win
    assert session.driver_conf("spark://127.0.0.2:7077", {"spark.driver.host": "h"}) == {}
    monkeypatch.setenv("SPARK_LOCAL_IP", "198.18.0.1")
    assert session.driver_conf("spark://h:7077", {}) == {"spark.driver.host": "198.18.0.1"}
    # a loopback SPARK_LOCAL_IP (left by local mode) is no address for a cluster
    monkeypatch.setenv("SPARK_LOCAL_IP", "127.0.0.1")
    assert session.driver_conf("spark://127.0.0.2:7077", {}) == {"spark.driver.host": expected}
    assert session.driver_conf("yarn", {}) == {}


def test_workers_python_comes_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    assert session.python_conf("local[2]", {}) == {"spark.pyspark.python": sys.executable}
    assert session.python_conf("spark://h:7077", {}) == {"spark.pyspark.python": sys.executable}
    given = {"spark.pyspark.python": "./env/bin/python"}
    assert session.python_conf("spark://h:7077", given) == {}
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/env/bin/python")
    assert session.python_conf("yarn", {}) == {"spark.pyspark.python": "/opt/env/bin/python"}


def test_standalone_status_gives_the_alive_workers() -> None:
    shape = cluster.parse_master_status(STATUS, "http://m:8080/json/")
    assert [w.host for w in shape.workers] == ["198.18.0.11", "198.18.0.12"]
    assert shape.smallest == cluster.Worker("smallest", 1, 3072 * 2**20)
    assert shape.largest_cores == 2 and shape.largest_memory == 4096 * 2**20
    with pytest.raises(ResourceError, match="no alive worker"):
        cluster.parse_master_status({"workers": []}, "u")


def test_yarn_shape_from_settings() -> None:
    conf = {"spark.executor.instances": "3", "spark.executor.memory": "4g"}
    shape = cluster.settings_shape({**conf, "spark.executor.cores": "2"}, "YARN")
    assert shape is not None and len(shape.workers) == 3
    assert shape.workers[0].cores == 2
    assert shape.workers[0].memory_bytes == 4 * 2**30 + 4 * 2**30 // 10
    assert cluster.settings_shape({"spark.executor.memory": "4g"}, "YARN") is None


def test_resources_come_from_the_cluster_unless_with_says() -> None:
    shape = cluster.parse_master_status(STATUS, "http://m:8080/json/")
    base = Resources(64 * 2**30, 16, origin=(("memory", "/proc/meminfo MemTotal"),))
    found = cluster.cluster_resources(Options(), shape, base)
    assert (found.memory_bytes, found.cores, found.nodes) == (3072 * 2**20, 1, 2)
    assert dict(found.origin)["nodes"] == "standalone master http://m:8080/json/: 2 alive workers"
    given = cluster.cluster_resources(Options(cores=1, nodes=4), shape, base)
    assert (given.cores, given.nodes, given.memory_bytes) == (1, 4, 3072 * 2**20)
    assert dict(given.origin)["cores"] == "WITH cores"


def test_a_plan_no_worker_can_host_is_refused() -> None:
    shape = cluster.parse_master_status(STATUS, "http://m:8080/json/")
    fits = config(cores=2, heap=3 * 2**30)
    cluster.check_fits(fits, cluster.executor_conf(fits), shape)
    too_many = config(cores=3)
    with pytest.raises(ResourceError, match="3 cores per executor, the largest worker has 2"):
        cluster.check_fits(too_many, cluster.executor_conf(too_many), shape)
    too_big = config(heap=6 * 2**30)
    with pytest.raises(ResourceError, match=r"6\.0 GiB per executor"):
        cluster.check_fits(too_big, cluster.executor_conf(too_big), shape)


def test_one_node_plans_become_one_executor() -> None:
    conf = cluster.executor_conf(config(mode="local", cores=2, heap=1536 * 2**20))
    assert "spark.master" not in conf and "spark.driver.memory" not in conf
    assert conf["spark.executor.memory"] == "1536m"
    assert conf["spark.executor.cores"] == conf["spark.cores.max"] == "2"
    assert conf["spark.executor.processTreeMetrics.enabled"] == "true"


def test_with_every_figure_needs_no_discovery() -> None:
    options = Options(nodes=2, cores=1, memory=2**30)
    # no master answers at this address: WITH says everything, so nothing is asked
    assert cluster.discover("spark://198.18.255.254:7077", options=options) is None
    assert cluster.discover("local[2]") is None
