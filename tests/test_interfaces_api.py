"""The Python API's surface and the command line's options, without Spark or TensorFlow.

Runs that need Spark (HTML, plots, MLflow, --json, Spark Connect) are in
``test_interfaces_spark.py``.
"""

from __future__ import annotations

import inspect
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import vista_sql
from vista_sql import api, cli
from vista_sql.catalog import current
from vista_sql.datasets.foods import FoodsDataset, make_foods
from vista_sql.errors import DataError, ResourceError, SemanticError, VistaError
from vista_sql.grammar.dialect import parse_one
from vista_sql.logical.builder import build

CLI = [sys.executable, "-m", "vista_sql.cli"]

STATEMENT = (
    "TRANSFER FEATURES OF 'images' AS i FROM CNN alexnet WEIGHTS RANDOM SEED 1 LAYERS (fc7, fc8)"
    " JOIN 'foods.parquet' AS f ON i.id = f.id TRAIN LOGREG LABEL healthy"
)
"""A statement over sources that need not exist (only parsed and checked, or never run)."""


@pytest.fixture(scope="module")
def foods(tmp_path_factory: pytest.TempPathFactory) -> FoodsDataset:
    return make_foods(tmp_path_factory.mktemp("api") / "foods", rows=6, seed=2, image_size=32)


def on(data: FoodsDataset) -> str:
    """STATEMENT over ``data``: EXPLAIN reads the sources' sizes."""
    return STATEMENT.replace("'images'", f"'{data.images_dir}'").replace(
        "'foods.parquet'", f"'{data.table_path}'"
    )


def test_top_level_execute_takes_every_argument_of_api_execute() -> None:
    top = inspect.signature(vista_sql.execute).parameters
    inner = inspect.signature(api.execute).parameters
    assert list(top) == list(inner)
    for name, parameter in inner.items():
        assert top[name].kind == parameter.kind, name
        assert top[name].default == parameter.default, name
    assert list(top)[:4] == ["sql", "spark", "tables", "progress"]


def test_top_level_execute_passes_every_argument_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake(sql: str, *args: Any, **kwargs: Any) -> str:
        seen.update(sql=sql, args=args, kwargs=kwargs)
        return "done"

    monkeypatch.setattr(api, "execute", fake)
    given = {
        "master": "sc://127.0.0.1:1",
        "into": "/tmp/x",
        "conf": {"spark.a": "b"},
        "mlflow": True,
        "catalog": current(),
    }
    assert vista_sql.execute("SQL", "SESSION", {"t": "p"}, False, **given) == "done"
    assert seen == {"sql": "SQL", "args": ("SESSION", {"t": "p"}, False), "kwargs": given}


def test_transfer_result_is_exported_and_documented() -> None:
    from vista_sql.physical.result import TransferResult

    assert vista_sql.TransferResult is TransferResult
    assert "TransferResult" in vista_sql.__all__
    assert inspect.signature(vista_sql.execute).return_annotation in (
        "TransferResult | ExplainText",
        vista_sql.TransferResult | vista_sql.ExplainText,
    )
    for member in ("to_pandas", "best", "models", "explain", "plot", "_repr_html_"):
        assert getattr(TransferResult, member).__doc__, member


def test_explain_text_is_a_string_shown_as_escaped_html(foods: FoodsDataset) -> None:
    text = vista_sql.explain(on(foods))
    assert isinstance(text, str) and isinstance(text, vista_sql.ExplainText)
    assert text.startswith("== Physical Plan:")
    page = text._repr_html_()
    assert page.startswith('<pre class="vista-sql-explain">') and page.endswith("</pre>")
    assert "== Physical Plan:" in page
    shown = vista_sql.ExplainText("a <b> & c")._repr_html_()
    assert "a &lt;b&gt; &amp; c" in shown


def test_with_mlflow_is_an_option() -> None:
    query = build(parse_one(STATEMENT + " WITH (mlflow = true)"), STATEMENT, current())
    assert query.options.mlflow is True  # type: ignore[union-attr]
    query = build(parse_one(STATEMENT), STATEMENT, current())
    assert query.options.mlflow is False  # type: ignore[union-attr]
    with pytest.raises(SemanticError) as error:
        build(parse_one(STATEMENT + " WITH (mlflow = 'yes')"), STATEMENT, current())
    assert "TRUE or FALSE" in str(error.value)


def test_version_names_vista_sql_and_pyspark() -> None:
    done = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"vista-sql {vista_sql.__version__} (pyspark 4.")


def test_dash_reads_the_statement_from_standard_input(foods: FoodsDataset) -> None:
    done = subprocess.run(
        [*CLI, "explain", "-"], input=on(foods) + ";\n", capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("== Physical Plan:")
    bad = subprocess.run(
        [*CLI, "explain", "-"], input="TRANSFER FEATURES OF", capture_output=True, text=True
    )
    assert bad.returncode == 2 and "vista-sql: error:" in bad.stderr


def test_conf_pairs_reach_execute_and_bad_ones_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, Any] = {}

    def fake(sql: str, **kwargs: Any) -> list[Any]:
        seen.update(kwargs)
        return [api.ExplainText("text out")]

    monkeypatch.setattr(api, "execute_all", fake)
    argv = ["run", "-e", STATEMENT, "--conf", "spark.sql.shuffle.partitions=7", "--conf", "a.b=c=d"]
    assert cli.main(argv) == 0
    assert seen["conf"] == {"spark.sql.shuffle.partitions": "7", "a.b": "c=d"}
    assert capsys.readouterr().out.startswith("text out")
    assert cli.main(["run", "-e", STATEMENT, "--conf", "novalue"]) == 2
    assert "--conf expects KEY=VALUE" in capsys.readouterr().err


def test_run_json_prints_one_object_per_statement(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(
        api, "execute_all", lambda sql, **kwargs: [api.ExplainText("plan"), api.ExplainText("x")]
    )
    assert cli.main(["run", "--json", "-e", STATEMENT]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"kind": "text", "text": "plan"},
        {"kind": "text", "text": "x"},
    ]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (SemanticError("Unknown CNN"), 2),
        (VistaError("cannot read"), 2),
        (DataError("image 3 unreadable", ids=(3,)), 3),
        (ResourceError("needs 9 GiB", needed_bytes=9 << 30), 4),
        (KeyboardInterrupt(), 130),
    ],
)
def test_each_kind_of_error_has_its_exit_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: BaseException,
    status: int,
) -> None:
    def fail(sql: str, **kwargs: Any) -> list[Any]:
        raise error

    monkeypatch.setattr(api, "execute_all", fail)
    assert cli.main(["run", "-e", STATEMENT]) == status
    message = capsys.readouterr().err
    assert message.startswith("vista-sql: error:" if status != 130 else "vista-sql: interrupted")


def test_a_syntax_error_exits_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [*CLI, "run", "-"], input="TRANSFER FEATURES OF 'x' FROM", capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "Line 1" in done.stderr


def test_stdin_is_only_read_for_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("SHOW CNNS"))
    args = cli.build_parser().parse_args(["explain", "-"])
    assert cli._statement_text(args) == "SHOW CNNS"
    args = cli.build_parser().parse_args(["explain", "-e", "DESCRIBE CNN alexnet"])
    assert cli._statement_text(args) == "DESCRIBE CNN alexnet"


def test_mlflow_without_the_package_fails_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    # The sources do not exist: running would fail on them, so this error comes first.
    with pytest.raises(VistaError, match=r"pip install 'vista_sql\[mlflow\]'"):
        vista_sql.execute(STATEMENT + " WITH (mlflow = true)")
    with pytest.raises(VistaError, match=r"pip install 'vista_sql\[mlflow\]'"):
        vista_sql.execute(STATEMENT, mlflow=True)
    with pytest.raises(SemanticError, match="does not exist"):
        vista_sql.execute(STATEMENT + " WITH (mlflow = true)", mlflow=False)
