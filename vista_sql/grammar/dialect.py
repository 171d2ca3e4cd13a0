"""The ``vista`` sqlglot dialect: Spark SQL's tokens, quoting and literals, vista_sql's statements.

Public API::

    parse(sql) -> list[exp.Expr]     # one tree per ;-separated statement (empty ones skipped)
    parse_one(sql) -> exp.Expr       # exactly one statement
    origin(node) -> Origin | None    # where a node is in the text, for errors
    tree.sql(dialect="vista")        # canonical text; pretty=True puts one clause per line

Statements: TRANSFER FEATURES, EXPLAIN [LOGICAL|COST|VERBOSE|ANALYZE] [FORMAT TEXT|JSON] TRANSFER
FEATURES ..., DESCRIBE CNN, SHOW CNNS (trees: :mod:`vista_sql.grammar.expressions`). Anything else,
Spark SQL included, is a syntax error that names these: vista_sql could not run it.

Errors: every failure to parse, including text the tokenizer cannot read and any exception sqlglot
may raise on garbage, is a :class:`~vista_sql.errors.VistaSyntaxError` (a VistaError and a sqlglot
ParseError) whose ``errors[0]`` holds ``description`` ("Expected ..., found ..."), ``line`` and
``col`` of the first offending character (1-based), and ``start_context``/``highlight``/
``end_context``.

Positions: the parser sets ``meta`` on every node it builds: ``line`` and ``col`` (1-based) of the
node's first character and ``start``/``end``, 0-based inclusive offsets into the text given to
``parse``. (sqlglot's own tokens report the column of the *last* character; here, as in the errors,
the column is where the text begins.) Nodes with positions:

- every ``exp.Identifier`` (names: image column, aliases, CNN, layers, join keys and qualifiers,
  features, model, parameter and option names, label, DESCRIBE CNN's name);
- every ``exp.Literal`` (paths, weights file, TOP k, seeds, VALIDATE fraction, numeric and string
  values; a signed number spans its sign), ``exp.Boolean`` and ``exp.Var`` (bare-word values,
  IMAGENET/RANDOM, EXPLAIN's mode and format words);
- ``exp.Table`` sources (all their parts), ``exp.TableAlias`` (as its identifier),
  ``exp.Column`` join keys (``a.key``), ``exp.EQ`` (``ON`` condition; each ``name = value``),
  ``exp.Tuple`` grids (parentheses included), ``Weights`` (from the WEIGHTS keyword);
- the statements (``TransferFeatures``, ``VistaExplain``, ``DescribeCnn``, ``ShowCnns``), from their
  first keyword to their last token. ``TransferFeatures.meta["clauses"]`` maps each clause given
  (``cnn``, ``weights``, ``layers``, ``join``, ``features``, ``train``, ``label``, ``validate``,
  ``options``, ``into``) to the position of the whole clause, keyword included.

Positions are metadata: they are kept by ``copy()`` but take no part in equality, so a tree parsed
from canonical text equals the tree parsed from the original.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.dialects.spark import Spark
from sqlglot.errors import ParseError, TokenError
from sqlglot.generators.spark import SparkGenerator
from sqlglot.tokens import Token, TokenType

from vista_sql.errors import Origin, VistaSyntaxError
from vista_sql.grammar.generator import TRANSFORMS
from vista_sql.grammar.parser import STATEMENTS, VistaParser, syntax_error

__all__ = ["Vista", "origin", "parse", "parse_one"]


class Vista(Spark):
    """Spark SQL plus TRANSFER FEATURES, EXPLAIN modes, DESCRIBE CNN and SHOW CNNS.

    Registered with sqlglot as ``"vista"`` when this module is imported.
    """

    class Tokenizer(Spark.Tokenizer):
        # Spark reads EXPLAIN and SHOW as opaque commands (the rest of the statement one string);
        # vista_sql parses what follows them, and runs no other command.
        COMMANDS: ClassVar[set[TokenType]] = set()
        # Hive's 10L / 2Y number suffixes would read `memory = 24g`-like typos as casts.
        NUMERIC_LITERALS: ClassVar[dict[str, str]] = {}

    Parser = VistaParser

    class Generator(SparkGenerator):
        TRANSFORMS: ClassVar = {**SparkGenerator.TRANSFORMS, **TRANSFORMS}

    def tokenize(self, sql: str, dialect: Any = None) -> list[Token]:
        tokenizer = self.tokenizer(dialect=dialect)
        try:
            return tokenizer.tokenize(sql)
        except TokenError as error:
            raise _unreadable(sql, tokenizer, error) from error

    def parse(self, sql: str, **opts: Any) -> list[exp.Expr | None]:
        """sqlglot's parse, raising nothing but VistaSyntaxError."""
        if not isinstance(sql, str):
            raise VistaSyntaxError(
                f"Expected the statement text as a str, got {type(sql).__name__}"
            )
        try:
            return super().parse(sql, **opts)
        except VistaSyntaxError:
            raise
        except ParseError as error:
            fields = error.errors[0] if error.errors else {}
            raise syntax_error(str(fields.get("description") or error), sql, 0, 0) from error
        except Exception as error:  # garbage must never escape as an internal error
            description = f"Cannot parse the statement ({type(error).__name__}: {error})"
            raise syntax_error(description, sql, 0, len(sql) - 1) from error


_DIALECT = Vista()


def parse(sql: str) -> list[exp.Expr]:
    """The statements in ``sql``, one tree each; empty statements between ``;`` are skipped.

    Raises VistaSyntaxError, also when ``sql`` holds no statement at all.
    """
    trees = [tree for tree in _DIALECT.parse(sql) if tree is not None]
    if not trees:
        raise syntax_error(
            f"Expected a statement: {STATEMENTS}; the input has none", sql, len(sql), len(sql)
        )
    return trees


def parse_one(sql: str) -> exp.Expr:
    """The one statement in ``sql`` (a trailing ``;`` is fine); several are a VistaSyntaxError."""
    trees = parse(sql)
    if len(trees) > 1:
        second = origin(trees[1])
        start = second.start if second else 0
        first_word = re.match(r"\S+", sql[start:])
        end = start + (first_word.end() - 1 if first_word else 0)
        raise syntax_error(f"Expected exactly one statement, found {len(trees)}", sql, start, end)
    return trees[0]


def origin(node: exp.Expr) -> Origin | None:
    """Where ``node`` is in the parsed text, or None for a node the parser did not build."""
    meta = node.meta_get("start")
    if meta is None:
        return None
    return Origin(line=node.meta["line"], col=node.meta["col"], start=meta, end=node.meta["end"])


def _unreadable(sql: str, tokenizer: Any, error: TokenError) -> VistaSyntaxError:
    """The tokenizer's error, pointing where the unreadable token starts."""
    start = getattr(getattr(tokenizer, "_core", None), "_start", 0)
    opening = sql[start : start + 2]
    if opening.startswith("/*"):
        description = "Expected */ to close the comment that starts here"
    elif opening[:1] in "'\"`" and opening:
        description = f"Expected a closing {opening[0]} for the text that starts here"
    elif opening[:1] in "rRxXbB" and opening[1:2] in ("'", '"'):
        description = f"Expected a closing {opening[1]} for the text that starts here"
    else:
        cause = error.__cause__ or error
        description = f"Expected text that Spark SQL can read ({cause})"
    return syntax_error(description, sql, start, start)
