"""An entry's key: the image directory, the CNN's and the weights' identities, the layer, the form
and the pooling; and the images it holds, each by its own identity (see the package docstring for
why each)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vista_sql.catalog import Catalog, CnnInfo, LayerInfo
from vista_sql.digest import content_sha256, file_sha256
from vista_sql.errors import VistaError
from vista_sql.logical.plan import OutputForm, SourceRef, WeightsSpec
from vista_sql.logical.query import TransferQuery
from vista_sql.physical.store.settings import FORMAT
from vista_sql.udfs.registered import registered

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
"""As ``physical.sources`` reads an image directory (its glob: each extension lower or upper)."""
FEATURE_CODE = ("decode.py", "inference.py", "layers.py", "weights.py")
"""Modules of ``vista_sql.udfs`` whose code decides the values of features (part of the key)."""


def image_directory(source: SourceRef, tables: Mapping[str, Any] | None) -> Path | None:
    """The image directory a statement reads, or None when its images are not a directory."""
    if source.kind == "path":
        path = Path(source.name)
    else:
        given = next(
            (v for k, v in (tables or {}).items() if k.lower() == source.name.lower()), None
        )
        if not isinstance(given, str | os.PathLike):
            return None
        path = Path(given)
    return path.resolve() if path.is_dir() else None


def image_files(directory: Path) -> Iterator[tuple[str, os.stat_result]]:
    """The image files Spark's binaryFile source reads from ``directory``, by relative path."""
    extensions = {e for x in IMAGE_EXTENSIONS for e in (x, x.upper())}
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        for name in sorted(files):
            if name.startswith((".", "_")) or name.rsplit(".", 1)[-1] not in extensions:
                continue
            path = Path(root) / name
            yield str(path.relative_to(directory)), path.stat()


Match = Literal["metadata", "content"]
"""How an image is known unchanged: by size and nanosecond mtime, or by its content's SHA-256."""


def image_listing(directory: Path, match: Match = "metadata") -> dict[str, str]:
    """Each image file's relative path -> its identity: ``<size>:<mtime ns>``, or with
    ``match='content'`` ``<size>:sha256:<digest of its bytes>``."""
    listing: dict[str, str] = {}
    for relative, stat in image_files(directory):
        if match == "content":
            listing[relative] = f"{stat.st_size}:sha256:{content_sha256(directory / relative)}"
        else:
            listing[relative] = f"{stat.st_size}:{stat.st_mtime_ns}"
    return listing


def listing_digest(listing: Mapping[str, str]) -> str:
    """SHA-256 of a listing (paths and identities, in path order)."""
    digest = hashlib.sha256()
    for relative in sorted(listing):
        digest.update(f"{relative}\0{listing[relative]}\n".encode())
    return digest.hexdigest()


def image_fingerprint(directory: Path, match: Match = "metadata") -> tuple[str, int]:
    """SHA-256 of the images' relative paths and identities (``image_listing``); and how many."""
    listing = image_listing(directory, match)
    return listing_digest(listing), len(listing)


def cnn_identity(info: CnnInfo) -> str:
    """What decides a CNN's features besides its weights (see the module docstring)."""
    described = json.dumps(
        {
            "name": info.name,
            "input_size": info.input_size,
            "preprocess": info.preprocess,
            "layers": [
                (layer.name, layer.keras, layer.kind, layer.shape, layer.resume_keras)
                for layer in info.layers
            ],
        },
        sort_keys=True,
    )
    udfs = Path(__file__).resolve().parents[2] / "udfs"
    code = [udfs / name for name in FEATURE_CODE]
    module = udfs / "cnns" / f"{info.name}.py"
    if module.is_file():
        code.append(module)
    digests = [file_sha256(path) for path in code]
    found = registered(info.name)
    if found is not None:
        digests.append(found.digest)
    return hashlib.sha256("\n".join([described, *digests]).encode()).hexdigest()


def weights_identity(cnn: str, weights: WeightsSpec) -> str | None:
    """``random seed n``, or the SHA-256 of the weights file; None when the file is not here.

    Packaged ImageNet weights are known by their package's file, so that no statement converts
    them (nor imports TensorFlow) just to make a key.
    """
    from vista_sql.udfs.weights import DEFAULT_SEED, source_file

    if weights.kind == "random":
        return f"random seed {weights.seed if weights.seed is not None else DEFAULT_SEED}"
    try:
        path = source_file(cnn, weights)
    except VistaError:
        return None
    return None if path is None else f"file sha256 {file_sha256(path)}"


@dataclass(frozen=True, slots=True)
class StatementKeys:
    """Everything a statement's store keys are made of, computed once per statement."""

    images: Path
    fingerprint: str
    """``listing_digest`` of ``files``: the directory's images as the statement found them."""
    image_count: int
    cnn: str
    cnn_identity: str
    weights: WeightsSpec
    weights_identity: str
    match: Match = "metadata"
    files: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    """The ``image_listing`` the statement planned with (relative path -> identity)."""

    def key(self, layer: LayerInfo, form: OutputForm, pooling: str) -> str:
        """The key of one layer in one form (the pooling counts for conv features only).

        The images are the directory, not its content: an entry keeps the listing of the images
        it holds, and a statement over the directory after images were added, removed or changed
        reads what still holds and infers the rest (``lookup.stored_layers``)."""
        parts = {
            "format": FORMAT,
            "images": str(self.images),
            "match": self.match,
            "cnn": self.cnn_identity,
            "weights": self.weights_identity,
            "layer": layer.name,
            "form": form,
            "pooling": key_pooling(layer, form, pooling),
        }
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:32]

    def still_current(self) -> bool:
        """Whether the images are unchanged since the keys were made (checked before a write)."""
        return image_fingerprint(self.images, self.match)[0] == self.fingerprint


def key_pooling(layer: LayerInfo, form: OutputForm, pooling: str) -> str | None:
    """The pooling an entry depends on: a conv layer's features' only (fc layers are not
    pooled, and a resume tensor never is)."""
    return pooling if form == "features" and layer.kind == "conv" else None


def statement_keys(
    query: TransferQuery, catalog: Catalog, tables: Mapping[str, Any] | None
) -> StatementKeys | None:
    """The keys' parts for ``query``, or None when its images or weights cannot be fingerprinted."""
    directory = image_directory(query.image_source, tables)
    info = catalog.cnn(query.cnn)
    if directory is None or info is None:
        return None
    weights = weights_identity(info.name, query.weights)
    if weights is None:
        return None
    match = query.options.cache_match
    listing = image_listing(directory, match)
    return StatementKeys(
        images=directory,
        fingerprint=listing_digest(listing),
        image_count=len(listing),
        cnn=info.name,
        cnn_identity=cnn_identity(info),
        weights=query.weights,
        weights_identity=weights,
        match=match,
        files=listing,
    )
