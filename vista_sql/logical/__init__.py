"""sqlglot expression -> checked statement -> logical plan -> rewritten alternatives.

The pipeline, and the public functions of each step:

- ``builder.build(tree, sql, catalog=None) -> Statement``: semantic checks (``SemanticError``s that
  point at the text) and the checked ``query.TransferQuery`` / ``ExplainStatement`` / ...
- ``lazy.lazy_plan(query, catalog=None) -> Workload``: the VISTA paper's lazy plan (one inference
  per layer from the image, infer then join).
- ``rules``: the rewrites, one per module (``fuse_pooling``, ``reuse_layers``, ``stage_layers``,
  ``place_join``, ``persist_shared``, ``use_stored_layers``), each ``rule(plan, RuleContext) ->
  plan``; ``use_stored_layers`` reads layers kept in the feature store (``stored.StoredLayer``,
  found by ``vista_sql.physical.store``) as ``StoredScan`` sources, beside an inference of the
  images an entry lacks (a ``UnionAll``) when the directory changed since it was written.
- ``driver.alternatives(query, catalog=None, stored=()) -> list[Alternative]``: every distinct
  rewritten plan, one per setting of the three knobs (``inference`` lazy/eager/staged, ``placement``
  before_join/after_join, ``persist`` True/False), deduplicated, in a fixed order. Each
  ``Alternative`` has ``name`` (e.g. ``"eager/after_join/persist"``), the three knobs (typed, as
  ``knobs``: its own ``Knobs`` and its equivalents'), ``plan``
  (a ``Workload``), ``steps`` (the driver's record) and ``equivalents`` (names of other settings
  that gave the same plan; ``names`` is all of them). With feature-store entries (``stored``),
  every setting again reading them (names ending ``/stored``). This is what the cost model
  estimates.
- ``render.render_text(plan, annotate=None)`` / ``render_json``: numbered operators, shared work
  drawn once; ``annotate(node) -> str`` prints estimates beside each operator.
- ``explain.explain_logical`` / ``explain_verbose``: EXPLAIN LOGICAL and VERBOSE, text or JSON,
  with ``chosen=`` to mark the cost model's choice.

Helpers: ``columns`` (what each node provides; well-formedness), ``dag`` (sharing by identity),
``models`` (the downstream-model registry: each TRAIN model's MLlib estimator, parameters and
cost terms, one module per family), ``options`` (WITH options), ``values`` (checking values),
``search`` (the schedule of ``WITH (search = 'halving')``: successive halving over (layer,
parameters) candidates).
Nothing here imports Spark or TensorFlow.
"""
