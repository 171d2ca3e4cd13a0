"""Datasets vista_sql generates or assembles for demos, tests and benchmarks.

``make_foods`` writes the Foods-like multimodal dataset of the VISTA paper's evaluation (see
``vista_sql.datasets.foods`` for exactly how its rows, features, images and labels are made);
``make_fashion_mnist`` and ``make_clipart_foods`` build tables around real images from Debian's
dataset-fashion-mnist and openclipart-png packages. Importing this package loads numpy and
Pillow, not Spark or TensorFlow.
"""

from vista_sql.datasets._debian import RealDataset
from vista_sql.datasets.clipart_foods import make_clipart_foods
from vista_sql.datasets.fashion_mnist import make_fashion_mnist
from vista_sql.datasets.foods import FoodsDataset, make_foods

__all__ = ["FoodsDataset", "RealDataset", "make_clipart_foods", "make_fashion_mnist", "make_foods"]
