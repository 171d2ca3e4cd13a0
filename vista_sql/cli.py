"""The ``vista-sql`` command line: run, explain, demo, dataset (SPEC.md, Command line).

Exit status: 0 success; 2 a statement that cannot run as written (syntax, unknown names, bad
options, unreadable statement file); 3 bad data (``DataError``); 4 no plan fits in memory
(``ResourceError``); 130 interrupted. Each error class carries its status (``exit_code``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from sqlglot.errors import ParseError

from vista_sql.errors import VistaError

DEMO_LAYERS = ("conv5", "fc6", "fc7", "fc8")


def _statement_text(args: argparse.Namespace) -> str:
    if args.execute is not None:
        return str(args.execute)
    if args.file is None:
        raise VistaError('give a statement file, - for standard input, or -e "SQL"')
    if args.file == "-":
        return sys.stdin.read()
    try:
        with open(args.file) as handle:
            return handle.read()
    except OSError as error:
        raise VistaError(f"cannot read {args.file}: {error.strerror}") from error


def _tables(pairs: Sequence[str]) -> dict[str, str]:
    tables = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise VistaError(f"--table expects NAME=PATH, got {pair!r}")
        tables[name] = path
    return tables


def _conf(pairs: Sequence[str]) -> dict[str, str]:
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise VistaError(f"--conf expects KEY=VALUE, got {pair!r}")
        conf[key.strip()] = value
    return conf


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    import vista_sql

    try:
        spark = version("pyspark")
    except PackageNotFoundError:
        spark = "not installed"
    return f"vista-sql {vista_sql.__version__} (pyspark {spark}, Python {sys.version.split()[0]})"


def _add_statement_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", nargs="?", help="a file of ;-separated statements (- reads standard input)"
    )
    parser.add_argument("-e", "--execute", metavar="SQL", help="the statement text")
    parser.add_argument(
        "--table", action="append", default=[], metavar="NAME=PATH", help="a named source"
    )
    parser.add_argument(
        "--master", help="Spark master URL, or sc://HOST:PORT for Spark Connect (default: local)"
    )
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Spark setting, over the optimizer's choice (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vista-sql", description="Feature transfer from deep CNNs on Spark, optimized."
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run statements and print the per-layer results")
    _add_statement_arguments(run)
    run.add_argument("--into", help="write features, models and report to this directory")
    run.add_argument("--no-progress", action="store_true", help="no progress display")
    run.add_argument(
        "--json",
        action="store_true",
        help="print the results as a JSON array, one object per statement",
    )
    explain = commands.add_parser("explain", help="print the plan of a statement")
    _add_statement_arguments(explain)
    demo = commands.add_parser("demo", help="make a small Foods-like dataset and run a transfer")
    demo.add_argument("--rows", type=int, default=400)
    demo.add_argument("--cnn", default="alexnet")
    demo.add_argument(
        "--weights",
        choices=["random", "imagenet"],
        default="random",
        help="seeded random weights, or ImageNet (squeezenet, efficientnet_lite0: extra 'real')",
    )
    demo.add_argument("--out", help="dataset directory (default: a temporary one)")
    demo.add_argument("--no-progress", action="store_true")
    dataset = commands.add_parser("dataset", help="write a dataset")
    dataset.add_argument("name", choices=["foods", "fashion-mnist", "clipart-foods"])
    dataset.add_argument("--rows", type=int, help="rows (foods: required; fashion-mnist: 2000)")
    dataset.add_argument("--out", required=True)
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument("--image-size", type=int, help="pixels (foods: 227, others: 224)")
    dataset.add_argument(
        "--classes",
        default="t-shirt,shirt",
        help="fashion-mnist: the classes to keep, comma-separated (default: t-shirt,shirt)",
    )
    dataset.add_argument("--overwrite", action="store_true")
    _add_cache_command(commands)
    calibrate = commands.add_parser(
        "calibrate",
        help="measure this machine's cost constants (about a minute) for EXPLAIN and the optimizer",
    )
    calibrate.add_argument(
        "--out",
        help="where to write them (default: $VISTA_SQL_CALIBRATION, else"
        " ~/.config/vista_sql/calibration.json)",
    )
    return parser


def _add_cache_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vista-sql cache list | clear [--dir DIR]``: the feature store (``physical.store``)."""
    cache = commands.add_parser("cache", help="list or clear the store of materialized layers")
    cache.add_argument("action", choices=["list", "clear"])
    cache.add_argument(
        "--dir", help="the cache directory (default: $VISTA_SQL_CACHE_DIR, else ~/.cache/vista_sql)"
    )


def _cache(args: argparse.Namespace) -> int:
    from vista_sql.physical.store import (
        FeatureStore,
        default_directory,
        format_entries,
        max_bytes_from_env,
    )

    store = FeatureStore(args.dir or default_directory(), max_bytes_from_env())
    if args.action == "clear":
        print(f"removed {store.clear()} entries from {store.root}")
        return 0
    print(format_entries(store))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "dataset":
            return _dataset(args)
        if args.command == "explain":
            import vista_sql

            text = vista_sql.explain(
                _statement_text(args),
                tables=_tables(args.table),
                master=args.master,
                conf=_conf(args.conf),
            )
            print(text)
            return 0
        if args.command == "run":
            return _run(args)
        if args.command == "cache":
            return _cache(args)
        if args.command == "calibrate":
            return _calibrate(args)
        return _demo(args)
    except VistaError as error:
        print(f"vista-sql: error: {error}", file=sys.stderr)
        return error.exit_code
    except ParseError as error:
        print(f"vista-sql: error: {error}", file=sys.stderr)
        return VistaError.exit_code
    except KeyboardInterrupt:
        print("vista-sql: interrupted", file=sys.stderr)
        return 130


def _calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from vista_sql.cost_model.machine import describe_machine
    from vista_sql.physical.profile import calibrate

    print("measuring this machine (run it idle: the figures are per core) ...", flush=True)
    document, path = calibrate(Path(args.out).expanduser() if args.out else None)
    values = document["values"]
    print(f"machine      {describe_machine(document['machine'])}")
    print(f"inference    {values['inference_flops_per_core'] / 1e9:.1f} GFLOP/s per core (fp32)")
    if "tf_batch_slowdown_exponent" in values:
        slower = 4 ** values["tf_batch_slowdown_exponent"]
        print(f"batch        x{slower:.2f} time per image at batch 32 against batch 8")
    for cnn, label in (("resnet50", "ResNet50"), ("alexnet", "AlexNet"), ("vgg16", "VGG16")):
        line = f"{label:<12} x{values.get(f'tf_efficiency_{cnn}', 1.0):.2f} of that rate"
        if f"tf_thread_scaling_exponent_{cnn}" in values:
            line += f", x{2 ** values[f'tf_thread_scaling_exponent_{cnn}']:.2f} at 2 threads"
        if f"tf_concurrency_scaling_exponent_{cnn}" in values:
            together = 2 ** values[f"tf_concurrency_scaling_exponent_{cnn}"]
            line += f", x{together:.2f} with 2 single-thread tasks at once"
        print(line)
    print(f"decode       {values['decode_seconds_per_jpeg_byte'] * 1e9:.1f} ns per JPEG byte")
    print(f"model build  {values['model_build_seconds']:.2f} s fixed, plus per parameter byte")
    if "job_overhead_seconds" in values:
        print(
            f"spark        {values['job_overhead_seconds'] * 1e3:.0f} ms a job,"
            f" {values['task_overhead_seconds'] * 1e3:.0f} ms a task"
            f" (+{values['python_task_overhead_seconds'] * 1e3:.0f} ms a Python task),"
            f" {values['mllib_iteration_seconds'] * 1e3:.0f} ms an MLlib iteration"
            f" and {values.get('mllib_fit_seconds', 0.0):.2f} s a fit,"
            f" Arrow {values['arrow_seconds_per_byte'] * 1e9:.1f} ns/byte"
        )
    for name in document.get("unreliable", {}):
        print(f"not measured {name}: the machine was busy (the built-in value is used)")
    from vista_sql.cost_model.constants import CALIBRATION_ENV, calibration_path

    used = (
        "EXPLAIN uses it from now on"
        if Path(path).resolve() == calibration_path().resolve()
        else f"EXPLAIN uses it with {CALIBRATION_ENV}={path}"
    )
    print(f"wrote {path} in {document['seconds']:.0f} s; {used}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from vista_sql.api import execute_all

    results = execute_all(
        _statement_text(args),
        tables=_tables(args.table),
        master=args.master,
        into=args.into,
        progress=not args.no_progress,
        conf=_conf(args.conf),
    )
    if args.json:
        document = [_finite(_json_result(r)) for r in results]
        print(json.dumps(document, indent=2, default=str, allow_nan=False))
        return 0
    for result in results:
        print(result if isinstance(result, str) else result.table())
        print()
    return 0


def _json_result(result: Any) -> dict[str, Any]:
    """One statement's output for ``run --json``: a TRANSFER statement's report (as INTO's
    report.json, plus the Spark settings and INTO), or an EXPLAIN / DESCRIBE / SHOW text."""
    if isinstance(result, str):
        return {"kind": "text", "text": str(result)}
    return {
        "kind": "transfer",
        **result.report(),
        "spark_conf": result.spark_conf,
        "into": result.into,
    }


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as null (a metric Spark could not compute, like the AUC
    of a one-class validation split): strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _dataset(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    if args.name == "foods":
        from vista_sql.datasets.foods import make_foods

        if args.rows is None:
            raise VistaError("dataset foods needs --rows N")
        made: Any = make_foods(
            args.out,
            rows=args.rows,
            seed=args.seed,
            image_size=args.image_size or 227,
            overwrite=args.overwrite,
        )
    elif args.name == "fashion-mnist":
        from vista_sql.datasets.fashion_mnist import make_fashion_mnist

        made = make_fashion_mnist(
            args.out,
            classes=tuple(c.strip() for c in args.classes.split(",")),
            rows=args.rows or 2000,
            seed=args.seed,
            image_size=args.image_size or 224,
            overwrite=args.overwrite,
        )
    else:
        from vista_sql.datasets.clipart_foods import make_clipart_foods

        made = make_clipart_foods(
            args.out, seed=args.seed, image_size=args.image_size or 224, overwrite=args.overwrite
        )
    seconds = time.perf_counter() - started
    print(f"wrote {made.rows} rows to {made.table_path} and {made.images_dir} in {seconds:.1f} s")
    return 0


def demo_statement(images: str, table: str, cnn: str, weights: str = "random") -> str:
    """The demo's statement: the VISTA paper's workload on a small Foods-like dataset."""
    layers = ", ".join(DEMO_LAYERS) if cnn == "alexnet" else "TOP 3"
    layers_clause = f"LAYERS ({layers})" if cnn == "alexnet" else f"LAYERS {layers}"
    weights_clause = "WEIGHTS RANDOM SEED 7" if weights == "random" else "WEIGHTS IMAGENET"
    return (
        f"TRANSFER FEATURES OF '{images}' AS i\n"
        f"  FROM CNN {cnn} {weights_clause}\n"
        f"  {layers_clause}\n"
        f"  JOIN '{table}' AS f ON i.id = f.id\n"
        "  TRAIN LOGREG (max_iter = 10, reg_param = 0.1)\n"
        "  LABEL healthy\n"
        "  VALIDATE 0.2 SEED 2019"
    )


def _demo(args: argparse.Namespace) -> int:
    import vista_sql
    from vista_sql.datasets.foods import make_foods

    out = args.out or os.path.join(tempfile.mkdtemp(prefix="vista-demo-"), "foods")
    print(f"making a Foods-like dataset of {args.rows} rows in {out} ...")
    made = make_foods(out, rows=args.rows, seed=0, image_size=227, overwrite=bool(args.out))
    sql = demo_statement(str(made.images_dir), str(made.table_path), args.cnn, args.weights)
    print(f"\n{sql};\n")
    started = time.perf_counter()
    result = vista_sql.execute(sql, progress=not args.no_progress)
    assert isinstance(result, vista_sql.TransferResult), "the demo statement is a TRANSFER"
    print(result.table())
    print(f"\nbest layer: {result.best['layer']}   ({time.perf_counter() - started:.1f} s)\n")
    print(result.explain())
    return 0


if __name__ == "__main__":
    sys.exit(main())
