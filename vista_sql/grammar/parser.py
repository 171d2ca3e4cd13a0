"""The vista statement parser: a sqlglot Spark parser whose statements are vista_sql's own.

sqlglot's ``TokenType`` is closed, so the new keywords (TRANSFER, FEATURES, LAYERS, ...) arrive as
ordinary ``VAR`` (or keyword) tokens and are matched by their text, case-insensitively. The parser
is hand-written recursive descent over the clause order of SPEC.md: each clause is one method, and
each failure names what was expected there, so a syntax error reads like the grammar.

Every node the parser builds carries its position in ``meta`` (the convention is documented in
:mod:`vista_sql.grammar.dialect`). Comments are accepted anywhere and dropped: the tree is the
statement's meaning, and its canonical text (the generator's) has none.
"""

from __future__ import annotations

import bisect
import re
from typing import Any, NoReturn

from sqlglot import exp
from sqlglot.errors import highlight_sql
from sqlglot.parsers.spark import SparkParser
from sqlglot.tokens import Token, TokenType

from vista_sql.errors import VistaSyntaxError
from vista_sql.grammar.expressions import (
    DescribeCnn,
    ShowCnns,
    TransferFeatures,
    VistaExplain,
    Weights,
)

STATEMENTS = "TRANSFER FEATURES, EXPLAIN, DESCRIBE CNN or SHOW CNNS"
"""The statements vista_sql runs, as error messages name them."""

EXPLAIN_MODES = ("LOGICAL", "COST", "VERBOSE", "ANALYZE")
EXPLAIN_FORMATS = ("TEXT", "JSON")

RESERVED_WORDS = frozenset({"as", "from", "into", "join", "on", "using", "with"})
"""Words that cannot be unquoted identifiers (backquote them): they start or separate clauses, so
reading one as a name would turn a missing name into a baffling error one clause later. All are
reserved in Spark's ANSI mode too."""

CLAUSE_ORDER = (
    "FROM",
    "WEIGHTS",
    "LAYERS",
    "JOIN",
    "FEATURES",
    "TRAIN",
    "LABEL",
    "VALIDATE",
    "WITH",
    "INTO",
)
"""The keywords that open a TRANSFER FEATURES clause, in the order the clauses must come."""

CLAUSE_LIST = "FROM CNN, WEIGHTS, LAYERS, JOIN, FEATURES, TRAIN, LABEL, VALIDATE, WITH, INTO"

_WORD = re.compile(r"\w+")
_UNSIGNED_INTEGER = re.compile(r"\d+")

_STRING_TOKENS = frozenset({TokenType.STRING, TokenType.RAW_STRING})
_NOT_NAMES = SparkParser.TEXT_MATCH_EXCLUDED_TOKENS | {TokenType.NUMBER}


class VistaParser(SparkParser):
    """Parses TRANSFER FEATURES, EXPLAIN, DESCRIBE CNN and SHOW CNNS; rejects everything else.

    Spark SQL statements (SELECT, CREATE, ...) are syntax errors that say which statements vista_sql
    runs: it could parse them, but it cannot run them, and a silent Spark tree would only fail later
    with a worse message.
    """

    _line_starts: list[int]
    _lines_of: str | None = None
    _in_query: bool = False
    """Whether a parenthesized Spark SQL source is being read: its statements are Spark's."""

    # ---------------------------------------------------------------- statements

    def _parse_statement(self) -> exp.Expr | None:
        if self._in_query:  # a CTE's body inside a (WITH ... SELECT ...) source
            return super()._parse_statement()
        if not self._curr:
            return None
        if self._curr.token_type == TokenType.SEMICOLON:
            # The `;` that sqlglot keeps alone to carry the comments that follow it.
            self._advance()
            return None
        if self._lines_of is not self.sql:
            self._line_starts = [0, *(m.end() for m in re.finditer("\n", self.sql))]
            self._lines_of = self.sql
        statement = self._statement()
        if self._curr:
            self._fail(self._leftover_expectation(statement), order_hint=True)
        return statement

    def _statement(self) -> exp.Expr:
        first = self._curr
        if self._match_text_seq("TRANSFER"):
            return self._transfer(first)
        if self._match_text_seq("EXPLAIN"):
            return self._explain(first)
        if self._match_text_seq("DESCRIBE"):
            self._keyword("CNN", "CNN after DESCRIBE (DESCRIBE CNN <cnn>)")
            name = self._name("the CNN name after DESCRIBE CNN")
            return self._spanning(DescribeCnn(this=name), first)
        if self._match_text_seq("SHOW"):
            self._keyword("CNNS", "CNNS after SHOW (SHOW CNNS)")
            return self._spanning(ShowCnns(), first)
        self._fail(f"Expected a statement: {STATEMENTS} (vista_sql runs only these)")

    def _explain(self, first: Token) -> VistaExplain:
        mode = self._var_if(EXPLAIN_MODES)
        format_ = None
        if self._match_text_seq("FORMAT"):
            format_ = self._var_if(EXPLAIN_FORMATS)
            if format_ is None:
                self._fail("Expected TEXT or JSON after FORMAT")
        transfer = self._curr
        if not self._match_text_seq("TRANSFER"):
            if format_:
                self._fail("Expected TRANSFER FEATURES after EXPLAIN ... FORMAT")
            if mode:
                self._fail(f"Expected FORMAT or TRANSFER FEATURES after EXPLAIN {mode.name}")
            modes = ", ".join(EXPLAIN_MODES)
            self._fail(f"Expected {modes}, FORMAT or TRANSFER FEATURES after EXPLAIN")
        statement = self._transfer(transfer)
        return self._spanning(VistaExplain(this=statement, mode=mode, format=format_), first)

    # ---------------------------------------------------------------- TRANSFER FEATURES

    def _transfer(self, first: Token) -> TransferFeatures:
        clauses: dict[str, dict[str, Any]] = {}
        self._keyword("FEATURES", "FEATURES after TRANSFER (TRANSFER FEATURES OF <images>)")
        self._keyword("OF", "OF after TRANSFER FEATURES (TRANSFER FEATURES OF <images>)")
        args: dict[str, Any] = {
            "this": self._source("the image source after TRANSFER FEATURES OF"),
        }
        if self._match(TokenType.L_PAREN):
            args["column"] = self._image_column()
        args["alias"] = self._alias()
        if args["alias"] is not None and "column" not in args and self._match(TokenType.L_PAREN):
            # A subquery names its column after its alias, as a derived table does in SQL.
            args["column"] = self._image_column()

        start = self._curr
        self._keyword("FROM", "FROM CNN <cnn>", clause=True)
        self._keyword("CNN", "CNN after FROM (FROM CNN <cnn>)")
        args["cnn"] = self._name("the CNN name after FROM CNN")
        clauses["cnn"] = self._span(start)

        start = self._curr
        if self._match_text_seq("WEIGHTS"):
            args["weights"] = self._spanning(self._weights(), start)
            clauses["weights"] = self._span(start)

        start = self._curr
        self._layers(args)
        clauses["layers"] = self._span(start)

        start = self._curr
        self._join(args)
        clauses["join"] = self._span(start)

        start = self._curr
        if self._match_text_seq("FEATURES"):
            args["features"] = self._name_list("FEATURES", "a structured column name", "<column>")
            clauses["features"] = self._span(start)

        start = self._curr
        self._keyword("TRAIN", "TRAIN <model>", clause=True)
        args["model"] = self._name("the model name after TRAIN (e.g. LOGREG)")
        if self._match(TokenType.L_PAREN):
            args["params"] = self._assignments("parameter", allow_grid=True)
        clauses["train"] = self._span(start)

        start = self._curr
        self._keyword("LABEL", "LABEL <column>", clause=True)
        args["label"] = self._name("the label column name after LABEL")
        clauses["label"] = self._span(start)

        start = self._curr
        if self._match_text_seq("VALIDATE"):
            args["validate"] = self._number("a fraction after VALIDATE (e.g. VALIDATE 0.2)")
            if self._match_text_seq("SEED"):
                args["validate_seed"] = self._integer("an integer after SEED", signed=True)
            clauses["validate"] = self._span(start)

        start = self._curr
        if self._match(TokenType.WITH):
            self._opening_paren("after WITH (WITH (<option> = <value>, ...))")
            args["options"] = self._assignments("option", allow_grid=False)
            clauses["options"] = self._span(start)

        start = self._curr
        if self._match(TokenType.INTO):
            if self._match(TokenType.TABLE):
                args["into_table"] = self._table_name("a table name after INTO TABLE")
            else:
                args["into"] = self._string("a directory path in quotes or TABLE <name> after INTO")
            clauses["into"] = self._span(start)

        node = self._spanning(TransferFeatures(**args), first)
        node.meta["clauses"] = clauses
        return node

    def _image_column(self) -> exp.Identifier:
        """The image column's name, after its opening parenthesis."""
        column = self._name("the image column name in parentheses")
        self._closing_paren("after the image column")
        return column

    def _source(self, what: str) -> exp.Expr:
        """A table name (``name``, ``db.name``, ``catalog.db.name``), a string path, or a
        parenthesized Spark SQL query (``exp.Subquery``), which Spark's own grammar reads."""
        first = self._curr
        if first and first.token_type in _STRING_TOKENS:
            return self._string(what)
        if first and first.token_type == TokenType.L_PAREN:
            return self._subquery(what)
        if not self._is_name(first):
            self._fail(
                f"Expected {what}: a table name, a 'path' or a (SELECT ...) query",
                hint=self._reserved_hint(),
            )
        return self._table_name(what)

    def _subquery(self, what: str) -> exp.Subquery:
        first = self._curr
        self._advance()
        if not self._curr or self._curr.token_type not in (TokenType.SELECT, TokenType.WITH):
            self._fail(f"Expected SELECT or WITH after '(' in {what}: (SELECT ...)")
        self._in_query = True
        try:
            query = self._parse_select(parse_subquery_alias=False)
        finally:
            self._in_query = False
        if query is None:
            self._fail(f"Expected a Spark SQL query in {what}")
        self._closing_paren(f"after the query in {what}")
        return self._spanning(exp.Subquery(this=query), first)

    def _table_name(self, what: str) -> exp.Table:
        first = self._curr
        if not self._is_name(first):
            self._fail(f"Expected {what}", hint=self._reserved_hint())
        parts = [self._name(what)]
        while len(parts) < 3 and self._match(TokenType.DOT):
            parts.append(self._name("a name after '.'"))
        catalog, db = [None] * (3 - len(parts)) + parts[:-1]
        return self._spanning(exp.Table(this=parts[-1], db=db, catalog=catalog), first)

    def _alias(self) -> exp.TableAlias | None:
        if not self._match(TokenType.ALIAS):
            return None
        name = self._name("an alias after AS")
        return exp.TableAlias(this=name).update_positions(name)

    def _weights(self) -> Weights:
        choice = self._curr
        if choice and choice.token_type in _STRING_TOKENS:
            return Weights(this=self._string("a weights file"))
        kind = self._var_if(("IMAGENET", "RANDOM"))
        if kind is None:
            self._fail("Expected WEIGHTS IMAGENET, WEIGHTS RANDOM [SEED <n>] or WEIGHTS '<file>'")
        seed = None
        if kind.name == "RANDOM" and self._match_text_seq("SEED"):
            seed = self._integer("an integer after SEED", signed=True)
        return Weights(this=kind, seed=seed)

    def _layers(self, args: dict[str, Any]) -> None:
        expected = "LAYERS (<layer>, ...) or LAYERS TOP <k>"
        self._keyword("LAYERS", expected, clause=True)
        if self._match_text_seq("TOP"):
            args["top"] = self._integer("a number of layers after LAYERS TOP", signed=False)
        elif self._curr and self._curr.token_type == TokenType.L_PAREN:
            args["layers"] = self._name_list("LAYERS", "a layer name", "<layer>")
        else:
            self._fail(f"Expected {expected}")

    def _join(self, args: dict[str, Any]) -> None:
        self._keyword("JOIN", "JOIN <table> (ON ... | USING (<key>))", clause=True)
        args["join"] = self._source("the structured source after JOIN")
        args["join_alias"] = self._alias()
        if self._match(TokenType.ON):
            first = self._curr
            left = self._qualified_column()
            if not self._match(TokenType.EQ):
                self._fail("Expected = between the join keys (ON <a>.<key> = <b>.<key>)")
            right = self._qualified_column()
            args["on"] = self._spanning(exp.EQ(this=left, expression=right), first)
        elif self._match(TokenType.USING):
            args["using"] = self._name_list("USING", "a join key", "<key>")
        else:
            self._fail("Expected ON <a>.<key> = <b>.<key> or USING (<key>) after the JOIN source")

    def _qualified_column(self) -> exp.Column:
        expected = "a qualified join key (ON <a>.<key> = <b>.<key>)"
        first = self._curr
        qualifier = self._name(expected)
        if not self._match(TokenType.DOT):
            self._fail(f"Expected '.' and the key after {qualifier.name}: {expected}")
        key = self._name(expected)
        return self._spanning(exp.Column(this=key, table=qualifier), first)

    # ---------------------------------------------------------------- lists and values

    def _name_list(self, clause: str, name: str, placeholder: str) -> list[exp.Identifier]:
        """``(name, ...)`` after ``clause``."""
        self._opening_paren(f"after {clause}: {clause} ({placeholder}, ...)")
        what = f"{name} in {clause} (...)"
        names = [self._name(what)]
        while self._match(TokenType.COMMA):
            names.append(self._name(what))
        self._closing_paren(f"after {what}", comma=True)
        return names

    def _assignments(self, kind: str, allow_grid: bool) -> list[exp.EQ]:
        """``name = value, ...)`` after the opening parenthesis: TRAIN params or WITH options."""
        assignments = []
        while True:
            article = "an" if kind[0] in "aeiou" else "a"
            name = self._name(f"{article} {kind} name", allow_reserved=True)
            if not self._match(TokenType.EQ):
                self._fail(f"Expected = after the {kind} name {name.name}")
            value = self._value(kind, allow_grid)
            assignment = exp.EQ(this=name, expression=value)
            assignment.meta.update(self._span_between(name.meta["start"], self._prev))
            assignments.append(assignment)
            if not self._match(TokenType.COMMA):
                break
        self._closing_paren(f"after the value of {kind} {name.name}", comma=True)
        return assignments

    def _value(self, kind: str, allow_grid: bool) -> exp.Expr:
        expected = f"a value for the {kind}: a number, a 'string', TRUE, FALSE or a name"
        first = self._curr
        if allow_grid and self._match(TokenType.L_PAREN):
            values = [self._scalar(expected)]
            while self._match(TokenType.COMMA):
                values.append(self._scalar(expected))
            self._closing_paren("after the grid of values", comma=True)
            return self._spanning(exp.Tuple(expressions=values), first)
        if first and first.token_type == TokenType.L_PAREN:
            self._fail(f"Expected {expected} (value lists are for TRAIN parameters only)")
        return self._scalar(expected)

    def _scalar(self, expected: str) -> exp.Expr:
        token = self._curr
        if not token:
            self._fail(f"Expected {expected}")
        if token.token_type in _STRING_TOKENS:
            return self._string(expected)
        if token.token_type in (TokenType.TRUE, TokenType.FALSE):
            self._advance()
            return self._at(exp.Boolean(this=token.token_type == TokenType.TRUE), token)
        if token.token_type in (TokenType.NUMBER, TokenType.DASH, TokenType.PLUS, TokenType.DOT):
            return self._number(expected)
        if token.token_type == TokenType.VAR or (
            self._is_name(token, allow_reserved=True) and token.token_type != TokenType.IDENTIFIER
        ):
            # Bare words, also ones Spark reads as one token though they start with a digit (24g).
            self._advance()
            return self._at(exp.Var(this=token.text), token)
        self._fail(f"Expected {expected}")

    def _number(self, expected: str) -> exp.Literal:
        """A number, optionally signed; ``.5`` reads as ``0.5``. Kept as its text, like sqlglot."""
        first = self._curr
        sign = ""
        if self._match_set((TokenType.DASH, TokenType.PLUS)):
            sign = "-" if self._prev.token_type == TokenType.DASH else ""
        leading_dot = self._match(TokenType.DOT)
        token = self._curr
        if not token or token.token_type != TokenType.NUMBER or (leading_dot and "." in token.text):
            self._fail(f"Expected {expected}")
        try:
            float(token.text)
        except ValueError:
            self._fail(f"Expected {expected}")
        self._advance()
        text = f"{sign}{'0.' if leading_dot else ''}{token.text}"
        return self._spanning(exp.Literal(this=text, is_string=False), first)

    def _integer(self, expected: str, signed: bool) -> exp.Literal:
        first = self._curr
        if not signed and first and first.token_type in (TokenType.DASH, TokenType.PLUS):
            self._fail(f"Expected {expected}")
        literal = self._number(expected)
        if not _UNSIGNED_INTEGER.fullmatch(literal.name.lstrip("-")):
            self._fail(f"Expected {expected}, found {literal.name!r}", first)
        return literal

    def _string(self, expected: str) -> exp.Literal:
        """A string literal; adjacent ones concatenate, as in Spark SQL (``'a' 'b'`` = ``'ab'``)."""
        first = self._curr
        if not first or first.token_type not in _STRING_TOKENS:
            self._fail(f"Expected {expected}")
        parts = []
        while self._curr and self._curr.token_type in _STRING_TOKENS:
            parts.append(self._curr.text)
            self._advance()
        return self._spanning(exp.Literal(this="".join(parts), is_string=True), first)

    def _name(self, expected: str, allow_reserved: bool = False) -> exp.Identifier:
        """An identifier. Reserved words are names only where no clause can start (option names)."""
        token = self._curr
        if not self._is_name(token, allow_reserved):
            self._fail(f"Expected {expected}", hint=self._reserved_hint())
        self._advance()
        quoted = token.token_type == TokenType.IDENTIFIER
        return self._at(exp.Identifier(this=token.text, quoted=quoted), token)

    def _reserved_hint(self) -> str:
        token = self._curr
        if token and token.token_type not in _NOT_NAMES and token.text.lower() in RESERVED_WORDS:
            return f" (a keyword: to use it as a name, write `{token.text}`)"
        return ""

    @staticmethod
    def _is_name(token: Token | None, allow_reserved: bool = False) -> bool:
        """A backquoted identifier, or a word that is not reserved (LABEL, TOP... are names)."""
        if not token:
            return False
        if token.token_type == TokenType.IDENTIFIER:
            return True
        if not allow_reserved and token.text.lower() in RESERVED_WORDS:
            return False
        return token.token_type not in _NOT_NAMES and _WORD.fullmatch(token.text) is not None

    def _var_if(self, words: tuple[str, ...]) -> exp.Var | None:
        """One of ``words`` as an upper-case ``exp.Var``, or None (nothing consumed)."""
        token = self._curr
        if token and self._match_texts(words):
            return self._at(exp.Var(this=token.text.upper()), token)
        return None

    # ---------------------------------------------------------------- punctuation and keywords

    def _keyword(self, word: str, expected: str, clause: bool = False) -> None:
        if not self._match_text_seq(word):
            self._fail(f"Expected {expected}", clause=word if clause else None)

    def _opening_paren(self, where: str) -> None:
        if not self._match(TokenType.L_PAREN):
            self._fail(f"Expected ( {where}")

    def _closing_paren(self, where: str, comma: bool = False) -> None:
        if not self._match(TokenType.R_PAREN):
            self._fail(f"Expected {', or ' if comma else ''}) {where}")

    def _leftover_expectation(self, statement: exp.Expr) -> str:
        """What could have followed a complete statement, for the error about what did."""
        transfer = statement.this if isinstance(statement, VistaExplain) else statement
        if not isinstance(transfer, TransferFeatures):
            return "Expected ; or the end of the input after the statement"
        trailing = (
            ("VALIDATE", ("validate",)),
            ("WITH", ("options",)),
            ("INTO", ("into", "into_table")),
        )
        given = [
            i
            for i, (_, names) in enumerate(trailing)
            if any(transfer.args.get(name) is not None for name in names)
        ]
        still_allowed = [word for word, _ in trailing[given[-1] + 1 if given else 0 :]]
        return f"Expected {', '.join([*still_allowed, ';'])} or the end of the input"

    # ---------------------------------------------------------------- positions and errors

    def _position(self, start: int, end: int) -> dict[str, int]:
        """``line`` and ``col`` (1-based) of the first character; ``start``/``end`` offsets."""
        line = bisect.bisect_right(self._line_starts, start)
        col = start - self._line_starts[line - 1] + 1
        return {"line": line, "col": col, "start": start, "end": end}

    def _at(self, node: exp.Expr, token: Token) -> Any:
        node.meta.update(self._position(token.start, token.end))
        return node

    def _span_between(self, start: int, last: Token) -> dict[str, int]:
        return self._position(start, max(start, last.end))

    def _span(self, first: Token) -> dict[str, int]:
        """The text from ``first`` to the last token consumed."""
        return self._span_between(first.start, self._prev)

    def _spanning(self, node: exp.Expr, first: Token) -> Any:
        node.meta.update(self._span(first))
        return node

    def _fail(
        self,
        description: str,
        token: Token | None = None,
        clause: str | None = None,
        order_hint: bool = False,
        hint: str = "",
    ) -> NoReturn:
        """Raise a VistaSyntaxError at ``token``, else at the current token (saying what was found).

        ``clause``: the clause keyword that was expected. When a clause that belongs later stands
        here instead, the expected clause is missing ("Expected LABEL <column> before VALIDATE");
        when one that belongs earlier does, it is out of place, and the error gives the order
        (as it does with ``order_hint``, for what follows a complete statement). ``hint`` follows
        what was found.
        """
        if token is not None:
            raise self._error(description, token)
        found = self._curr
        if not found:
            raise self._error(f"{description}, found the end of the statement", self._prev)
        keyword = found.text.upper() if found.token_type not in _NOT_NAMES else ""
        if (
            clause
            and keyword in CLAUSE_ORDER
            and (CLAUSE_ORDER.index(keyword) > CLAUSE_ORDER.index(clause))
        ):
            raise self._error(f"{description} before {keyword}", found)
        description += f", found {found.text!r}{hint}"
        if (clause or order_hint) and keyword in CLAUSE_ORDER:
            description += f"; the clauses go in this order: {CLAUSE_LIST}"
        raise self._error(description, found)

    def _error(self, description: str, token: Token | None) -> VistaSyntaxError:
        if token is None:
            start = end = len(self.sql)
        else:
            start, end = token.start, token.end
        return syntax_error(description, self.sql, start, end)

    def raise_error(self, message: str, token: Token | None = None) -> None:
        """sqlglot's own checks (e.g. a required argument) raise the same error type as ours."""
        raise self._error(message, token or self._curr or self._prev)


def syntax_error(description: str, sql: str, start: int, end: int) -> VistaSyntaxError:
    """A VistaSyntaxError highlighting ``sql[start:end + 1]``, with sqlglot's error fields.

    ``line`` and ``col`` are those of the first highlighted character (1-based), where sqlglot
    itself reports the last one: an error should point where the offending text begins.
    """
    start = max(0, min(start, len(sql)))
    end = max(start, min(end, len(sql) - 1)) if sql else start
    line = sql.count("\n", 0, start) + 1
    col = start - (sql.rfind("\n", 0, start) + 1) + 1
    formatted, start_context, highlight, end_context = highlight_sql(
        sql=sql, positions=[(start, end)], context_length=100
    )
    message = f"{description}. Line {line}, Col: {col}.\n  {formatted}"
    return VistaSyntaxError(
        message,
        [
            {
                "description": description,
                "line": line,
                "col": col,
                "start_context": start_context,
                "highlight": highlight,
                "end_context": end_context,
                "into_expression": None,
            }
        ],
    )
