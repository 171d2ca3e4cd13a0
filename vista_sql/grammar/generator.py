"""Tree -> canonical text for vista_sql's statements (the Vista generator's TRANSFORMS).

The canonical text: keywords upper case, names and paths exactly as parsed (backquoted when they
were), one space between tokens, ``name = value`` pairs separated by ``, ``, clauses in SPEC
order, optional clauses only when given, no comments and no trailing ``;``. With ``pretty=True``
each clause starts a new line indented by two spaces, and EXPLAIN's header has a line of its own::

    TRANSFER FEATURES OF 'data/foods/images' AS i
      FROM CNN vgg16 WEIGHTS RANDOM SEED 7
      LAYERS (fc6, fc7, fc8)
      JOIN 'data/foods/foods.parquet' AS f ON i.id = f.id
      TRAIN LOGREG (max_iter = 10, reg_param = (0.01, 0.1))
      LABEL healthy
      VALIDATE 0.2 SEED 2019

Names, literals, columns and tables are written by sqlglot's Spark generator, so quoting and string
escapes are Spark's and the text parses back to an equal tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlglot import exp
from sqlglot.generator import Generator

from vista_sql.grammar.expressions import (
    DescribeCnn,
    ShowCnns,
    TransferFeatures,
    VistaExplain,
    Weights,
)


def _join(generator: Generator, nodes: Sequence[exp.Expr]) -> str:
    return ", ".join(generator.sql(node) for node in nodes)


def _value_sql(generator: Generator, value: exp.Expr) -> str:
    if isinstance(value, exp.Tuple):
        return f"({_join(generator, value.expressions)})"
    return generator.sql(value)


def _assignments_sql(generator: Generator, assignments: Sequence[exp.Expr]) -> str:
    pairs = (
        f"{generator.sql(pair.this)} = {_value_sql(generator, pair.expression)}"
        for pair in assignments
    )
    return f"({', '.join(pairs)})"


def _alias_sql(generator: Generator, alias: exp.TableAlias | None) -> str:
    return f" AS {generator.sql(alias.this)}" if alias else ""


def transfer_features_sql(generator: Generator, node: TransferFeatures) -> str:
    args = node.args
    head = f"TRANSFER FEATURES OF {generator.sql(node.this)}"
    column = f" ({generator.sql(args['column'])})" if args.get("column") else ""
    alias = _alias_sql(generator, args.get("alias"))
    # A query's column follows its alias, as a derived table's column list does in SQL.
    head += alias + column if isinstance(node.this, exp.Subquery) and alias else column + alias

    source = f"FROM CNN {generator.sql(args['cnn'])}"
    if args.get("weights"):
        source += f" {generator.sql(args['weights'])}"

    if args.get("top"):
        layers = f"LAYERS TOP {generator.sql(args['top'])}"
    else:
        layers = f"LAYERS ({_join(generator, args.get('layers') or [])})"

    join = f"JOIN {generator.sql(args['join'])}{_alias_sql(generator, args.get('join_alias'))}"
    if args.get("on"):
        join += f" ON {generator.sql(args['on'])}"
    else:
        join += f" USING ({_join(generator, args.get('using') or [])})"

    clauses = [head, source, layers, join]
    if args.get("features"):
        clauses.append(f"FEATURES ({_join(generator, args['features'])})")
    train = f"TRAIN {generator.sql(args['model'])}"
    if args.get("params"):
        train += f" {_assignments_sql(generator, args['params'])}"
    clauses += [train, f"LABEL {generator.sql(args['label'])}"]
    if args.get("validate"):
        validate = f"VALIDATE {generator.sql(args['validate'])}"
        if args.get("validate_seed"):
            validate += f" SEED {generator.sql(args['validate_seed'])}"
        clauses.append(validate)
    if args.get("options"):
        clauses.append(f"WITH {_assignments_sql(generator, args['options'])}")
    if args.get("into"):
        clauses.append(f"INTO {generator.sql(args['into'])}")
    if args.get("into_table"):
        clauses.append(f"INTO TABLE {generator.sql(args['into_table'])}")
    return ("\n  " if generator.pretty else " ").join(clauses)


def weights_sql(generator: Generator, node: Weights) -> str:
    seed = node.args.get("seed")
    return f"WEIGHTS {generator.sql(node.this)}" + (f" SEED {generator.sql(seed)}" if seed else "")


def vista_explain_sql(generator: Generator, node: VistaExplain) -> str:
    header = "EXPLAIN"
    if node.args.get("mode"):
        header += f" {generator.sql(node.args['mode'])}"
    if node.args.get("format"):
        header += f" FORMAT {generator.sql(node.args['format'])}"
    separator = "\n" if generator.pretty else " "
    return f"{header}{separator}{generator.sql(node.this)}"


def describe_cnn_sql(generator: Generator, node: DescribeCnn) -> str:
    return f"DESCRIBE CNN {generator.sql(node.this)}"


def show_cnns_sql(generator: Generator, node: ShowCnns) -> str:
    return "SHOW CNNS"


TRANSFORMS: dict[type[exp.Expr], Callable[..., Any]] = {
    TransferFeatures: transfer_features_sql,
    Weights: weights_sql,
    VistaExplain: vista_explain_sql,
    DescribeCnn: describe_cnn_sql,
    ShowCnns: show_cnns_sql,
}
"""Generator functions for the vista expression classes, merged into the Vista generator."""
