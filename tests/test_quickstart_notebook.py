"""examples/quickstart.ipynb runs top to bottom in a real Jupyter kernel (nbclient + ipykernel)
and shows what a notebook user expects: a progress bar, the result as an HTML table, the plot as
an image, and EXPLAIN as preformatted HTML."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.spark,
    pytest.mark.tf,
    pytest.mark.slow,
    pytest.mark.skipif(
        any(importlib.util.find_spec(m) is None for m in ("nbclient", "nbformat", "ipykernel")),
        reason="nbclient, nbformat and ipykernel (the 'test' extra) run the notebook",
    ),
]

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def _outputs(cell: Any) -> dict[str, Any]:
    """Every MIME type a cell displayed -> its (last) data."""
    shown: dict[str, Any] = {}
    for output in cell.get("outputs", []):
        shown.update(output.get("data", {}))
    return shown


def test_quickstart_notebook_runs_and_shows_table_plot_and_plan(tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    code = {
        cell.source.splitlines()[0]: cell for cell in notebook.cells if cell.cell_type == "code"
    }
    errors = [o for c in code.values() for o in c.outputs if o.output_type == "error"]
    assert not errors, errors

    run = _outputs(code["result = vista_sql.execute(sql)"])
    assert "application/vnd.jupyter.widget-view+json" in run  # rich's progress, in a widget
    page = run["text/html"]
    assert '<div class="vista-sql-result">' in page
    for layer in ("fc8", "fc7", "conv5"):
        assert f"<td>{layer}</td>" in page

    plot = _outputs(code["result.plot()"])
    assert "image/png" in plot, plot.keys()

    plan = _outputs(code["vista_sql.explain(sql)"])["text/html"]
    assert plan.startswith('<pre class="vista-sql-explain">')
    assert "== Physical Plan:" in plan and "== Alternatives" in plan

    best = _outputs(code["result.best"])["text/plain"]
    assert "layer" in best and "accuracy" in best
