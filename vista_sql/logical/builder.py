"""Syntax tree -> checked statement: every name and value of a parsed statement, validated.

``build(tree, sql, catalog)`` checks a tree from ``vista_sql.grammar`` against the CNN catalog and
the tables of valid models, parameters and options, and returns a ``TransferQuery``,
``ExplainStatement``, ``DescribeCnnStatement`` or ``ShowCnnsStatement`` (``logical.query``). Every
problem is a ``SemanticError`` shaped like a sqlglot ParseError, pointing at the offending text and
naming what is valid: unknown CNN, layer, model, parameter or option; a layer listed twice (also
under its Keras name); LAYERS TOP k out of range; a value of the wrong type or out of range; a grid
with no values or ``folds`` without a grid; VALIDATE outside (0, 1); join keys that do not name the
two sources.

Conventions decided here:

- Names of CNNs, layers, models, parameters and options are case-insensitive; layers may be given
  by their Keras names. Layers come back as roster names, top layer first.
- A parenthesized Spark SQL query is a source whose text (Spark SQL, as sqlglot writes it) runs
  with the session's ``spark.sql``; without AS it is called ``images`` or ``table``.
- A source without AS is named after itself: a table by its (last) name, a path by its last
  component without extension (``'data/foods/foods.parquet'`` is ``foods``, as DuckDB names a file
  it scans). ``ON`` may compare the keys in either order; ``USING (key)`` names one key of both.
- ``folds`` among the TRAIN parameters sets the cross-validation folds of a grid search (an integer
  >= 2, default 3), and is an error without a grid.
- ``TransferQuery.origins`` keys: ``statement``, ``images``, ``image_column``, ``image_alias``,
  ``cnn``, ``weights``, ``layers`` (the clause), ``layer:<name>`` (each layer as written),
  ``table``, ``table_alias``, ``on`` (the ON condition or the USING key), ``features``, ``model``,
  ``param:<name>``, ``label``, ``validate``, ``options``, ``into`` (INTO '<dir>' or INTO
  TABLE); ``Options.origins`` has one per option given.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn, cast

from sqlglot import exp

from vista_sql.catalog import Catalog, CnnInfo, current
from vista_sql.errors import Origin, SemanticError, did_you_mean
from vista_sql.grammar.dialect import Vista
from vista_sql.grammar.expressions import (
    DescribeCnn,
    ShowCnns,
    TransferFeatures,
    VistaExplain,
    Weights,
)
from vista_sql.logical import models
from vista_sql.logical.options import OPTIONS
from vista_sql.logical.plan import ModelSpec, SourceRef, Value, WeightsSpec
from vista_sql.logical.query import (
    DescribeCnnStatement,
    ExplainStatement,
    Options,
    ShowCnnsStatement,
    Statement,
    TransferQuery,
)
from vista_sql.logical.values import ValueSpec, check, literal

_SEED = ValueSpec("int", low=-(2**63), high=2**63 - 1)
"""Seeds (of random weights, of the VALIDATE split): a Spark long."""
_TOP = ValueSpec("int", low=1)


def build(tree: exp.Expr, sql: str, catalog: Catalog | None = None) -> Statement:
    """The checked statement of ``tree`` (parsed from ``sql``, which errors point into).

    ``catalog`` defaults to ``vista_sql.catalog.current()`` (the roster and registered CNNs).
    """
    return _Builder(sql, catalog if catalog is not None else current()).statement(tree)


def origin_of(node: exp.Expr) -> Origin | None:
    """Where ``node`` is in the text: its own position, else the span of its parts that have one."""
    start = node.meta.get("start") if node.meta else None
    if start is not None:
        return Origin(node.meta["line"], node.meta["col"], start, node.meta["end"])
    spans = [origin_of(child) for child in node.iter_expressions()]
    known = [span for span in spans if span is not None]
    if not known:
        return None
    first = min(known, key=lambda span: span.start)
    return Origin(first.line, first.col, first.start, max(span.end for span in known))


class _Builder:
    def __init__(self, sql: str, catalog: Catalog) -> None:
        self.sql = sql
        self.catalog = catalog

    def fail(self, description: str, where: exp.Expr | Origin | None) -> NoReturn:
        position = where if isinstance(where, Origin) or where is None else origin_of(where)
        raise SemanticError.at(description, self.sql, position)

    # ---------------------------------------------------------------- statements

    def statement(self, tree: exp.Expr) -> Statement:
        if isinstance(tree, VistaExplain):
            mode = tree.args.get("mode")
            format_ = tree.args.get("format")
            return ExplainStatement(
                query=self.transfer(tree.this),
                mode=cast(Any, mode.name.lower()) if mode is not None else None,
                format=cast(Any, format_.name.lower()) if format_ is not None else "text",
            )
        if isinstance(tree, TransferFeatures):
            return self.transfer(tree)
        if isinstance(tree, DescribeCnn):
            return DescribeCnnStatement(cnn=self.cnn(tree.this).name)
        if isinstance(tree, ShowCnns):
            return ShowCnnsStatement()
        self.fail(
            "Expected TRANSFER FEATURES, EXPLAIN, DESCRIBE CNN or SHOW CNNS, "
            f"found {type(tree).__name__}",
            tree,
        )

    def transfer(self, tree: exp.Expr) -> TransferQuery:
        if not isinstance(tree, TransferFeatures):
            self.fail("Expected TRANSFER FEATURES after EXPLAIN", tree)
        args = tree.args
        origins: dict[str, Origin] = {}

        def note(key: str, node: exp.Expr | None) -> None:
            position = origin_of(node) if node is not None else None
            if position is not None:
                origins[key] = position

        clauses = tree.meta.get("clauses", {}) if tree.meta else {}
        note("statement", tree)

        image_source = self.source(args["this"])
        note("images", args["this"])
        image_column = args["column"].name if args.get("column") else None
        note("image_column", args.get("column"))
        image_alias = self.alias(args.get("alias"), image_source, "images")
        note("image_alias", args.get("alias"))

        cnn = self.cnn(args["cnn"])
        note("cnn", args["cnn"])
        weights = self.weights(args.get("weights"))
        note("weights", args.get("weights"))
        layers = self.layers(tree, cnn)
        if "layers" in clauses:
            origins["layers"] = Origin(**clauses["layers"])
        for node in args.get("layers") or []:
            layer = cnn.layer(node.name)
            if layer is not None:
                note(f"layer:{layer.name}", node)

        table_source = self.source(args["join"])
        note("table", args["join"])
        table_alias = self.alias(args.get("join_alias"), table_source, "table")
        note("table_alias", args.get("join_alias"))
        image_key, table_key = self.keys(tree, image_alias, table_alias)
        note("on", args.get("on") or (args.get("using") or [None])[0])

        label = args["label"].name
        note("label", args["label"])
        features = self.features(args.get("features"), label, table_key)
        if "features" in clauses:
            origins["features"] = Origin(**clauses["features"])

        model = self.model(args["model"], args.get("params") or [])
        note("model", args["model"])
        for pair in args.get("params") or []:
            note(f"param:{pair.this.name.lower()}", pair)

        validate, validate_seed = self.validate(args.get("validate"), args.get("validate_seed"))
        note("validate", args.get("validate"))
        options = self.options(args.get("options") or [])
        if "options" in clauses:
            origins["options"] = Origin(**clauses["options"])
        into = self.path(args["into"], "INTO directory") if args.get("into") else None
        table_node = args.get("into_table")
        note("into", args.get("into") or table_node)
        into_table = ".".join(p.name for p in table_node.parts) if table_node is not None else None

        return TransferQuery(
            sql=self.sql,
            image_source=image_source,
            image_alias=image_alias,
            image_column=image_column,
            image_key=image_key,
            cnn=cnn.name,
            weights=weights,
            layers=layers,
            table_source=table_source,
            table_alias=table_alias,
            table_key=table_key,
            features=features,
            model=model,
            label=label,
            validate=validate,
            validate_seed=validate_seed,
            options=options,
            into=into,
            into_table=into_table,
            origins=origins,
        )

    # ---------------------------------------------------------------- sources and keys

    def source(self, node: exp.Expr) -> SourceRef:
        if isinstance(node, exp.Literal) and node.is_string:
            return SourceRef("path", self.path(node, "path"))
        if isinstance(node, exp.Table):
            return SourceRef("table", ".".join(part.name for part in node.parts))
        if isinstance(node, exp.Subquery):
            return SourceRef("query", node.this.sql(dialect="spark"))
        self.fail("Expected a table name, a 'path' or a (SELECT ...) query", node)

    def path(self, node: exp.Expr, what: str) -> str:
        text = str(node.this) if isinstance(node, exp.Literal) and node.is_string else ""
        if not text.strip():
            self.fail(f"Expected a non-empty {what} in quotes", node)
        return text

    def alias(self, node: exp.Expr | None, source: SourceRef, fallback: str) -> str:
        if node is not None:
            return str(node.name)
        if source.kind == "table":
            return source.name.split(".")[-1]
        if source.kind == "query":
            return fallback
        last = re.split(r"[\\/]", source.name.rstrip("/\\"))[-1]
        return last.split(".")[0] or fallback

    def keys(self, tree: TransferFeatures, image_alias: str, table_alias: str) -> tuple[str, str]:
        """(image key, table key) from ``ON a.k = b.k`` (either order) or ``USING (k)``."""
        on = tree.args.get("on")
        if on is None:
            using = tree.args.get("using") or []
            if not using:
                self.fail("Expected ON <a>.<key> = <b>.<key> or USING (<key>)", tree)
            if len(using) > 1:
                self.fail(
                    "USING takes one key column, present in both sources; "
                    f"found {len(using)}: {', '.join(key.name for key in using)}",
                    using[1],
                )
            return using[0].name, using[0].name
        if image_alias.lower() == table_alias.lower():
            self.fail(
                f"Both sources are called {image_alias}, so ON cannot tell their keys apart: "
                "name them with AS (OF ... AS i ... JOIN ... AS t ON i.id = t.id)",
                on,
            )
        sides: dict[str, str] = {}
        aliases = {image_alias.lower(): "images", table_alias.lower(): "table"}
        for column in (on.this, on.expression):
            qualifier = column.table if isinstance(column, exp.Column) else ""
            where = column.args.get("table") or column
            side = aliases.get(qualifier.lower())
            if side is None:
                self.fail(
                    f"Unknown source {qualifier or '(none)'} in the join key "
                    f"{column.sql(dialect=Vista)}; "
                    f"{did_you_mean(qualifier, (image_alias, table_alias))}",
                    where,
                )
            if side in sides:
                self.fail(
                    f"ON must compare a key of the images ({image_alias}) with a key of the table "
                    f"({table_alias}); both keys are of {qualifier}",
                    where,
                )
            sides[side] = column.name
        return sides["images"], sides["table"]

    # ---------------------------------------------------------------- CNN, weights, layers

    def cnn(self, node: exp.Expr) -> CnnInfo:
        name = node.name
        cnn = self.catalog.cnn(name)
        if cnn is None:
            self.fail(f"Unknown CNN {name}; {did_you_mean(name, self.catalog.names)}", node)
        return cnn

    def weights(self, node: exp.Expr | None) -> WeightsSpec:
        if node is None:
            return WeightsSpec("imagenet")
        if not isinstance(node, Weights):
            self.fail("Expected WEIGHTS IMAGENET, RANDOM [SEED n] or '<file>'", node)
        choice = node.this
        if isinstance(choice, exp.Literal) and choice.is_string:
            return WeightsSpec("file", path=self.path(choice, "weights file path"))
        kind = choice.name.lower() if isinstance(choice, exp.Var) else ""
        seed_node = node.args.get("seed")
        if kind == "random":
            seed = self.value(_SEED, seed_node, "SEED") if seed_node else None
            return WeightsSpec("random", seed=cast(int | None, seed))
        if kind == "imagenet" and seed_node is None:
            return WeightsSpec("imagenet")
        self.fail("Expected WEIGHTS IMAGENET, RANDOM [SEED n] or '<file>'", node)

    def layers(self, tree: TransferFeatures, cnn: CnnInfo) -> tuple[str, ...]:
        """Roster names, top layer first."""
        names = cnn.layer_names
        top = tree.args.get("top")
        if top is not None:
            count = cast(int, self.value(_TOP, top, "LAYERS TOP"))
            if count > len(names):
                self.fail(
                    f"LAYERS TOP {count}: {cnn.name} has {len(names)} transfer layers; "
                    f"valid: 1 to {len(names)}",
                    top,
                )
            return tuple(reversed(names[len(names) - count :]))
        given: list[exp.Expr] = tree.args.get("layers") or []
        if not given:
            self.fail("Expected LAYERS (<layer>, ...) or LAYERS TOP <k>", tree)
        seen: dict[str, exp.Expr] = {}
        for node in given:
            layer = cnn.layer(node.name)
            if layer is None:
                keras = ", ".join(f"{info.keras}" for info in cnn.layers if info.keras != info.name)
                aliases = f" (or their Keras names: {keras})" if keras else ""
                self.fail(
                    f"Unknown layer {node.name} of {cnn.name}; "
                    f"{did_you_mean(node.name, names)}{aliases}",
                    node,
                )
            if layer.name in seen:
                first = seen[layer.name].name
                spellings = f": as {first} and as {node.name}" if first != node.name else ""
                self.fail(f"Layer {layer.name} is listed twice{spellings}", node)
            seen[layer.name] = node
        return tuple(sorted(seen, key=names.index, reverse=True))

    # ---------------------------------------------------------------- features, model, values

    def features(
        self, nodes: list[exp.Expr] | None, label: str, table_key: str
    ) -> tuple[str, ...] | None:
        if not nodes:
            return None
        seen: dict[str, str] = {}
        for node in nodes:
            name = node.name
            if name.lower() in seen:
                self.fail(f"Feature {name} is listed twice", node)
            if name.lower() == label.lower():
                self.fail(f"{name} is the label; it cannot also be a feature", node)
            if name.lower() == table_key.lower():
                self.fail(f"{name} is the join key; it cannot also be a feature", node)
            seen[name.lower()] = name
        return tuple(seen.values())

    def model(self, node: exp.Expr, pairs: list[exp.Expr]) -> ModelSpec:
        name = node.name.lower()
        entry = models.find(name)
        if entry is None:
            written = tuple(known.upper() for known in models.names())
            self.fail(f"Unknown model {node.name}; {did_you_mean(node.name, written)}", node)
        specs = entry.params
        params: list[tuple[str, Value]] = []
        grid: list[tuple[str, tuple[Value, ...]]] = []
        folds: exp.Expr | None = None
        seen: set[str] = set()
        for pair in pairs:
            param = pair.this.name.lower()
            what = f"parameter {param} of {name.upper()}"
            if param in seen:
                self.fail(f"Parameter {param} is given twice", pair.this)
            seen.add(param)
            if param == "folds":
                folds = pair
                continue
            if param not in specs:
                valid = did_you_mean(param, (*specs, "folds"))
                self.fail(f"Unknown parameter {param} of {name.upper()}; {valid}", pair.this)
            value = pair.expression
            if isinstance(value, exp.Tuple):
                if not value.expressions:
                    self.fail(f"Empty grid for {what}: give at least one value", value)
                grid.append(
                    (param, tuple(self.value(specs[param], v, what) for v in value.expressions))
                )
            else:
                params.append((param, self.value(specs[param], value, what)))
        fold_count = 3
        if folds is not None:
            if not grid:
                self.fail(
                    "folds sets the cross-validation folds of a grid search, but no parameter "
                    "has a list of values to search, like reg_param = (0.01, 0.1)",
                    folds,
                )
            fold_count = cast(int, self.value(models.FOLDS, folds.expression, "parameter folds"))
        return ModelSpec(name=name, params=tuple(params), grid=tuple(grid), folds=fold_count)

    def value(self, spec: ValueSpec, node: exp.Expr, what: str) -> Value:
        try:
            return check(spec, literal(node))
        except ValueError as problem:
            self.fail(f"Bad value {node.sql(dialect=Vista)} for {what}: {problem}", node)

    def validate(self, fraction: exp.Expr | None, seed: exp.Expr | None) -> tuple[float, int]:
        value = 0.2
        if fraction is not None:
            raw = literal(fraction)
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw < 1:
                self.fail(
                    f"VALIDATE {fraction.sql(dialect=Vista)}: expected the fraction of rows "
                    "held out, a number in (0, 1), like VALIDATE 0.2",
                    fraction,
                )
            value = float(raw)
        seed_value = 2019 if seed is None else self.value(_SEED, seed, "VALIDATE SEED")
        return value, cast(int, seed_value)

    def options(self, pairs: list[exp.Expr]) -> Options:
        values: dict[str, Value] = {}
        origins: dict[str, Origin] = {}
        for pair in pairs:
            name = pair.this.name.lower()
            if name in values:
                self.fail(f"Option {name} is given twice", pair.this)
            if name not in OPTIONS:
                self.fail(f"Unknown option {name}; {did_you_mean(name, tuple(OPTIONS))}", pair.this)
            values[name] = self.value(OPTIONS[name], pair.expression, f"option {name}")
            position = origin_of(pair)
            if position is not None:
                origins[name] = position
        return Options(**cast(dict[str, Any], values), origins=origins)
