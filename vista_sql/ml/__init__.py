"""vista_sql's CNN inference as Spark ML pipeline stages.

``CnnFeaturizer`` is a ``pyspark.ml`` Transformer: it adds one ML vector column per CNN layer,
computed by the same inference code a TRANSFER FEATURES statement runs (all its layers in one
pass), and is saved and loaded with Spark ML persistence, alone or inside a ``PipelineModel``.
"""

from vista_sql.ml.featurizer import CnnFeaturizer

__all__ = ["CnnFeaturizer"]
