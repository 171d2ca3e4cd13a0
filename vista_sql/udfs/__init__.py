"""What runs inside Spark workers: the CNN roster in Keras, image decoding, partial inference.

The API the physical layer uses (none of these modules imports TensorFlow or Spark at import time;
they load them when they build a model or a DataFrame):

- ``columns.output_column(out: LayerOut) -> str`` and ``columns.ERROR_COLUMN``: column names.
- ``inference.InferenceSpec(cnn, weights, start, outputs, pooling="max2x2")``: what one pass
  computes, checked against the catalog (``SemanticError``); ``.columns``, ``.input_shape``,
  ``.output_size(out)``.
- ``spark_infer.infer(df, spec, *, input_column, passthrough, batch_size, threads=None)``: the
  DataFrame transformation (passthrough + one ``array<float>`` per output + ``_error``).
- ``inference.infer_local(inputs, spec, batch_size=32)``: the same in this process, no Spark.
- ``weights.weights_file(cnn, weights)``: the weights file a spec needs (driver side), or a
  ``WeightsError`` saying how to supply it; ``models.build_model(cnn, weights=None)``: the whole
  Keras model.
- ``decode.decode_batch(images, size, mode)``: Pillow decoding + Keras preprocessing.
- ``python -m vista_sql.udfs.layer_stats``: regenerates the statistics in ``catalog/cnns.json``.

Adding a CNN: one module in ``vista_sql/udfs/cnns/`` plus its entry in ``catalog/cnns.json``; or,
for a user's own Keras model, ``registry.register`` (``vista_sql.register_cnn``): the catalog entry
and the architecture travel to Spark workers inside each ``InferenceSpec``.

Modules, in import order (each imports only those before it; ``tests/test_import_order.py``
checks): ``columns``, ``decode``, ``layers``, ``pickled`` -> ``cnns`` (the roster's definitions)
-> ``registered`` (CNNs registered in this process; the one definition look-up) -> ``weights``
-> ``models`` -> ``inference`` -> ``layer_stats``, ``spark_infer`` -> ``registry`` (registering a
user's model).
"""
