"""The chosen plan -> Spark DataFrame operations, run, and the results.

``store`` (no Spark but its ``spark_io``) is the feature store: CNN layers that statements
materialized, kept as Parquet and read again by later statements over the same images; ``gpu``
detects GPU memory for the cost model; ``search`` runs a successive-halving search over the
layers' (layer, parameters) candidates.
"""
