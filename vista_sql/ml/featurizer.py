"""``CnnFeaturizer``: partial CNN inference as a Spark ML Transformer.

    featurizer = CnnFeaturizer(cnn="vgg16", layers=["fc6", "fc7"], weights="random", seed=7,
                               inputCol="content", outputCols=["fc6", "fc7"])
    model = Pipeline(stages=[featurizer, VectorAssembler(...), LogisticRegression()]).fit(frame)

The input column holds encoded images (binary), image file paths (string) or Spark's ``image``
data source struct, as an image source of a statement may. Each output column is the layer's
features as an ML vector (doubles), pooled as ``conv_pooling`` says for convolutional layers; an
image that cannot be decoded gets null vectors (``VectorAssembler(handleInvalid="skip")`` drops
such rows). Every parameter is a plain value, so ``DefaultParamsWritable`` saves the stage as
JSON metadata and a saved pipeline loads where vista_sql is installed (a CNN registered with
``register_cnn`` must be registered there too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCols
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from vista_sql.errors import SemanticError, did_you_mean

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from vista_sql.logical.plan import WeightsSpec
    from vista_sql.udfs.inference import InferenceSpec

_INPUT = "_vista_cnn_input"
"""The image column as inference reads it (bytes or paths), beside the frame's own columns."""


class CnnFeaturizer(
    Transformer, HasInputCol, HasOutputCols, DefaultParamsReadable, DefaultParamsWritable
):
    """Adds the features of CNN layers, one ML vector column per layer, in one inference pass."""

    cnn: Param[str] = Param(
        Params._dummy(),
        "cnn",
        "a CNN of the roster or one registered with vista_sql.register_cnn",
        typeConverter=TypeConverters.toString,
    )
    layers: Param[list[str]] = Param(
        Params._dummy(),
        "layers",
        "transfer layers (roster or Keras names), one output column each",
        typeConverter=TypeConverters.toListString,
    )
    weights: Param[str] = Param(
        Params._dummy(),
        "weights",
        "'imagenet', 'random' (with seed) or the path of a Keras weights file",
        typeConverter=TypeConverters.toString,
    )
    seed: Param[int] = Param(
        Params._dummy(), "seed", "seed of random weights", typeConverter=TypeConverters.toInt
    )
    convPooling: Param[str] = Param(
        Params._dummy(),
        "convPooling",
        "pooling of convolutional layers: max2x2, avg, max or none",
        typeConverter=TypeConverters.toString,
    )
    batchSize: Param[int] = Param(
        Params._dummy(),
        "batchSize",
        "images per inference batch",
        typeConverter=TypeConverters.toInt,
    )

    @keyword_only
    def __init__(
        self,
        *,
        cnn: str | None = None,
        layers: list[str] | None = None,
        weights: str = "imagenet",
        seed: int | None = None,
        inputCol: str | None = None,
        outputCols: list[str] | None = None,
        convPooling: str = "max2x2",
        batchSize: int = 64,
    ) -> None:
        super().__init__()
        self._setDefault(weights="imagenet", convPooling="max2x2", batchSize=64)
        self.setParams(**self._keywords())

    @keyword_only
    def setParams(
        self,
        *,
        cnn: str | None = None,
        layers: list[str] | None = None,
        weights: str = "imagenet",
        seed: int | None = None,
        inputCol: str | None = None,
        outputCols: list[str] | None = None,
        convPooling: str = "max2x2",
        batchSize: int = 64,
    ) -> CnnFeaturizer:
        return self._set(**self._keywords())

    def _keywords(self) -> dict[str, Any]:
        """The keyword arguments ``keyword_only`` kept of the current call."""
        keywords: dict[str, Any] = getattr(self, "_input_kwargs")  # noqa: B009 (set at run time)
        return keywords

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F
        from pyspark.sql.types import BinaryType, StringType

        from vista_sql.physical.sources import encode_image_struct, is_image_struct
        from vista_sql.udfs.columns import ERROR_COLUMN, output_column
        from vista_sql.udfs.spark_infer import infer

        spec = self.inference_spec()
        input_col = self.getInputCol()
        if input_col not in dataset.columns:
            raise SemanticError(
                f"CnnFeaturizer: no input column {input_col}; "
                f"{did_you_mean(input_col, dataset.columns)}"
            )
        kind = dataset.schema[input_col].dataType
        if is_image_struct(kind):
            image = encode_image_struct(F.col(input_col))
        elif isinstance(kind, BinaryType | StringType):
            image = F.col(input_col)
        else:
            raise SemanticError(
                f"CnnFeaturizer: the input column {input_col} is {kind.simpleString()}: expected "
                "binary image bytes, a string path or Spark's image struct"
            )
        names = self._output_names(spec)
        clashes = [name for name in names if name in dataset.columns]
        if clashes:
            raise SemanticError(f"CnnFeaturizer: the output column {clashes[0]} exists already")
        inferred = infer(
            dataset.withColumn(_INPUT, image),
            spec,
            input_column=_INPUT,
            passthrough=list(dataset.columns),
            batch_size=self.getOrDefault(self.batchSize),
        )
        vectors = [
            F.when(F.col(column).isNotNull(), array_to_vector(F.col(column))).alias(name)
            for column, name in zip(
                (output_column(out) for out in spec.outputs), names, strict=True
            )
        ]
        return inferred.select(*dataset.columns, *vectors).drop(ERROR_COLUMN)

    def inference_spec(self) -> InferenceSpec:
        """What the workers compute: the checked CNN, its layers' features, the weights."""
        from vista_sql.catalog import current
        from vista_sql.logical.plan import LayerOut
        from vista_sql.udfs.inference import InferenceSpec

        if not self.isDefined(self.cnn) or not self.isDefined(self.layers):
            raise SemanticError("CnnFeaturizer needs cnn= and layers=")
        catalog = current()
        info = catalog.cnn(self.getOrDefault(self.cnn))
        if info is None:
            name = self.getOrDefault(self.cnn)
            raise SemanticError(
                f"CnnFeaturizer: unknown CNN {name}; {did_you_mean(name, catalog.names)}"
            )
        outputs = []
        for layer in self.getOrDefault(self.layers):
            found = info.layer(layer)
            if found is None:
                raise SemanticError(
                    f"CnnFeaturizer: {info.name} has no layer {layer}; "
                    f"{did_you_mean(layer, info.layer_names)}"
                )
            outputs.append(LayerOut(found.name, "features"))
        if not outputs:
            raise SemanticError("CnnFeaturizer needs at least one layer")
        return InferenceSpec(
            cnn=info.name,
            weights=self._weights(),
            start=None,
            outputs=tuple(outputs),
            pooling=self.getOrDefault(self.convPooling),
        )

    def _weights(self) -> WeightsSpec:
        from vista_sql.logical.plan import WeightsSpec

        weights = self.getOrDefault(self.weights)
        seed = self.getOrDefault(self.seed) if self.isDefined(self.seed) else None
        if weights.lower() == "imagenet":
            return WeightsSpec("imagenet")
        if weights.lower() == "random":
            return WeightsSpec("random", seed=seed)
        return WeightsSpec("file", path=weights)

    def _output_names(self, spec: InferenceSpec) -> list[str]:
        layers = [out.layer for out in spec.outputs]
        if not self.isDefined(self.outputCols):
            return layers
        names = list(self.getOutputCols())
        if len(names) != len(layers):
            raise SemanticError(
                f"CnnFeaturizer: {len(names)} outputCols for {len(layers)} layers; give one each"
            )
        return names

    def __repr__(self) -> str:
        cnn = self.getOrDefault(self.cnn) if self.isDefined(self.cnn) else "?"
        layers = self.getOrDefault(self.layers) if self.isDefined(self.layers) else []
        return f"CnnFeaturizer({cnn}, layers={layers})"
