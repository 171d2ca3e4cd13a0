"""Datasets vista_sql generates or assembles for demos, tests and benchmarks.

``make_foods`` writes the Foods-like multimodal dataset of the VISTA paper's evaluation (see
``vista_sql.datasets.foods`` for exactly how its rows, features, images and labels are made).
Importing this package loads numpy and Pillow, not Spark or TensorFlow.
"""

from vista_sql.datasets.foods import FoodsDataset, make_foods

__all__ = ["FoodsDataset", "make_foods"]
