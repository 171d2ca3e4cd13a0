"""The syntax tree of vista_sql's statements: sqlglot expressions beside sqlglot's own.

Sources, keys, columns and values reuse sqlglot's nodes (``exp.Table`` for an identifier source,
``exp.Literal`` for a path, ``exp.Identifier``, ``exp.Column``, ``exp.EQ``, ``exp.Tuple``), so their
positions (``meta`` line/col/start/end) are kept and semantic errors can point at the text
(:mod:`vista_sql.grammar.dialect` documents the convention and which nodes carry one).

Names are ``exp.Identifier``: ``quoted`` when backquoted, text exactly as written (case kept; the
checks decide what is case-insensitive). A *value* (a TRAIN parameter's or a WITH option's) is one
of: ``exp.Literal`` number (its text as written, a sign included: ``-0.5``, ``1e-3``; ``.5`` reads
``0.5``; ``float(text)`` always works), ``exp.Literal`` string, ``exp.Boolean`` (TRUE / FALSE), or
``exp.Var`` for a bare word (``eager``, ``auto``; also Spark's one-token words that start with a
digit, like ``24g``). A parameter's value may also be an ``exp.Tuple`` of such values: a grid.
Optional parts not given are missing from ``args`` or None: read them with ``args.get``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.dialects.dialect import DialectType


class VistaNode(exp.Expression):
    """Base of vista_sql's statement nodes: ``str(node)`` and ``node.sql()`` write vista text.

    sqlglot's default dialect cannot generate these nodes, and ``str()`` is what debuggers,
    f-strings and pytest's assertion messages call; an explicit ``dialect`` is used as given.
    """

    def sql(self, dialect: DialectType = None, copy: bool = True, **opts: Any) -> str:
        # By name: sqlglot's dialect registry knows "vista" once ``grammar.dialect`` is imported,
        # which the package's ``__init__`` does before anything can build these nodes.
        return super().sql(dialect="vista" if dialect is None else dialect, copy=copy, **opts)


class TransferFeatures(VistaNode):
    """TRANSFER FEATURES OF <image source> FROM CNN ... JOIN ... TRAIN ... LABEL ...

    Args:
        this: the image source, ``exp.Table`` (a name: ``this``, with ``db`` and ``catalog`` when
            qualified) or a string ``exp.Literal`` (a path).
        column: ``exp.Identifier``, the image column given in parentheses.
        alias: ``exp.TableAlias`` of the image source (``AS`` is required).
        cnn: ``exp.Identifier``, the CNN name.
        weights: ``Weights``.
        layers: list of ``exp.Identifier`` (LAYERS (...)).
        top: integer ``exp.Literal`` (LAYERS TOP k); exactly one of layers / top is set.
        join: the structured source, ``exp.Table`` or string ``exp.Literal``.
        join_alias: ``exp.TableAlias`` of the structured source.
        on: ``exp.EQ`` of two ``exp.Column``, each with ``table`` (the qualifier) and ``this``
            (the key): ON a.key = b.key. Exactly one of on / using is set.
        using: list of ``exp.Identifier`` (USING (key, ...); SPEC.md allows one key).
        features: list of ``exp.Identifier`` (FEATURES (...)).
        model: ``exp.Identifier``, the downstream model (LOGREG, ...).
        params: list of ``exp.EQ(this=exp.Identifier, expression=value or exp.Tuple of values)``.
        label: ``exp.Identifier``.
        validate: numeric ``exp.Literal``, possibly signed; validate_seed: integer
            ``exp.Literal``, possibly negative.
        options: list of ``exp.EQ(this=exp.Identifier, expression=value)`` (WITH (...)).
        into: string ``exp.Literal`` (INTO '<dir>').
        into_table: ``exp.Table`` (INTO TABLE <name>); at most one of into / into_table is set.

    A source (``this``, ``join``) may also be an ``exp.Subquery`` holding a Spark SQL query
    (``(SELECT ...)``); the image column of such a source is written after its alias.
    """

    arg_types: ClassVar[dict[str, bool]] = {
        "this": True,
        "column": False,
        "alias": False,
        "cnn": True,
        "weights": False,
        "layers": False,
        "top": False,
        "join": True,
        "join_alias": False,
        "on": False,
        "using": False,
        "features": False,
        "model": True,
        "params": False,
        "label": True,
        "validate": False,
        "validate_seed": False,
        "options": False,
        "into": False,
        "into_table": False,
    }


class Weights(VistaNode):
    """WEIGHTS IMAGENET | WEIGHTS RANDOM [SEED n] | WEIGHTS '<file>'.

    Args:
        this: ``exp.Var`` IMAGENET or RANDOM (upper case), or a string ``exp.Literal`` (a file).
        seed: integer ``exp.Literal``, possibly negative (RANDOM only).
    """

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "seed": False}


class VistaExplain(VistaNode):
    """EXPLAIN [LOGICAL | COST | VERBOSE | ANALYZE] [FORMAT TEXT | FORMAT JSON] <statement>.

    Args:
        this: the explained statement (``TransferFeatures``).
        mode: ``exp.Var`` LOGICAL, COST, VERBOSE or ANALYZE (upper case); absent for EXPLAIN.
        format: ``exp.Var`` TEXT or JSON (upper case); absent means TEXT.
    """

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "mode": False, "format": False}


class DescribeCnn(VistaNode):
    """DESCRIBE CNN <name>. ``this`` is an ``exp.Identifier``."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True}


class ShowCnns(VistaNode):
    """SHOW CNNS."""

    arg_types: ClassVar[dict[str, bool]] = {}
