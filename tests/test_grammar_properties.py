"""Property tests: random valid statements round-trip; random text never raises anything else.

Kept to a few seconds: examples are capped and there is no deadline (CI is a shared 2-core box).
"""

from __future__ import annotations

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlglot import exp
from sqlglot.errors import ParseError
from strategies import (
    backquoted,
    quoted_string,
    scripts,
    statements,
    token_soups,
    transfer_statements,
)

from vista_sql.errors import VistaError, VistaSyntaxError
from vista_sql.grammar.dialect import origin, parse, parse_one


def _fast(examples: int) -> settings:
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def _assert_round_trip(text: str) -> None:
    tree = parse_one(text)
    canonical = tree.sql(dialect="vista")
    again = parse_one(canonical)
    assert again == tree, (text, canonical)
    assert again.sql(dialect="vista") == canonical
    assert parse_one(tree.sql(dialect="vista", pretty=True)) == tree


@_fast(100)
@given(statements())
def test_random_statements_round_trip_and_point_into_the_text(text: str) -> None:
    _assert_round_trip(text)
    for node in parse_one(text).walk():
        where = origin(node)
        assert where is not None, repr(node)
        assert 0 <= where.start <= where.end < len(text)
        assert where.line == text.count("\n", 0, where.start) + 1


@_fast(50)
@given(transfer_statements(valid=True))
def test_random_valid_transfers_round_trip(text: str) -> None:
    _assert_round_trip(text)


@_fast(30)
@given(scripts())
def test_random_scripts_round_trip(text: str) -> None:
    trees = parse(text)
    regenerated = ";\n".join(tree.sql(dialect="vista") for tree in trees)
    assert parse(regenerated) == trees


@_fast(100)
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=30))
@example("it's \\ a 'path'\n")
def test_string_literals_keep_their_value(path: str) -> None:
    statement = parse_one(
        "TRANSFER FEATURES OF i FROM CNN c LAYERS TOP 1 JOIN t USING (id) TRAIN m LABEL y "
        f"INTO {quoted_string(path)}"
    )
    assert statement.args["into"] == exp.Literal.string(path)
    assert parse_one(statement.sql(dialect="vista")).args["into"].this == path


@_fast(100)
@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30))
@example("a`b``c")
def test_backquoted_names_keep_their_text(name: str) -> None:
    tree = parse_one(f"DESCRIBE CNN {backquoted(name)}")
    assert tree.this == exp.to_identifier(name, quoted=True)
    assert parse_one(tree.sql(dialect="vista")).this.this == name


def _never_raises_anything_else(text: str) -> None:
    try:
        parse(text)
    except VistaSyntaxError as error:
        assert isinstance(error, VistaError) and isinstance(error, ParseError)
        fields = error.errors[0]
        assert fields["description"].startswith("Expected"), "an internal error was converted"
        assert fields["line"] >= 1 and fields["col"] >= 1


@settings(max_examples=300, deadline=None)
@given(token_soups())
def test_token_soups_raise_only_syntax_errors(text: str) -> None:
    _never_raises_anything_else(text)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_syntax_errors(data: bytes) -> None:
    _never_raises_anything_else(data.decode("utf-8", errors="replace"))
    _never_raises_anything_else(data.decode("latin-1"))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_random_text_raises_only_syntax_errors(text: str) -> None:
    _never_raises_anything_else(text)


@_fast(60)
@given(statements(), st.data())
def test_mangled_statements_raise_only_syntax_errors(text: str, data: st.DataObject) -> None:
    """A valid statement with a slice cut out or duplicated: near misses, the usual typos."""
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    _never_raises_anything_else(text[:start] + text[end:])
    _never_raises_anything_else(text[:end] + text[start:])
