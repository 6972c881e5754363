"""Changing the chunk ids and places a published snapshot index names.

A snapshot index names the id and the place (pack, offset) of every chunk
it uses. When those change (gc moved chunks into a new pack; `copy` stores
the chunks in another repository, under that repository's ids), the
snapshot gets a new index file: a local copy of the old one with those
rows changed, every other record byte for byte the same, published like
any index (written under tmp/, fsynced, renamed over the old name), so
that a reader sees either the old file or the new one, and both are
complete.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import lmdb

from index.errors import RepositoryCorrupt
from index.format.snapshot_format import (
    ALL_DBS,
    DB_CHUNKS,
    DB_ENTRIES,
    DB_EXTENTS,
    DB_META,
    META_KEY,
    check_place,
    decode_location,
    decode_meta,
    encode_location,
    rename_entry_chunk,
    rename_extent_chunk,
)
from index.format.types import ChunkId, ChunkLocation
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_writer import WriteIndex, copy_compact, remove_lmdb_file
from index.store.private import FILE_MODE, open_private
from index.store.storage import copy_all


class SnapshotEditor:
    """A writable copy of the index of snapshot `ref`, at `path` (on a local
    disk: a work file of the cache, LocalCache.work_file), for changing its
    chunks; `finish` gives what `IndexFiles.publish` writes. Use with
    `with`: the copy is deleted at the end. An index that names another
    snapshot than `ref` is refused, so that none is published in a wrong
    place."""

    def __init__(self, repo: Repository, ref: SnapshotRef, path: Path) -> None:
        self.ref = ref
        self.path = path
        try:
            name = self._copy(repo)
            # Room for rows that grow (new chunk ids, new places); only mapped.
            size = self.path.stat().st_size
            self._env = lmdb.open(str(self.path), subdir=False,
                                  map_size=max(4 * size, 1 << 30), max_dbs=len(ALL_DBS) + 1,
                                  lock=False, sync=False, metasync=False, mode=FILE_MODE)
        except BaseException:
            remove_lmdb_file(self.path)
            raise
        try:
            self._check_meta(name)
        except BaseException:
            self.close()
            raise

    def _copy(self, repo: Repository) -> str:
        """Copy the stored index here; the name of the file it came from."""
        fd, path, _ = repo.indexes.open(self.ref.relpath)
        try:
            out = open_private(self.path)
            try:
                copy_all(fd, out)
            finally:
                os.close(out)
        finally:
            os.close(fd)
        return path.name

    def _check_meta(self, name: str) -> None:
        relpath = self.ref.relpath
        try:
            with self._env.begin() as txn:
                raw = txn.get(META_KEY, db=self._env.open_db(DB_META, txn=txn, create=False))
        except lmdb.Error as exc:
            raise RepositoryCorrupt(f"snapshot index {relpath}: {exc}") from exc
        if raw is None:
            raise RepositoryCorrupt(f"snapshot index {relpath}: no metadata")
        check_place(decode_meta(raw, name), self.ref.host, self.ref.name, relpath)

    def __enter__(self) -> SnapshotEditor:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def locations(self) -> list[tuple[ChunkId, ChunkLocation]]:
        """Every chunk the index names, with its place, in id order."""
        with self._env.begin() as txn:
            db = self._env.open_db(DB_CHUNKS, txn=txn, create=False)
            return [(ChunkId(bytes(k)), decode_location(bytes(v))) for k, v in txn.cursor(db)]

    def update_locations(self, places: Mapping[ChunkId, ChunkLocation]) -> None:
        """Name the place `places` gives each of its chunks instead of the
        one the index named."""
        with self._env.begin(write=True) as txn:
            db = self._env.open_db(DB_CHUNKS, txn=txn, create=False)
            for cid, loc in places.items():
                txn.put(cid, encode_location(loc), db=db)

    def replace_locations(self, places: Mapping[ChunkId, ChunkLocation]) -> None:
        """Name exactly the chunks of `places`, at their places there."""
        with self._env.begin(write=True) as txn:
            db = self._env.open_db(DB_CHUNKS, txn=txn, create=False)
            txn.drop(db, delete=False)
            for cid, loc in sorted(places.items()):
                txn.put(cid, encode_location(loc), db=db)

    def rename_chunks(self, renamed: Mapping[ChunkId, ChunkId]) -> None:
        """Name chunk `renamed[c]` wherever a file's content names chunk `c`
        (its extents, or the record of a file of one chunk)."""
        if not renamed:
            return
        with self._env.begin(write=True) as txn:
            for table, rename in ((DB_EXTENTS, rename_extent_chunk),
                                  (DB_ENTRIES, rename_entry_chunk)):
                db = self._env.open_db(table, txn=txn, create=False)
                updates = []
                for key, value in txn.cursor(db):
                    new = rename(value, renamed)
                    if new is not None:
                        updates.append((bytes(key), new))
                for key, new in updates:
                    txn.put(key, new, db=db)

    def finish(self) -> WriteIndex:
        """What writes the changed index into a file."""
        return self._write_to

    def _write_to(self, fd: int) -> None:
        copy_compact(self._env, fd)

    def close(self) -> None:
        """Drop the local copy."""
        self._env.close()
        remove_lmdb_file(self.path)
