"""Hypothesis strategies for vista_sql statement text, shared by grammar, logical and cost tests.

- ``statements()``: one syntactically valid statement of any kind (TRANSFER FEATURES, possibly
  under EXPLAIN, DESCRIBE CNN, SHOW CNNS), with random keyword case, whitespace, comments, quoting
  and an optional trailing ``;``. Names are arbitrary, so most do not pass semantic checks.
- ``transfer_statements(valid=False)``: TRANSFER FEATURES only. ``valid=True`` draws names that
  SPEC.md accepts: a roster CNN with some of its layers (roster names or Keras aliases), a model
  of SPEC.md with parameters MLlib accepts for it (sometimes a grid, then sometimes ``folds``),
  options with allowed values, table names
  ``images`` / ``foods`` (or paths) with aliases the ON keys use.
- ``scripts()``: several statements separated by ``;``.
- ``token_soups()``: random sequences of the language's keywords, names and punctuation, mostly
  invalid, for "never raises anything but a syntax error" properties.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from hypothesis import strategies as st

from vista_sql.catalog import roster

Draw = Callable[[st.SearchStrategy], object]

RESERVED = {"as", "from", "into", "join", "on", "using", "with"}
KEYWORDS = (
    *("TRANSFER", "FEATURES", "OF", "FROM", "CNN", "WEIGHTS", "IMAGENET", "RANDOM", "SEED"),
    *("LAYERS", "TOP", "JOIN", "AS", "ON", "USING", "TRAIN", "LABEL", "VALIDATE", "WITH", "INTO"),
    *("EXPLAIN", "LOGICAL", "COST", "VERBOSE", "ANALYZE", "FORMAT", "TEXT", "JSON"),
    *("DESCRIBE", "CNNS", "SHOW", "TRUE", "FALSE", "SELECT"),
)
PUNCTUATION = ("(", ")", ",", ".", "=", ";", "-", "`", "'", '"', "/*", "*/", "--", "\n")
MODELS = ("LOGREG", "LINEAR_SVC", "DECISION_TREE", "RANDOM_FOREST", "GBT", "MLP")

_SEPARATORS = st.sampled_from(
    [" ", " ", " ", "  ", "\n", "\t", "\n  ", " -- a comment\n", " /* note */ ", "/**/", "\r\n"]
)
_PLAIN_NAME = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,9}", fullmatch=True).filter(
    lambda name: name.lower() not in RESERVED
)
_QUOTED_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10)
_STRING_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)


def keyword(word: str) -> st.SearchStrategy[str]:
    """``word`` in upper, lower, title or random mixed case."""
    mixed = st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flags: "".join(
            c.upper() if f else c.lower() for c, f in zip(word, flags, strict=True)
        )
    )
    return st.one_of(st.just(word), st.just(word.lower()), st.just(word.title()), mixed)


def backquoted(text: str) -> str:
    """A Spark backquoted identifier for ``text`` (backquotes doubled)."""
    return "`" + text.replace("`", "``") + "`"


def quoted_string(text: str) -> str:
    """A Spark string literal for ``text`` (backslash escapes)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def names() -> st.SearchStrategy[str]:
    """An identifier as written: a plain word (keywords like LABEL included) or backquoted text."""
    return st.one_of(
        _PLAIN_NAME,
        _PLAIN_NAME,
        st.sampled_from(["label", "features", "top", "seed", "layers", "date", "order", "true"]),
        _QUOTED_TEXT.map(backquoted),
        st.sampled_from(sorted(RESERVED)).map(backquoted),
    )


def strings() -> st.SearchStrategy[str]:
    """A string literal as written: single or double quotes, or a raw string without escapes."""
    raw = _STRING_TEXT.filter(lambda s: "'" not in s and "\\" not in s).map(lambda s: f"r'{s}'")
    double = _STRING_TEXT.map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return st.one_of(_STRING_TEXT.map(quoted_string), _STRING_TEXT.map(quoted_string), double, raw)


def integers() -> st.SearchStrategy[str]:
    return st.integers(min_value=0, max_value=10**12).map(str)


def numbers() -> st.SearchStrategy[str]:
    """Unsigned numbers as written: integers, decimals, a leading dot, exponents."""
    return st.one_of(
        integers(),
        st.floats(min_value=0, max_value=1e6, allow_nan=False).map(repr),
        st.integers(min_value=0, max_value=999).map(lambda n: f".{n}"),
        st.sampled_from(["1e-3", "2.5E4", "0.0", "10.", "007"]),
    )


def values(grid: bool) -> st.SearchStrategy[str]:
    """A parameter or option value; with ``grid`` also a parenthesised list of values."""
    signed = st.tuples(st.sampled_from(["", "-", "+"]), numbers()).map("".join)
    scalar = st.one_of(
        signed,
        strings(),
        keyword("TRUE"),
        keyword("FALSE"),
        _PLAIN_NAME,
        st.sampled_from(["24g", "1.5g", "eager", "before_join", "join", "from"]),
    )
    if not grid:
        return scalar
    return st.one_of(
        scalar, st.lists(scalar, min_size=1, max_size=4).map(lambda v: f"({', '.join(v)})")
    )


class _Text:
    """Tokens joined by random separators (spaces, newlines, comments)."""

    def __init__(self, draw: Draw) -> None:
        self.draw = draw
        self.parts: list[str] = []

    def add(self, *tokens: str) -> None:
        self.parts.extend(tokens)

    def kw(self, *words: str) -> None:
        for word in words:
            self.parts.append(str(self.draw(keyword(word))))

    def listing(self, items: list[str]) -> None:
        self.add("(")
        for index, item in enumerate(items):
            if index:
                self.add(",")
            self.add(item)
        self.add(")")

    def text(self) -> str:
        pieces = [self.parts[0]]
        for token in self.parts[1:]:
            pieces.append(str(self.draw(_SEPARATORS)))
            pieces.append(token)
        return "".join(pieces)


def _source(draw: Draw, valid: bool, table: str) -> str:
    if valid:
        return str(
            draw(st.sampled_from([table, f"default.{table}", quoted_string(f"data/{table}")]))
        )
    return str(
        draw(
            st.one_of(
                names(),
                strings(),
                st.lists(names(), min_size=2, max_size=3).map(".".join),
            )
        )
    )


def _assignments(draw: Draw, pairs: list[tuple[str, str]]) -> list[str]:
    return [f"{name}{draw(st.sampled_from([' = ', '=', ' =']))}{value}" for name, value in pairs]


_MODEL_PARAMS: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "LOGREG": {
        "max_iter": st.integers(1, 100).map(str),
        "reg_param": st.sampled_from(["0.0", "0.01", "0.1", "(0.01, 0.1)", "(0, 0.5, 1)"]),
        "elastic_net_param": st.sampled_from(["0", "0.5", "1.0", "(0, 1)"]),
        "family": st.sampled_from(["auto", "'binomial'", "multinomial"]),
    },
    "LINEAR_SVC": {
        "max_iter": st.integers(1, 100).map(str),
        "reg_param": st.sampled_from(["0.0", "0.1", "(0.01, 0.1)"]),
        "standardization": st.sampled_from(["true", "FALSE"]),
    },
    "DECISION_TREE": {
        "max_depth": st.integers(0, 30).map(str),
        "impurity": st.sampled_from(["gini", "entropy", "(gini, entropy)"]),
    },
    "RANDOM_FOREST": {
        "num_trees": st.sampled_from(["5", "20", "(5, 10)"]),
        "max_depth": st.integers(1, 10).map(str),
        "subsampling_rate": st.sampled_from(["0.5", "1.0"]),
    },
    "GBT": {
        "max_iter": st.integers(1, 20).map(str),
        "step_size": st.sampled_from(["0.1", "1", "(0.05, 0.1)"]),
    },
    "MLP": {
        "layers": st.sampled_from(["16", "'32,16'", "('16', '32,16')"]),
        "max_iter": st.integers(1, 100).map(str),
        "solver": st.sampled_from(["'l-bfgs'", "gd"]),
    },
}
"""Parameters that MLlib accepts, per model (snake_case names, SPEC.md); some are grids."""


def _valid_params(draw: Draw, model: str) -> list[tuple[str, str]]:
    choices = _MODEL_PARAMS[model]
    chosen = draw(st.lists(st.sampled_from(sorted(choices)), max_size=3, unique=True))
    params = [(name, str(draw(choices[name]))) for name in chosen]
    if any(value.startswith("(") for _, value in params) and draw(st.booleans()):
        params.append(("folds", str(draw(st.integers(2, 5)))))
    return params


def _valid_options(draw: Draw) -> list[tuple[str, str]]:
    choices = {
        "memory": st.sampled_from(["'24g'", "'512m'", "'4g'"]),
        "cores": st.integers(1, 16).map(str),
        "nodes": st.integers(1, 8).map(str),
        "inference": st.sampled_from(["lazy", "eager", "staged"]),
        "placement": st.sampled_from(["before_join", "after_join"]),
        "join": st.sampled_from(["broadcast", "shuffle"]),
        "persist": st.sampled_from(["deserialized", "serialized", "disk"]),
        "executor_cores": st.integers(1, 8).map(str),
        "partitions": st.integers(1, 64).map(str),
        "batch_size": st.integers(1, 256).map(str),
        "conv_pooling": st.sampled_from(["max2x2", "avg", "max", "none"]),
        "on_bad_image": st.sampled_from(["fail", "skip"]),
        "cache": st.sampled_from(["true", "FALSE"]),
    }
    chosen = draw(st.lists(st.sampled_from(sorted(choices)), max_size=4, unique=True))
    return [(name, str(draw(choices[name]))) for name in chosen]


def _layer_name(name: str) -> str:
    return name if re.fullmatch(r"\w+", name) else backquoted(name)


@st.composite
def transfer_statements(draw: Draw, valid: bool = False) -> str:
    """One TRANSFER FEATURES statement (no EXPLAIN, no trailing ``;``)."""
    out = _Text(draw)
    _transfer(draw, out, valid)
    return out.text()


def _transfer(draw: Draw, out: _Text, valid: bool) -> None:
    catalog = roster()
    image_alias = str(draw(names())) if not valid else str(draw(st.sampled_from(["i", "img"])))
    table_alias = str(draw(names())) if not valid else str(draw(st.sampled_from(["f", "t"])))
    out.kw("TRANSFER", "FEATURES", "OF")
    out.add(_source(draw, valid, "images"))
    if not valid and draw(st.booleans()):
        out.listing([str(draw(names()))])
    if valid or draw(st.booleans()):
        out.kw("AS")
        out.add(image_alias)

    cnn = str(draw(st.sampled_from(catalog.names)))
    out.kw("FROM", "CNN")
    out.add(cnn if valid else str(draw(st.one_of(names(), st.just(cnn)))))
    weights = draw(st.sampled_from(["", "IMAGENET", "RANDOM", "RANDOM SEED", "FILE"]))
    if weights:
        out.kw("WEIGHTS")
        if weights == "FILE":
            out.add(quoted_string("weights.h5") if valid else str(draw(strings())))
        else:
            out.kw(*weights.split())
            if weights.endswith("SEED"):
                out.add(str(draw(st.integers(-(2**31), 2**31 - 1))))

    info = catalog.cnn(cnn)
    assert info is not None
    out.kw("LAYERS")
    if draw(st.booleans()):
        out.kw("TOP")
        out.add(str(draw(st.integers(1, len(info.layers)))) if valid else str(draw(integers())))
    elif valid:
        layers = draw(st.lists(st.sampled_from(info.layers), min_size=1, unique=True))
        out.listing(
            [_layer_name(layer.keras if draw(st.booleans()) else layer.name) for layer in layers]
        )
    else:
        out.listing([str(n) for n in draw(st.lists(names(), min_size=1, max_size=5))])

    out.kw("JOIN")
    out.add(_source(draw, valid, "foods"))
    if valid or draw(st.booleans()):
        out.kw("AS")
        out.add(table_alias)
    if draw(st.booleans()):
        out.kw("ON")
        key = "id" if valid else str(draw(names()))
        left, right = (
            (image_alias, table_alias) if draw(st.booleans()) else (table_alias, image_alias)
        )
        out.add(left, ".", key, "=", right, ".", key)
    else:
        out.kw("USING")
        out.listing(
            ["id"] if valid else [str(n) for n in draw(st.lists(names(), min_size=1, max_size=2))]
        )

    if draw(st.booleans()):
        out.kw("FEATURES")
        columns = st.sampled_from(["x1", "x2", "x3", "calories"]) if valid else names()
        out.listing([str(c) for c in draw(st.lists(columns, min_size=1, max_size=4, unique=True))])

    model = str(draw(st.sampled_from(MODELS)))
    out.kw("TRAIN")
    out.add(str(draw(keyword(model))) if valid else str(draw(names())))
    if valid:
        params = _valid_params(draw, model)
    else:
        params = draw(st.lists(st.tuples(names(), values(grid=True)), max_size=3))
    if params:
        out.listing(_assignments(draw, params))

    out.kw("LABEL")
    out.add("label" if valid else str(draw(names())))

    if draw(st.booleans()):
        out.kw("VALIDATE")
        out.add(
            str(draw(st.sampled_from(["0.2", "0.1", ".25"]))) if valid else str(draw(numbers()))
        )
        if draw(st.booleans()):
            out.kw("SEED")
            out.add(str(draw(st.integers(-(2**31), 2**31 - 1))))

    if valid:
        options = _valid_options(draw)
    else:
        options = draw(st.lists(st.tuples(names(), values(grid=False)), max_size=4))
    if options:
        out.kw("WITH")
        out.listing(_assignments(draw, options))

    if draw(st.booleans()):
        out.kw("INTO")
        out.add(quoted_string("out/run") if valid else str(draw(strings())))


@st.composite
def statements(draw: Draw) -> str:
    """One syntactically valid statement of any kind, sometimes with a trailing ``;``."""
    out = _Text(draw)
    kind = draw(st.sampled_from(["transfer", "transfer", "explain", "describe", "show"]))
    if kind == "explain":
        out.kw("EXPLAIN")
        mode = draw(st.sampled_from(["", "LOGICAL", "COST", "VERBOSE", "ANALYZE"]))
        if mode:
            out.kw(mode)
        fmt = draw(st.sampled_from(["", "TEXT", "JSON"]))
        if fmt:
            out.kw("FORMAT", fmt)
    if kind in ("transfer", "explain"):
        _transfer(draw, out, valid=False)
    elif kind == "describe":
        out.kw("DESCRIBE", "CNN")
        out.add(str(draw(names())))
    else:
        out.kw("SHOW", "CNNS")
    if draw(st.booleans()):
        out.add(";")
    return out.text()


def scripts() -> st.SearchStrategy[str]:
    """Several statements separated by ``;`` (empty statements and a trailing ``;`` included)."""
    return st.lists(statements().map(lambda s: s.rstrip(";")), min_size=1, max_size=4).flatmap(
        lambda parts: st.sampled_from([";\n", "; ", ";;", " ;\n-- next\n"]).map(
            lambda separator: separator.join(parts)
        )
    )


def token_soups() -> st.SearchStrategy[str]:
    """Random sequences of the language's words, names, literals and punctuation."""
    word = st.one_of(
        st.sampled_from(KEYWORDS).flatmap(keyword),
        st.sampled_from(PUNCTUATION),
        names(),
        strings(),
        numbers(),
    )
    return st.lists(word, max_size=40).flatmap(
        lambda words: st.lists(
            st.sampled_from([" ", "", "\n"]), min_size=len(words), max_size=len(words)
        ).map(lambda gaps: "".join(g + w for g, w in zip(gaps, words, strict=True)))
    )
