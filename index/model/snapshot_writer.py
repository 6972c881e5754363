"""The one writer of new snapshot indexes.

A snapshot index is built in a local LMDB file (in the repository's cache
directory), then copied compactly into the repository by
`IndexFiles.publish`, which makes it visible by one rename: the
commit point of a backup. Callers hand it entries, names, extents and
chunk places; how they become records is `snapshot_format`'s and its own.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import lmdb

from index.errors import MissingChunk
from index.format import carried, codec
from index.format.carried import CarriedFile
from index.format.snapshot_format import (
    ALL_DBS,
    DB_CHUNKS,
    DB_DIRENTS,
    DB_ENTRIES,
    DB_EXTENTS,
    DB_META,
    EXTENT_KEY,
    ID_KEY,
    INDEX_VERSION,
    META_KEY,
    decode_id,
    dirent_key,
    encode_entry,
    encode_extent,
    encode_location,
    file_data,
    id_key,
)
from index.format.types import ChunkId, ChunkLocation, Entry, EntryId, Extent, Kind
from index.model.chunk_id_runs import ChunkIdRuns
from index.store.local_space import Reservation, reporting_full
from index.store.private import FILE_MODE

_MAP_SIZE = 1 << 38
_WHAT = "building the snapshot index"
_SPARE = 1 << 16
_BATCH_BYTES = 2 << 20
# Chunk ids looked up at a time.
_LOCATE_BATCH = 4096
# The build's table of the first name of each file with hard links.
_LINK_GROUPS = b"link groups"
# LMDB's header of a record in a page.
_NODE = 8

WriteIndex = Callable[[int], None]
"""Writes a finished index file to a descriptor (what `IndexFiles.publish` takes)."""

Locate = Callable[[list[ChunkId]], Mapping[ChunkId, ChunkLocation | bytes]]
"""Finds where chunks are: each as a location, or as the bytes of a
`chunks` value (as the chunk index holds them); those not found are left out."""


def copy_compact(env: lmdb.Environment, fd: int) -> None:
    """Write `env` compacted to `fd`, LMDB's errors as OSError (a full disk
    as ENOSPC) so that the repository reports them as write errors."""
    try:
        env.copyfd(fd, compact=True)
    except lmdb.DiskError as exc:  # py-lmdb's name for ENOSPC
        raise OSError(errno.ENOSPC, str(exc)) from exc
    except lmdb.Error as exc:  # its message names the cause
        raise OSError(errno.EIO, str(exc)) from exc


def remove_lmdb_file(path: Path) -> None:
    """Delete a local LMDB file and its lock file, if there."""
    for p in (path, Path(str(path) + "-lock")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


class _Batches:
    """The write transactions of a build, each of about `budget` bytes of
    records: without writemap LMDB keeps the pages a transaction changes in
    memory until it ends, and a whole index of a million files in one would
    be hundreds of MB. Records wait in lists until a transaction's worth is
    there, then go in together (LMDB's putmulti: no Python call per
    record). Each transaction is given room on the disk before it begins."""

    def __init__(self, env: lmdb.Environment, room: Reservation, budget: int) -> None:
        self._env = env
        self._dbs = {name: env.open_db(name) for name in ALL_DBS}
        self._room = room
        self._budget = max(budget, 1)
        self._waiting: dict[bytes, list[tuple[bytes, bytes]]] = {name: [] for name in ALL_DBS}
        self._pending = 0
        self._txn: lmdb.Transaction | None = None

    def put(self, db: bytes, key: bytes, value: bytes) -> None:
        """Write one record into table `db` (keys of `chunks` in order)."""
        self._waiting[db].append((key, value))
        self.count(len(key) + len(value))

    def count(self, written: int) -> None:
        """Count `written` bytes of records (also those written by `txn`)."""
        self._pending += written + _NODE
        if self._pending >= self._budget:
            self.commit()

    def txn(self) -> lmdb.Transaction:
        """The write transaction under way (begun if there is none), for
        records that are read back before the build ends."""
        if self._txn is None:
            # Pages split half full: twice the records' bytes, and some.
            self._room.ensure(2 * self._budget + _SPARE)
            self._txn = self._env.begin(write=True)
        return self._txn

    def commit(self) -> None:
        """Write and commit what was put since the last commit."""
        if not self._pending and self._txn is None:
            return
        try:
            txn = self.txn()
            for name, rows in self._waiting.items():
                if rows:
                    # `chunks` comes sorted: appended, as a bulk load should be.
                    txn.cursor(self._dbs[name]).putmulti(rows, append=name == DB_CHUNKS)
            self._txn = None
            txn.commit()
        except (OSError, lmdb.Error) as exc:
            self.abort()
            self._room.raise_if_full(exc)
            raise
        self.abort()

    def abort(self) -> None:
        """Drop what was put since the last commit."""
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()
        self._waiting = {name: [] for name in ALL_DBS}
        self._pending = 0


class SnapshotWriter:
    """One new snapshot index, written record by record into a local file.

    Put every entry (`put_entry`), the name of each below its directory
    (`put_dirent`) and the content of each regular file (`put_extents`, which
    says what its entry's `data` is), then the places of the chunks used
    (`put_locations`), and `finish` with the snapshot's metadata. Use with
    `with`: the local file is deleted at the end.
    """

    def __init__(self, path: Path, expected_bytes: int) -> None:
        """Open a new index at `path`, on a local disk (a work file of the
        cache, LocalCache.work_file); `expected_bytes`, about the bytes of
        records to come, bounds each write transaction."""
        self.path = path
        self._entries = 0
        self._logical_bytes = 0
        self._chunks = 0
        # The beginning of the records of carried files in one directory.
        self._head_of, self._head = EntryId(0), b""
        self._link_groups: lmdb._Database | None = None
        self._chunk_ids = ChunkIdRuns(Path(f"{path}-ids"))
        # No writemap: see index/store/local_space.py.
        with reporting_full(self.path.parent, _WHAT):
            self._env = lmdb.open(
                str(self.path), subdir=False, map_size=_MAP_SIZE, max_dbs=len(ALL_DBS) + 2,
                sync=False, metasync=False, writemap=False, lock=False, mode=FILE_MODE,
            )
            try:
                self._room = Reservation(self._env, self.path, _WHAT)
                self._out = _Batches(self._env, self._room, min(_BATCH_BYTES, expected_bytes))
            except BaseException:
                self._env.close()
                remove_lmdb_file(self.path)
                raise

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def put_entry(self, entry: Entry) -> None:
        """Write the record of `entry` (a regular file's `data` as
        `put_extents` returned it)."""
        if entry.kind == Kind.REGULAR and entry.inode_id == entry.entry_id:
            self._logical_bytes += entry.size
        self._out.put(DB_ENTRIES, id_key(entry.entry_id), encode_entry(entry))

    def put_dirent(self, parent_id: EntryId, name: bytes, entry_id: EntryId) -> None:
        """Write that `name` in directory `parent_id` is entry `entry_id`."""
        self._entries += 1
        self._out.put(DB_DIRENTS, dirent_key(parent_id, name), id_key(entry_id))

    def put_extents(self, entry_id: EntryId, size: int,
                    extents: Sequence[Extent]) -> bytes | int | None:
        """Write the content of regular file `entry_id` of `size` bytes;
        returns the `data` its entry holds (see docs/FORMAT.md)."""
        for ext in extents:
            if ext.chunk_id is not None:
                self._chunk_ids.add(ext.chunk_id)
        data = file_data(size, extents)
        if isinstance(data, int):
            for ext in extents:
                self._out.put(DB_EXTENTS, EXTENT_KEY.pack(entry_id, ext.offset),
                              encode_extent(ext.length, ext.chunk_id))
        return data

    def put_carried(self, entry_id: EntryId, parent_id: EntryId, file: CarriedFile) -> None:
        """Write an unchanged file carried from the previous snapshot
        (index.format.carried) as entry `entry_id` in directory `parent_id`,
        its record and `extents` rows as they were. `file` may be a list of
        the same fields (as msgpack gives it back)."""
        body, tail, size, chunk_id, extent_rows = file
        if parent_id != self._head_of:
            self._head_of, self._head = parent_id, carried.head(parent_id)
        self._logical_bytes += size
        if chunk_id is not None:
            self._chunk_ids.add(ChunkId(chunk_id))
        for offset, value in extent_rows:
            row_chunk = carried.extent_chunk(value)
            if row_chunk is not None:
                self._chunk_ids.add(row_chunk)
            self._out.put(DB_EXTENTS, EXTENT_KEY.pack(entry_id, offset), value)
        self._out.put(DB_ENTRIES, id_key(entry_id),
                      carried.place(self._head, body, tail, entry_id))

    def link_inode(self, group: bytes, entry_id: EntryId) -> EntryId:
        """The inode id of the file with hard links `group` (any bytes that
        name it) of which `entry_id` is a name: the id of its first name."""
        txn = self._out.txn()
        if self._link_groups is None:
            # A table of the build only, dropped by `finish`.
            self._link_groups = self._env.open_db(_LINK_GROUPS, txn=txn)
        first = txn.get(group, db=self._link_groups)
        if first is not None:
            return decode_id(bytes(first), "link group")
        txn.put(group, id_key(entry_id), db=self._link_groups)
        self._out.count(len(group) + ID_KEY.size)
        return entry_id

    def put_locations(self, locate: Locate) -> int:
        """Write where each chunk the extents named is (`locate` finds the
        places of a list of ids, and is called for a few thousand at a
        time); returns how many chunks. A chunk it does not find raises
        `MissingChunk`."""
        batch: list[ChunkId] = []
        for cid in self._chunk_ids.sorted():
            batch.append(cid)
            if len(batch) >= _LOCATE_BATCH:
                self._put_located(batch, locate)
                batch = []
        self._put_located(batch, locate)
        self._chunk_ids.close()
        return self._chunks

    def _put_located(self, ordered: list[ChunkId], locate: Locate) -> None:
        if not ordered:
            return
        found = locate(ordered)
        for cid in ordered:
            loc = found.get(cid)
            if loc is None:
                raise MissingChunk(f"chunk {cid.hex()} was not stored")
            self._out.put(DB_CHUNKS, cid, loc if isinstance(loc, bytes) else encode_location(loc))
        self._chunks += len(ordered)

    def finish(self, meta: dict[str, Any]) -> WriteIndex:
        """Write the metadata, `meta` and the counts of what was put, and
        commit; returns what writes the finished index into a file."""
        meta = {**meta, "version": INDEX_VERSION, "entries": self._entries,
                "chunks": self._chunks, "logical_bytes": self._logical_bytes}
        self._out.put(DB_META, META_KEY, codec.pack(meta))
        if self._link_groups is not None:
            self._out.txn().drop(self._link_groups, delete=True)
            self._link_groups = None
        self._out.commit()
        return self._write_to

    def _write_to(self, fd: int) -> None:
        copy_compact(self._env, fd)

    def close(self) -> None:
        """Drop the local file (and whatever was not finished)."""
        self._out.abort()
        self._chunk_ids.close()
        self._room.close()
        self._env.close()
        remove_lmdb_file(self.path)
