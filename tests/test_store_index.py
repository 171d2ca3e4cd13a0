"""The feature store's files (no Spark): keys, atomic entries, eviction, settings, the CLI.

Entries are written here with pyarrow, in the layout ``store_io`` writes with Spark.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vista_sql
from vista_sql.catalog import CnnInfo, roster
from vista_sql.cli import main
from vista_sql.logical.builder import build
from vista_sql.logical.plan import WeightsSpec
from vista_sql.logical.query import TransferQuery
from vista_sql.physical.store import (
    ABANDONED_SECONDS,
    DEFAULT_MAX_BYTES,
    FeatureStore,
    StatementKeys,
    StoreError,
    image_fingerprint,
    statement_keys,
    store_settings,
    stored_layers,
)


def _vgg16() -> CnnInfo:
    found = roster().cnn("vgg16")
    assert found is not None
    return found


VGG16 = _vgg16()


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for key in range(4):
        (folder / f"{key}.jpg").write_bytes(bytes([key]) * (100 + key))
    return folder


def query(images: Path, options: str = "", weights: str = "WEIGHTS RANDOM SEED 7") -> TransferQuery:
    with_clause = f" WITH ({options})" if options else ""
    sql = (
        f"TRANSFER FEATURES OF '{images}' AS i FROM CNN vgg16 {weights} LAYERS (fc6, fc7)"
        f" JOIN 'table.parquet' AS t ON i.id = t.id TRAIN LOGREG LABEL label{with_clause}"
    )
    built = build(vista_sql.parse_one(sql), sql, roster())
    assert isinstance(built, TransferQuery)
    return built


def keys_of(images: Path, options: str = "") -> StatementKeys:
    keys = statement_keys(query(images, options), roster(), None)
    assert keys is not None
    return keys


def write_entry(
    store: FeatureStore,
    keys: StatementKeys,
    layer: str,
    form: str = "features",
    rows: int = 10,
    only: tuple[str, ...] | None = None,
) -> Any:
    """An entry as store_io writes it: (key, values, _error) Parquet under data/, then commit."""
    info = VGG16.layer(layer)
    assert info is not None
    staging = store.begin()
    (staging / "data").mkdir()
    table = pa.table(
        {
            "_vista_key": pa.array(range(rows), pa.int64()),
            "values": pa.array([[float(i)] * 64 for i in range(rows)], pa.list_(pa.float32())),
            "_error": pa.array([None] * rows, pa.string()),
        }
    )
    pq.write_table(table, staging / "data" / "part-0.parquet")
    key = keys.key(info, form, "max2x2")  # type: ignore[arg-type]
    meta = {
        "key_type": "bigint",
        "images": {"path": str(keys.images), "files": keys.image_count},
        "cnn": "vgg16",
        "weights": keys.weights.describe(),
        "layer": layer,
        "form": form,
        "pooling": "max2x2" if form == "features" and info.kind == "conv" else None,
        "rows": rows,
        "errors": 0,
    }
    files = keys.files if only is None else {path: keys.files[path] for path in only}
    return store.commit(staging, key, {**meta, "segment": only is not None}, files)


# --- keys ---------------------------------------------------------------------------------------


def test_the_image_fingerprint_sees_every_change_spark_would_read(images: Path) -> None:
    first, count = image_fingerprint(images)
    assert count == 4
    (images / ".hidden.jpg").write_bytes(b"x")
    (images / "_SUCCESS").write_bytes(b"")
    (images / "notes.txt").write_bytes(b"x")
    assert image_fingerprint(images)[0] == first  # files Spark's binaryFile read skips

    edited = images / "2.jpg"
    stat = edited.stat()
    edited.write_bytes(b"y" * (stat.st_size + 1))
    assert image_fingerprint(images)[0] != first
    edited.write_bytes(bytes([2]) * 102)
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert image_fingerprint(images)[0] == first  # same bytes, size and mtime: same images

    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    assert image_fingerprint(images)[0] != first
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (images / "4.jpg").write_bytes(b"new")
    assert image_fingerprint(images) != (first, 4)
    (images / "4.jpg").unlink()
    (images / "3.jpg").rename(images / "5.jpg")
    assert image_fingerprint(images)[0] != first


def test_keys_differ_by_layer_form_weights_and_the_pooling_of_conv_features(images: Path) -> None:
    keys = keys_of(images)
    fc6, conv5_3 = VGG16.layer("fc6"), VGG16.layer("conv5_3")
    assert fc6 is not None and conv5_3 is not None
    assert len({keys.key(fc6, "features", "max2x2"), keys.key(conv5_3, "features", "max2x2")}) == 2
    assert keys.key(conv5_3, "features", "max2x2") != keys.key(conv5_3, "features", "avg")
    assert keys.key(conv5_3, "features", "max2x2") != keys.key(conv5_3, "resume", "max2x2")
    # An fc layer is never pooled, and a resume tensor never is: the pooling is not in those keys.
    assert keys.key(fc6, "features", "max2x2") == keys.key(fc6, "features", "avg")
    assert keys.key(conv5_3, "resume", "max2x2") == keys.key(conv5_3, "resume", "none")
    other_seed = statement_keys(query(images, weights="WEIGHTS RANDOM SEED 8"), roster(), None)
    assert other_seed is not None
    assert other_seed.key(fc6, "features", "max2x2") != keys.key(fc6, "features", "max2x2")
    assert keys_of(images).key(fc6, "features", "max2x2") == keys.key(fc6, "features", "max2x2")


def test_no_keys_without_an_image_directory_or_a_weights_file(images: Path) -> None:
    named = build(
        vista_sql.parse_one(
            "TRANSFER FEATURES OF pictures AS i FROM CNN vgg16 WEIGHTS RANDOM SEED 7"
            " LAYERS (fc6) JOIN 't.parquet' AS t ON i.id = t.id TRAIN LOGREG LABEL label"
        ),
        "",
        roster(),
    )
    assert isinstance(named, TransferQuery)
    assert statement_keys(named, roster(), {"pictures": object()}) is None  # a DataFrame
    assert statement_keys(named, roster(), {"pictures": str(images)}) is not None  # a path
    missing = query(images, weights=f"WEIGHTS '{images / 'absent.weights.h5'}'")
    assert statement_keys(missing, roster(), None) is None


# --- entries ------------------------------------------------------------------------------------


def test_an_entry_is_published_whole_and_found_by_its_key(images: Path, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache")
    keys = keys_of(images)
    entry = write_entry(store, keys, "fc6", rows=12)
    assert entry is not None
    assert entry.rows == 12 and entry.file_bytes > 0 and entry.key_type == "bigint"
    fc6 = VGG16.layer("fc6")
    assert fc6 is not None
    assert [e.location for e in store.find(keys.key(fc6, "features", "max2x2"))] == [entry.location]
    assert list(store.tmp_dir.iterdir()) == []
    # A directory without entry.json (a write cut short) is no entry.
    half = store.entries_dir / f"{keys.key(fc6, 'resume', 'max2x2')}.bigint"
    (half / "data").mkdir(parents=True)
    assert store.find(keys.key(fc6, "resume", "max2x2")) == []
    assert [e.location for e in store.entries()] == [entry.location]


def test_the_optimizer_finds_the_statements_entries(images: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    options = f"cache = true, cache_dir = '{cache}'"
    store = FeatureStore(cache)
    keys = keys_of(images, options)
    write_entry(store, keys, "fc6")
    write_entry(store, keys, "conv5_3", "resume")
    found = stored_layers(query(images, options), roster(), None)
    assert sorted((s.layer, s.form, s.rows) for s in found) == [
        ("conv5_3", "resume", 10),
        ("fc6", "features", 10),
    ]
    assert stored_layers(query(images, "cache = false"), roster(), None) == ()
    assert all(s.complete for s in found)


def test_an_entry_of_images_since_changed_holds_the_rest(images: Path, tmp_path: Path) -> None:
    """Images added, removed or changed since an entry was written: the entry is still found,
    for the images it holds unchanged; the others are what the statement must infer (missing)
    and the rows it must not read (dropped)."""
    cache = tmp_path / "cache"
    options = f"cache = true, cache_dir = '{cache}'"
    write_entry(FeatureStore(cache), keys_of(images, options), "fc6", rows=4)
    (images / "0.jpg").write_bytes(b"changed")  # changed: dropped, and inferred again
    (images / "1.jpg").unlink()  # removed: dropped
    (images / "sub").mkdir()
    (images / "sub" / "9.png").write_bytes(b"new")  # added: inferred
    (found,) = stored_layers(query(images, options), roster(), None)
    assert not found.complete and found.rows == 2
    assert found.dropped is not None and found.dropped.paths == ("0.jpg", "1.jpg")
    assert found.missing is not None and found.missing.paths == ("0.jpg", "sub/9.png")
    for name in ("2.jpg", "3.jpg"):  # every image changed: nothing left to read
        (images / name).write_bytes(b"changed")
    assert stored_layers(query(images, options), roster(), None) == ()


def test_a_segment_of_added_images_and_the_entry_before_hold_a_layer_together(
    images: Path, tmp_path: Path
) -> None:
    """A statement after images were added stores them as a segment beside the entry (not the
    whole layer again): the next statement reads each image from one of the two, and infers
    only what neither holds."""
    cache = tmp_path / "cache"
    options = f"cache = true, cache_dir = '{cache}'"
    store = FeatureStore(cache)
    first = write_entry(store, keys_of(images, options), "fc6", rows=4)
    (images / "7.jpg").write_bytes(b"added")
    (images / "8.jpg").write_bytes(b"added too")
    segment = write_entry(store, keys_of(images, options), "fc6", rows=2, only=("7.jpg", "8.jpg"))
    (images / "0.jpg").write_bytes(b"changed")
    (images / "9.jpg").write_bytes(b"added later")
    found = stored_layers(query(images, options), roster(), None)
    assert [s.location for s in found] == [str(first.location), str(segment.location)]
    assert len({s.group for s in found}) == 1 and found[0].group
    whole, part = found
    assert whole.rows == 3 and whole.dropped is not None and whole.dropped.paths == ("0.jpg",)
    assert part.rows == 2 and part.dropped is None
    for stored in found:
        assert stored.missing is not None and stored.missing.paths == ("0.jpg", "9.jpg")
    # A whole entry written for the directory as it is now supersedes both.
    latest = write_entry(store, keys_of(images, options), "fc6", rows=6)
    removed = store.supersede(latest)
    assert sorted(e.location for e in removed) == sorted([segment.location, first.location])
    assert [e.location for e in store.entries()] == [latest.location]


def test_content_matching_sees_an_image_rewritten_with_its_old_size_and_time(
    images: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    by_content = f"cache = true, cache_dir = '{cache}', cache_match = 'content'"
    by_metadata = f"cache = true, cache_dir = '{cache}'"
    store = FeatureStore(cache)
    write_entry(store, keys_of(images, by_content), "fc6", rows=4)
    write_entry(store, keys_of(images, by_metadata), "fc7", rows=4)
    edited = images / "2.jpg"
    stat = edited.stat()
    edited.write_bytes(b"z" * stat.st_size)  # other bytes, same size and (below) same time
    os.utime(edited, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    (content,) = stored_layers(query(images, by_content), roster(), None)
    assert content.layer == "fc6" and content.missing is not None
    assert content.missing.paths == ("2.jpg",)
    (metadata,) = stored_layers(query(images, by_metadata), roster(), None)
    assert metadata.layer == "fc7" and metadata.complete  # what metadata matching cannot see


def test_a_new_entry_supersedes_the_old_one_when_its_statement_ends(
    images: Path, tmp_path: Path
) -> None:
    store = FeatureStore(tmp_path / "cache")
    old = write_entry(store, keys_of(images), "fc6")
    (images / "7.jpg").write_bytes(b"added")
    new = write_entry(store, keys_of(images), "fc6")
    assert old is not None and new is not None and old.location != new.location
    assert old.key == new.key and len(store.entries()) == 2  # the old one may still be read
    assert store.supersede(new) == [old]
    assert [e.location for e in store.entries()] == [new.location]
    assert new.files() == keys_of(images).files


def test_an_entry_whose_list_of_images_was_altered_is_refused(images: Path, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache")
    entry = write_entry(store, keys_of(images), "fc6")
    assert entry is not None and store.verify(entry) is None
    (entry.location / "files.json").write_text('{"0.jpg": "1:1"}')
    assert entry.files() is None
    assert "files.json" in str(store.verify(entry))


def _commit_same_entry(arguments: tuple[str, str, Any]) -> bool:
    cache, images, barrier = arguments
    store = FeatureStore(cache)
    keys = keys_of(Path(images))
    barrier.wait()
    return write_entry(store, keys, "fc7") is not None


def test_two_processes_writing_one_entry_leave_exactly_one(images: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("fork")
    with context.Manager() as manager:
        barrier = manager.Barrier(2)
        with context.Pool(2) as pool:
            published = pool.map(_commit_same_entry, [(str(cache), str(images), barrier)] * 2)
    assert sorted(published) == [False, True]
    store = FeatureStore(cache)
    assert len(store.entries()) == 1
    assert list(store.tmp_dir.iterdir()) == []


def test_eviction_keeps_the_size_limit_least_recently_used_first(
    images: Path, tmp_path: Path
) -> None:
    store = FeatureStore(tmp_path / "cache")
    keys = keys_of(images)
    written = [write_entry(store, keys, layer, rows=50) for layer in ("conv5_3", "fc6", "fc7")]
    assert all(e is not None for e in written)
    for age, entry in zip((300, 100, 200), written, strict=True):  # fc6 used most recently
        used = entry.location / "used"
        os.utime(used, (used.stat().st_atime - age, used.stat().st_mtime - age))
    size = written[0].file_bytes
    removed = store.evict(max_bytes=2 * size + size // 2)
    assert [e.meta["layer"] for e in removed] == ["conv5_3"]
    assert store.total_bytes() <= 2 * size + size // 2
    written[2].touch()  # fc7 read again: now fc6 is the least recently used
    assert [e.meta["layer"] for e in store.evict(max_bytes=size)] == ["fc6"]
    assert [e.meta["layer"] for e in store.entries()] == ["fc7"]
    assert store.evict(max_bytes=0) and store.entries() == []


def test_eviction_removes_writes_abandoned_long_ago(images: Path, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache")
    abandoned, current = store.begin(), store.begin()
    old = abandoned.stat().st_mtime - 2 * ABANDONED_SECONDS
    os.utime(abandoned, (old, old))
    store.evict()
    assert list(store.tmp_dir.iterdir()) == [current]


def test_clear_removes_entries_and_leftovers(images: Path, tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "cache")
    write_entry(store, keys_of(images), "fc6")
    store.begin()  # an interrupted write
    assert store.clear() == 1
    assert store.entries() == [] and list(store.tmp_dir.iterdir()) == []


# --- settings and the command line --------------------------------------------------------------


def test_settings_come_from_with_then_the_environment(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VISTA_SQL_CACHE_DIR", str(tmp_path / "env"))
    monkeypatch.delenv("VISTA_SQL_CACHE_SIZE", raising=False)
    monkeypatch.setenv("VISTA_SQL_CACHE", "1")
    plain = store_settings(query(images).options)
    assert plain.enabled and plain.directory == tmp_path / "env"
    assert plain.max_bytes == DEFAULT_MAX_BYTES
    given = store_settings(query(images, f"cache_dir = '{tmp_path / 'with'}'").options)
    assert given.directory == tmp_path / "with"
    assert not store_settings(query(images, "cache = false").options).enabled
    monkeypatch.setenv("VISTA_SQL_CACHE", "0")
    assert not store_settings(query(images).options).enabled
    assert store_settings(query(images, "cache = true").options).enabled
    monkeypatch.delenv("VISTA_SQL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store_settings(query(images).options).directory == tmp_path / "xdg" / "vista_sql"
    monkeypatch.setenv("VISTA_SQL_CACHE_SIZE", "2g")
    assert store_settings(query(images).options).max_bytes == 2 * 2**30
    monkeypatch.setenv("VISTA_SQL_CACHE_SIZE", "lots")
    with pytest.raises(StoreError, match="VISTA_SQL_CACHE_SIZE"):
        store_settings(query(images).options)


def test_on_a_cluster_the_store_needs_a_directory_every_host_mounts(
    images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executors write the entries: with executors on other hosts, a plain path would scatter
    each entry over their disks, so the store is off (with the reason) unless the directory is
    declared shared as a file:// URI; file systems the store's local locks cannot serve are
    refused."""
    monkeypatch.setenv("VISTA_SQL_CACHE", "1")
    plain = store_settings(query(images, f"cache_dir = '{tmp_path / 's'}'").options, True)
    assert not plain.enabled and plain.off_reason is not None
    assert f"WITH (cache_dir = 'file://{tmp_path / 's'}')" in plain.off_reason
    assert store_settings(query(images, f"cache_dir = '{tmp_path / 's'}'").options).enabled
    shared = store_settings(query(images, f"cache_dir = 'file://{tmp_path / 's'}'").options, True)
    assert shared.enabled and shared.shared and shared.directory == tmp_path / "s"
    monkeypatch.setenv("VISTA_SQL_CACHE_DIR", f"file://{tmp_path / 'env'}")
    from_env = store_settings(query(images).options, True)
    assert from_env.enabled and from_env.directory == tmp_path / "env"
    for uri in ("hdfs://namenode:8020/store", "s3a://bucket/store"):
        with pytest.raises(StoreError, match=f"'{uri}': only a local directory, or a file://"):
            store_settings(query(images, f"cache_dir = '{uri}'").options)
    # off by choice: nothing to refuse or explain
    off = store_settings(query(images, "cache = false, cache_dir = 'hdfs://nn/x'").options, True)
    assert not off.enabled and off.off_reason is None


def test_cache_list_and_clear_on_the_command_line(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    store = FeatureStore(cache)
    keys = keys_of(images)
    write_entry(store, keys, "fc6", rows=7)
    write_entry(store, keys, "conv5_3", "resume", rows=7)
    assert main(["cache", "list", "--dir", str(cache)]) == 0
    listed = capsys.readouterr().out
    assert "2 entries" in listed
    assert "vgg16.fc6 (random seed 7)" in listed
    assert "vgg16.conv5_3:resume (random seed 7)" in listed
    assert str(images) in listed
    assert main(["cache", "clear", "--dir", str(cache)]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert main(["cache", "list", "--dir", str(cache)]) == 0
    assert "0 entries" in capsys.readouterr().out


def test_weights_of_a_file_are_keyed_by_content(images: Path, tmp_path: Path) -> None:
    import h5py

    weights = tmp_path / "w.weights.h5"
    with h5py.File(weights, "w") as file:
        file.attrs["version"] = 1
    first = statement_keys(query(images, weights=f"WEIGHTS '{weights}'"), roster(), None)
    with h5py.File(weights, "w") as file:
        file.attrs["version"] = 2
    second = statement_keys(query(images, weights=f"WEIGHTS '{weights}'"), roster(), None)
    assert first is not None and second is not None
    assert first.weights_identity != second.weights_identity
    assert first.weights == WeightsSpec("file", path=str(weights))
