"""Layers kept in the feature store, as the logical rewrites see them: plain values, no I/O.

The store itself (``vista_sql.physical.store``) finds the entries that match a statement (same
images, CNN, weights and pooling); the rule ``use_stored_layers`` turns them into ``StoredScan``
sources. What an entry can stand in for is decided here, from the catalog alone:

- a ``features`` entry gives the layer's feature vector;
- a ``resume`` entry gives the tensor inference resumes from to reach the layers above;
- one tensor may be both: when the catalog resumes from the layer's own output (``resume_keras``
  equals ``keras``, as for every fc layer) and the features are that output unpooled (an fc
  layer, or a conv layer under ``conv_pooling = none``), the stored features are the resume tensor
  and the other way round (both are the Keras output flattened row-major).
"""

from __future__ import annotations

from dataclasses import dataclass

from vista_sql.catalog import LayerInfo
from vista_sql.logical.plan import ImageFiles, OutputForm, WeightsSpec


@dataclass(frozen=True, slots=True)
class StoredLayer:
    """One entry of the feature store matching a statement's images, CNN and weights."""

    cnn: str
    weights: WeightsSpec
    layer: str
    form: OutputForm
    """``features`` or ``resume``: what the entry holds."""
    pooling: str
    """The pooling of a ``features`` entry (that of the statement for a ``resume`` one)."""
    location: str
    """The entry's directory."""
    rows: int
    """The rows the statement reads: the entry's, less those of ``dropped`` images."""
    file_bytes: int
    key_type: str = ""
    """The Spark type of the image keys the entry holds (file-name ids cast to the table's key
    type when it was written); the executor uses an entry only under the same key type."""
    errors: int = 0
    """Images that could not be decoded when the entry was written (stored with their error)."""
    dropped: ImageFiles | None = None
    """Images the entry holds that the statement must not read: removed from the directory, or
    changed, since the entry was written (None: none)."""
    missing: ImageFiles | None = None
    """Images of the directory the entry lacks: added or changed since it was written (None:
    none). A statement reads the entry for the rest and infers these."""

    group: str = ""
    """Entries of one group hold one layer in one form together, each image in one of them (an
    entry, and segments for images added since); empty: the entry alone."""

    @property
    def complete(self) -> bool:
        """Whether the entry alone holds every image of the statement, each unchanged."""
        return self.dropped is None and self.missing is None


def same_tensor(layer: LayerInfo, pooling: str) -> bool:
    """Whether ``layer``'s features (under ``pooling``) and its resume tensor are the same data."""
    unpooled = layer.kind != "conv" or pooling == "none"
    return unpooled and layer.resume_keras is not None and layer.resume_keras == layer.keras


def provides(layer: LayerInfo, stored: StoredLayer, pooling: str) -> frozenset[OutputForm]:
    """The forms of ``layer`` that ``stored`` (an entry of that layer) can be read as.

    An entry with bad images is never a resume tensor: an inference resuming from it would drop
    those rows without a word, where inferring from the images reports them (``on_bad_image``);
    as features it carries each bad row with its error to the branch, which reports it.
    """
    if stored.layer != layer.name:
        return frozenset()
    forms: set[OutputForm] = set()
    if stored.form == "features" and stored.pooling == pooling:
        forms.add("features")
        if same_tensor(layer, pooling):
            forms.add("resume")
    if stored.form == "resume" and layer.resume_keras is not None:
        forms.add("resume")
        if same_tensor(layer, pooling):
            forms.add("features")
    if stored.errors:
        forms.discard("resume")
    return frozenset(forms)
