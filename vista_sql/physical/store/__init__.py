"""The feature store: CNN layers that statements materialized, kept on disk and read again.

Model selection transfers the same images again and again, with other layers, other structured
features, other downstream models. Every CNN layer a statement materializes anyway (a persisted
inference, a layer's branch table) is kept here as Parquet, and a later statement over the same
images, CNN and weights reads it instead of decoding and inferring (the optimizer decides, see
``vista_sql.logical.rules.use_stored_layers``), like a database's materialized view.

Nothing here imports Spark (``spark_io`` reads and writes the Parquet with Spark): EXPLAIN, the
optimizer's look-up and ``vista-sql cache list | clear`` use this package alone.

**Where.** ``WITH (cache_dir = '...')``, else ``$VISTA_SQL_CACHE_DIR``, else
``$XDG_CACHE_HOME/vista_sql``, else ``~/.cache/vista_sql``. ``WITH (cache = false)`` turns the store
off for one statement; ``VISTA_SQL_CACHE=0`` makes off the default (``cache = true`` still turns
it on). Its size is bounded by ``$VISTA_SQL_CACHE_SIZE`` (a size like ``'10g'``, default 10 GiB):
after each write the least recently used entries are removed until it fits.

**Layout.** ::

    <cache_dir>/store/v2/
        entries/<key>.<key type>.<images>/entry.json   what the entry holds (see ``Entry``)
        entries/<key>.<key type>.<images>/files.json   its images: relative path -> identity
        entries/<key>.<key type>.<images>/data/*.parquet
                                                 (_vista_key, values array<float>, _error string)
        entries/<key>.<key type>.<images>/used         its modification time is its last use
        tmp/<random>/                                  entries being written
        lock                                           flock(2) held while evicting or clearing

An entry is written under ``tmp/`` and renamed into ``entries/`` when complete (``entry.json`` is
written last, inside it), so a reader sees a whole entry or none, and two processes writing the
same entry cannot mix their files: the second rename fails and its copy is dropped. Removal renames
the entry out of ``entries/`` first. The key type (the Spark type of the image ids, cast from file
names to the structured key's type) is part of the name because it changes the ids themselves;
``<images>`` is the start of the digest of ``files.json``, so an entry written after the directory
changed does not collide with the one before it, which is removed when the statement that wrote
the new one ends (it may read the old one until then).

**Key.** SHA-256 of: the store format; the image directory (its resolved path) and how its images
are matched (``cache_match``); the CNN's identity; the weights' identity; the layer; the form
(``features`` or ``resume``); the pooling (features only). Each entry also lists the images it
holds (``files.json``), each by its own identity.

- *Images*: the directory's image files as Spark reads them (recursive; names starting with ``.``
  or ``_`` skipped; jpg/jpeg/png), each by relative path and, by default (``cache_match =
  'metadata'``), size and modification time in nanoseconds: a statement costs one ``stat`` per file
  instead of reading every image (a 10,000-image directory is listed in ~50 ms; hashing 1 GB takes
  seconds), and editing, replacing, adding or removing a file is seen. A file rewritten with the
  same size and the same nanosecond mtime (``touch -d`` to its old time) is not; ``WITH
  (cache_match = 'content')`` knows each image by the SHA-256 of its bytes instead (every image is
  read before planning). Only image directories have a listing: a statement whose images are a
  DataFrame or a table neither reads nor writes the store.
- *Growing, shrinking, edited directories*: an entry is used for the images it holds unchanged;
  the images added or changed since are inferred (``lookup.stored_layers`` finds what each entry
  lacks and what it must not read; the optimizer costs the two parts, ``use_stored_layers``), and
  rows of images removed or changed are never read. The statement then stores the layer for the
  directory as it is now, in place of the old entry.
- *CNN*: the catalog entry (input size, preprocessing, layers and shapes), plus the SHA-256 of the
  source of the code that computes features (decoding, inference, pooling, weight drawing, the
  CNN's module), so entries made by another version of that code are not used. A registered CNN
  (``vista_sql.register_cnn``) is identified by its architecture and weights digest.
- *Weights*: ``random seed n`` by its seed; a weights file (ImageNet or ``WEIGHTS '<file>'``) by the
  SHA-256 of its content; ImageNet weights packaged in a Python package by the SHA-256 of the
  package's file (``udfs.weights.source_file``).

**Trust** (docs/security.md). Every directory of the store is created 0700; each entry's
``entry.json`` records the SHA-256 of its data files, and a statement checks it before reading the
entry (``FeatureStore.checked``: an entry that fails is removed and its layers recomputed); a
store directory owned by another user is refused unless ``$VISTA_SQL_CACHE_SHARED=1``.

Entries of other weights or code are never read, since their key is never asked for again; they
age out by least-recent use. An entry's rows for images since removed or changed are never read.

**Modules**, in import order (each imports only those before it; none imports Spark except
``spark_io``, which the package does not import): ``settings`` (the format, where the store is,
whether a statement uses it, how large it may grow) -> ``keys`` (what an entry's key is made of)
-> ``entries`` (the entries on disk: find, write, evict, clear) -> ``lookup`` (the optimizer's
look-up and ``vista-sql cache list``) -> ``spark_io`` (reading and writing entries with Spark).
"""

from vista_sql.physical.store.entries import (
    ABANDONED_SECONDS,
    Entry,
    FeatureStore,
    check_owner,
    data_digest,
    read_entry,
)
from vista_sql.physical.store.keys import (
    FEATURE_CODE,
    IMAGE_EXTENSIONS,
    StatementKeys,
    cnn_identity,
    image_directory,
    image_files,
    image_fingerprint,
    image_listing,
    key_pooling,
    listing_digest,
    statement_keys,
    weights_identity,
)
from vista_sql.physical.store.lookup import format_entries, stored_layers
from vista_sql.physical.store.settings import (
    DEFAULT_MAX_BYTES,
    DIR_ENV,
    FORMAT,
    PRIVATE_MODE,
    SHARED_ENV,
    SIZE_ENV,
    SWITCH_ENV,
    StoreError,
    StoreSettings,
    default_directory,
    max_bytes_from_env,
    store_settings,
)

__all__ = [
    "ABANDONED_SECONDS",
    "DEFAULT_MAX_BYTES",
    "DIR_ENV",
    "FEATURE_CODE",
    "FORMAT",
    "IMAGE_EXTENSIONS",
    "PRIVATE_MODE",
    "SHARED_ENV",
    "SIZE_ENV",
    "SWITCH_ENV",
    "Entry",
    "FeatureStore",
    "StatementKeys",
    "StoreError",
    "StoreSettings",
    "check_owner",
    "cnn_identity",
    "data_digest",
    "default_directory",
    "format_entries",
    "image_directory",
    "image_files",
    "image_fingerprint",
    "image_listing",
    "key_pooling",
    "listing_digest",
    "max_bytes_from_env",
    "read_entry",
    "statement_keys",
    "store_settings",
    "stored_layers",
    "weights_identity",
]
