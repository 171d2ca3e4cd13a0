"""vista_sql.explain for EXPLAIN LOGICAL / VERBOSE, DESCRIBE CNN, SHOW CNNS; import isolation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

import vista_sql
from vista_sql.catalog import Catalog, roster
from vista_sql.errors import VistaError
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical.builder import build
from vista_sql.logical.driver import alternatives
from vista_sql.logical.explain import SAME_AS_ABOVE, explain_logical
from vista_sql.logical.lazy import lazy_plan
from vista_sql.logical.query import TransferQuery
from vista_sql.logical.render import render_json, render_text

TRANSFER = """TRANSFER FEATURES OF 'data/foods/images' AS i
  FROM CNN vgg16 WEIGHTS RANDOM SEED 7
  LAYERS (fc6, fc7, fc8)
  JOIN 'data/foods/foods.parquet' AS f ON i.id = f.id
  TRAIN LOGREG (max_iter = 10, reg_param = 0.1)
  LABEL healthy
  VALIDATE 0.2 SEED 2019"""


GOLDEN = Path(__file__).parent / "fixtures" / "logical"


def query() -> TransferQuery:
    statement = build(parse_one(TRANSFER), TRANSFER, roster())
    assert isinstance(statement, TransferQuery)
    return statement


def test_explain_logical_prints_the_lazy_plan_then_every_alternative() -> None:
    text = vista_sql.explain("EXPLAIN LOGICAL " + TRANSFER)
    found = alternatives(query(), roster())
    sections = text.split("\n\n")
    assert sections[0] == (
        "== Logical plan (lazy, before rewriting) ==\n" + render_text(lazy_plan(query(), roster()))
    )
    assert sections[1] == f"== Alternatives after rewriting ({len(found)}) =="
    assert len(sections) == 2 + len(found)
    for number, (section, alternative) in enumerate(zip(sections[2:], found, strict=True), 1):
        header, plan = section.split("\n", 1)
        assert header.startswith(f"-- Alternative {number}: {alternative.name}")
        assert plan == render_text(alternative.plan)
    assert text == explain_logical(query(), roster())


@pytest.mark.parametrize(
    ("name", "statement"),
    [
        ("explain_logical_vgg16.txt", "EXPLAIN LOGICAL " + TRANSFER),
        (
            "explain_verbose_alexnet.txt",
            "EXPLAIN VERBOSE TRANSFER FEATURES OF images (path) FROM CNN alexnet "
            "LAYERS (conv5, fc6) JOIN foods USING (id) FEATURES (x1, x2) "
            "TRAIN GBT (max_depth = (3, 5), folds = 2) LABEL y WITH (conv_pooling = avg)",
        ),
    ],
)
def test_explain_output_matches_its_golden_file(name: str, statement: str) -> None:
    """The whole output, read by eye once; VISTA_SQL_UPDATE_GOLDEN=1 rewrites it."""
    text = vista_sql.explain(statement, catalog=roster()) + "\n"
    if os.environ.get("VISTA_SQL_UPDATE_GOLDEN") == "1":
        (GOLDEN / name).write_text(text)
    assert text == (GOLDEN / name).read_text()


def test_explain_logical_json_has_the_same_content() -> None:
    document = json.loads(vista_sql.explain("EXPLAIN LOGICAL FORMAT JSON " + TRANSFER))
    found = alternatives(query(), roster())
    assert document["logical_plan"] == render_json(lazy_plan(query(), roster()))
    assert [a["name"] for a in document["alternatives"]] == [a.name for a in found]
    first = document["alternatives"][0]
    assert first["equivalents"] == ["lazy/before_join/persist"]
    assert first["plan"] == render_json(found[0].plan)
    assert not any(a["chosen"] for a in document["alternatives"])


def test_the_cost_model_can_mark_its_choice() -> None:
    text = explain_logical(query(), roster(), chosen="lazy/before_join/persist")
    assert "-- Alternative 1: lazy/before_join/recompute (chosen)" in text
    assert text.count("(chosen)") == 1


def test_explain_verbose_prints_the_plan_after_each_rule() -> None:
    text = vista_sql.explain("explain verbose " + TRANSFER)
    found = alternatives(query(), roster())
    steps = [step for alternative in found for step in alternative.steps]
    titles = [line for line in text.splitlines() if line.startswith("-- ")]
    assert len(titles) == len(steps)
    assert titles[:2] == [
        "-- normalize: fuse_pooling (pass 1): changed",
        "-- normalize: fuse_pooling (pass 2): unchanged",
    ]
    assert text.count(SAME_AS_ABOVE) == sum(not step.changed for step in steps)
    assert text.count("== Alternative ") == len(found)
    document = json.loads(vista_sql.explain("EXPLAIN VERBOSE FORMAT JSON " + TRANSFER))
    json_steps = [s for a in document["alternatives"] for s in a["steps"]]
    assert [s["changed"] for s in json_steps] == [step.changed for step in steps]
    assert all((s["plan"] is None) == (not s["changed"]) for s in json_steps)


@pytest.fixture(scope="module")
def foods_sql(tmp_path_factory: pytest.TempPathFactory) -> str:
    """TRANSFER over a small real dataset (EXPLAIN reads its listing and Parquet footer)."""
    from vista_sql.datasets.foods import make_foods

    data = make_foods(tmp_path_factory.mktemp("explain") / "foods", rows=6, image_size=32)
    return TRANSFER.replace("data/foods/images", str(data.images_dir)).replace(
        "data/foods/foods.parquet", str(data.table_path)
    )


def test_plain_explain_and_cost_print_the_chosen_plan_and_every_alternative(
    foods_sql: str,
) -> None:
    plain = vista_sql.explain(foods_sql)
    assert vista_sql.explain("EXPLAIN " + foods_sql) == plain
    assert plain.startswith("== Physical Plan: ")
    assert "== Spark Configuration ==" in plain
    assert sum(line.startswith("* ") for line in plain.splitlines()) == 1
    cost = vista_sql.explain("EXPLAIN COST " + foods_sql)
    assert cost.splitlines()[0] == plain.splitlines()[0]
    assert "== Cost of " in cost and "== Constants ==" in cost
    document = json.loads(vista_sql.explain("EXPLAIN FORMAT JSON " + foods_sql))
    assert document["mode"] == "physical"
    assert plain.startswith(f"== Physical Plan: {document['chosen']} ==")


def test_explain_of_missing_sources_points_at_the_path() -> None:
    with pytest.raises(VistaError) as raised:
        vista_sql.explain(TRANSFER)
    assert raised.value.line == 1
    assert "data/foods/images" in (raised.value.highlight or "")


def test_describe_cnn_prints_unmeasured_statistics_as_question_marks() -> None:
    vgg16 = roster().cnn("vgg16")
    assert vgg16 is not None
    unmeasured = replace(
        vgg16,
        param_bytes=None,
        layers=tuple(
            replace(layer, flops=None, param_bytes=None, activation_bytes=None, peak_rss_bytes=None)
            for layer in vgg16.layers
        ),
    )
    text = vista_sql.explain("DESCRIBE CNN vgg16", catalog=Catalog(cnns=(unmeasured,)))
    lines = text.splitlines()
    assert lines[0] == ("CNN vgg16 (VGG16): input 224x224, caffe preprocessing, parameters ?")
    assert lines[1].split() == [
        *("layer", "keras", "kind", "shape", "features", "(max2x2)", "features", "(none)"),
        *("segment", "flops", "segment", "params", "activation", "bytes", "peak", "rss"),
        *("resume", "from"),
    ]
    rows = [line.split() for line in lines[3:]]
    assert [row[0] for row in rows] == list(vgg16.layer_names)
    assert rows[0] == [
        *("conv1_2", "block1_conv2", "conv", "224x224x64", "256", "3,211,264"),
        *("?", "?", "?", "?", "block1_pool", "112x112x64"),
    ]
    assert rows[-1][-1] == "-"


def test_show_cnns_lists_the_roster_and_statements_run_in_order() -> None:
    text = vista_sql.explain("SHOW CNNS; DESCRIBE CNN alexnet")
    show, describe = text.split("\n\n")
    assert [line.split()[0] for line in show.splitlines()[2:]] == list(roster().names)
    assert describe.startswith("CNN alexnet (AlexNet): input 227x227")


def test_explain_logical_loads_neither_spark_nor_tensorflow() -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        started = time.perf_counter()
        import vista_sql
        imported = time.perf_counter() - started
        loaded_by_import = set(sys.modules)
        vista_sql.explain({("EXPLAIN LOGICAL " + TRANSFER)!r})
        heavy = ("pyspark", "tensorflow", "keras", "numpy", "pandas", "pyarrow")
        print(sorted(m for m in heavy if m in sys.modules))
        print(sorted(m for m in heavy if m in loaded_by_import))
        print(f"{{imported:.3f}}", file=sys.stderr)
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    after_explain, after_import = run.stdout.splitlines()
    assert after_explain == "[]"
    assert after_import == "[]"
    print(f"import vista_sql took {run.stderr.strip()} s in a fresh interpreter")


def test_every_roster_cnn_travels_as_a_catalog_document_and_back() -> None:
    """``cnn_document`` is ``parse_catalog``'s inverse: a CNN's description (a registered one's
    too, for the profiling interpreter of ``WITH (calibrate = true)``) travels as JSON data."""
    from vista_sql.catalog import cnn_document, parse_catalog

    for info in roster().cnns:
        document = json.loads(json.dumps({"cnns": {info.name: cnn_document(info)}}))
        (back,) = parse_catalog(document).cnns
        assert back == info, info.name
