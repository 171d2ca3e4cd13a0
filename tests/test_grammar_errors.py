"""Syntax errors: typical mistakes, compared field by field (description, line, col, highlight)."""

from __future__ import annotations

import pytest
from sqlglot.errors import ParseError

from vista_sql.errors import VistaError, VistaSyntaxError
from vista_sql.grammar.dialect import parse, parse_one

GOOD = """TRANSFER FEATURES OF images AS i
  FROM CNN vgg16
  LAYERS (fc6, fc7)
  JOIN foods AS f ON i.id = f.id
  TRAIN logreg
  LABEL y"""

ORDER = "FROM CNN, WEIGHTS, LAYERS, JOIN, FEATURES, TRAIN, LABEL, VALIDATE, WITH, INTO"

CASES = [
    pytest.param(
        "",
        "Expected a statement: TRANSFER FEATURES, EXPLAIN, DESCRIBE CNN or SHOW CNNS; "
        "the input has none",
        (1, 1, ""),
        id="empty input",
    ),
    pytest.param(
        "  -- only a comment\n;",
        "Expected a statement: TRANSFER FEATURES, EXPLAIN, DESCRIBE CNN or SHOW CNNS; "
        "the input has none",
        (2, 2, ""),
        id="comment only",
    ),
    pytest.param(
        "SELECT * FROM foods",
        "Expected a statement: TRANSFER FEATURES, EXPLAIN, DESCRIBE CNN or SHOW CNNS "
        "(vista_sql runs only these), found 'SELECT'",
        (1, 1, "SELECT"),
        id="spark statement",
    ),
    pytest.param(
        GOOD.replace("  FROM CNN vgg16\n", ""),
        "Expected FROM CNN <cnn> before LAYERS",
        (2, 3, "LAYERS"),
        id="missing FROM CNN",
    ),
    pytest.param(
        GOOD.replace("LAYERS (fc6, fc7)", "LAYER (fc6, fc7)"),
        "Expected LAYERS (<layer>, ...) or LAYERS TOP <k>, found 'LAYER'",
        (3, 3, "LAYER"),
        id="misspelled LAYERS",
    ),
    pytest.param(
        GOOD.replace("LAYERS (fc6, fc7)", "LAYERS fc6"),
        "Expected LAYERS (<layer>, ...) or LAYERS TOP <k>, found 'fc6'",
        (3, 10, "fc6"),
        id="layers without parentheses",
    ),
    pytest.param(
        GOOD.replace("LAYERS (fc6, fc7)", "LAYERS (fc6 fc7)"),
        "Expected , or ) after a layer name in LAYERS (...), found 'fc7'",
        (3, 15, "fc7"),
        id="missing comma",
    ),
    pytest.param(
        GOOD.replace("TRAIN logreg", "FEATURES x1, x2\n  TRAIN logreg"),
        "Expected ( after FEATURES: FEATURES (<column>, ...), found 'x1'",
        (5, 12, "x1"),
        id="FEATURES without parentheses",
    ),
    pytest.param(
        GOOD.replace("LAYERS (fc6, fc7)", "LAYERS TOP 2.5"),
        "Expected a number of layers after LAYERS TOP, found '2.5'",
        (3, 14, "2.5"),
        id="fractional TOP",
    ),
    pytest.param(
        GOOD.replace("vgg16", "vgg16 WEIGHTS PRETRAINED"),
        "Expected WEIGHTS IMAGENET, WEIGHTS RANDOM [SEED <n>] or WEIGHTS '<file>', "
        "found 'PRETRAINED'",
        (2, 26, "PRETRAINED"),
        id="unknown weights",
    ),
    pytest.param(
        GOOD.replace("ON i.id = f.id", "ON id = id"),
        "Expected '.' and the key after id: a qualified join key "
        "(ON <a>.<key> = <b>.<key>), found '='",
        (4, 25, "="),
        id="unqualified join key",
    ),
    pytest.param(
        GOOD.replace("  LABEL y", ""),
        "Expected LABEL <column>, found the end of the statement",
        (5, 9, "logreg"),
        id="missing LABEL",
    ),
    pytest.param(
        GOOD.replace("TRAIN logreg", "TRAIN logreg FEATURES (x1)"),
        f"Expected LABEL <column>, found 'FEATURES'; the clauses go in this order: {ORDER}",
        (5, 16, "FEATURES"),
        id="clause out of order",
    ),
    pytest.param(
        GOOD + " VALIDATE 0.2 SEED 1.5",
        "Expected an integer after SEED, found '1.5'",
        (6, 29, "1.5"),
        id="fractional SEED",
    ),
    pytest.param(
        GOOD + "\n  WITH (inference eager)",
        "Expected = after the option name inference, found 'eager'",
        (7, 19, "eager"),
        id="option without =",
    ),
    pytest.param(
        GOOD + "\n  WITH (partitions = (4, 8))",
        "Expected a value for the option: a number, a 'string', TRUE, FALSE or a name "
        "(value lists are for TRAIN parameters only), found '('",
        (7, 22, "("),
        id="grid in WITH",
    ),
    pytest.param(
        GOOD + "\n  INTO out",
        "Expected a directory path in quotes or TABLE <name> after INTO, found 'out'",
        (7, 8, "out"),
        id="unquoted INTO",
    ),
    pytest.param(
        GOOD + " extra",
        "Expected VALIDATE, WITH, INTO, ; or the end of the input, found 'extra'",
        (6, 11, "extra"),
        id="trailing words",
    ),
    pytest.param(
        GOOD.replace("JOIN foods", "JOIN join"),
        "Expected the structured source after JOIN: a table name, a 'path' or a (SELECT ...) "
        "query, found 'join' "
        "(a keyword: to use it as a name, write `join`)",
        (4, 8, "join"),
        id="reserved word as a name",
    ),
    pytest.param(
        "TRANSFER FEATURES OF 'data/images AS i",
        "Expected a closing ' for the text that starts here",
        (1, 22, "'"),
        id="unterminated string",
    ),
    pytest.param(
        "SHOW CNNS /* never closed",
        "Expected */ to close the comment that starts here",
        (1, 11, "/"),
        id="unterminated comment",
    ),
    pytest.param(
        "EXPLAIN PHYSICAL " + GOOD,
        "Expected LOGICAL, COST, VERBOSE, ANALYZE, FORMAT or TRANSFER FEATURES after EXPLAIN, "
        "found 'PHYSICAL'",
        (1, 9, "PHYSICAL"),
        id="unknown EXPLAIN mode",
    ),
    pytest.param(
        "EXPLAIN LOGICAL FORMAT XML " + GOOD,
        "Expected TEXT or JSON after FORMAT, found 'XML'",
        (1, 24, "XML"),
        id="unknown EXPLAIN format",
    ),
    pytest.param(
        "DESCRIBE vgg16",
        "Expected CNN after DESCRIBE (DESCRIBE CNN <cnn>), found 'vgg16'",
        (1, 10, "vgg16"),
        id="DESCRIBE without CNN",
    ),
    pytest.param(
        "SHOW CNNS;\nSHOW TABLES",
        "Expected CNNS after SHOW (SHOW CNNS), found 'TABLES'",
        (2, 6, "TABLES"),
        id="error in the second statement",
    ),
]


@pytest.mark.parametrize(("sql", "description", "where"), CASES)
def test_syntax_error_fields(sql: str, description: str, where: tuple[int, int, str]) -> None:
    with pytest.raises(VistaSyntaxError) as caught:
        parse(sql)
    error = caught.value
    assert isinstance(error, VistaError) and isinstance(error, ParseError)
    fields = error.errors[0]
    assert fields["description"] == description
    assert (fields["line"], fields["col"], fields["highlight"]) == where
    assert (error.description, error.line, error.col, error.highlight) == (description, *where)
    assert str(error).startswith(f"{description}. Line {where[0]}, Col: {where[1]}.")


def test_context_around_the_highlight() -> None:
    with pytest.raises(VistaSyntaxError) as caught:
        parse_one(GOOD.replace("LAYERS (fc6, fc7)", "LAYER (fc6, fc7)"))
    fields = caught.value.errors[0]
    assert fields["start_context"].endswith("FROM CNN vgg16\n  ")
    assert fields["end_context"].startswith(" (fc6, fc7)")


@pytest.mark.parametrize("not_text", [None, b"SHOW CNNS", 42])
def test_non_text_input_is_a_syntax_error(not_text: object) -> None:
    with pytest.raises(VistaSyntaxError, match="Expected the statement text as a str"):
        parse(not_text)  # type: ignore[arg-type]
