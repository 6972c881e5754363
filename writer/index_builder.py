"""Turning a finished staging area into a published snapshot index.

Entry ids are assigned in staging key order (depth first, names sorted), so
the same tree always gets the same ids. The index is built in a local LMDB,
then written compactly into the repository as a new file, fsynced, and made
visible by one rename: the commit point of a backup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from index import codec
from index.chunk_index import ChunkIndex
from index.errors import MissingChunk
from index.local_space import Reservation, reporting_full
from index.private import FILE_MODE
from index.repository import Repository, SnapshotRef
from index.snapshot_format import (
    ALL_DBS,
    DB_CHUNKS,
    DB_DIRENTS,
    DB_ENTRIES,
    DB_EXTENTS,
    DB_META,
    EXTENT_KEY,
    INDEX_VERSION,
    META_KEY,
    SNAPSHOTS_DIR,
    dirent_key,
    encode_entry,
    encode_extent,
    encode_location,
    id_key,
)
from index.types import ROOT_ID, ChunkId, ChunkLocation, Entry, EntryId, Kind
from writer.staging import SEP, StagedEntry, StagedItems, Staging

_MAP_SIZE = 1 << 38
_WHAT = "building the snapshot index"
_SPARE = 1 << 16
_BATCH_BYTES = 8 << 20
# A chunks row: the 32-byte id, its location, LMDB's node header.
_CHUNK_ROW = 64


@dataclass
class _OpenDir:
    key: bytes
    entry_id: EntryId
    parent_id: EntryId
    name: bytes
    staged: StagedEntry | None
    subdirs: int = 0


@dataclass
class BuildResult:
    """Counts of what went into the index."""

    entries: int = 0
    chunks: int = 0
    logical_bytes: int = 0
    orphans: list[bytes] = field(default_factory=list)
    unreadable_links: list[bytes] = field(default_factory=list)
    part_files: dict[bytes, int] = field(default_factory=dict)
    """Entries other than directories below each top-level name (part)."""


def _entry(eid: EntryId, d: _OpenDir | None, parent: EntryId, name: bytes,
           s: StagedEntry, nlink: int, inode_id: EntryId, data: bytes | int | None) -> Entry:
    return Entry(
        entry_id=eid, parent_id=parent, name=name, kind=s.kind, mode=s.mode,
        uid=s.uid, gid=s.gid, size=s.size, mtime_ns=s.mtime_ns, ctime_ns=s.ctime_ns,
        atime_ns=s.atime_ns, nlink=nlink if d is None else 2 + d.subdirs,
        rdev=s.rdev, inode_id=inode_id, stored_bytes=s.stored_bytes, data=data,
        xattrs=tuple(s.xattrs), source_ino=s.source_ino,
    )


class _Batches:
    """The write transactions of a build, each committed after about
    `budget` bytes of records: without writemap LMDB keeps the pages a
    transaction changes in memory until it ends, and a whole index of a
    million files in one would be hundreds of MB. Each is given room on the
    disk before it begins. Records go through the cursors `entries`,
    `dirents`, `extents`, `chunks` and `meta` of the current transaction;
    `wrote` counts them and starts the next transaction when one is full."""

    def __init__(self, env: lmdb.Environment, dbs: dict[bytes, Any], room: Reservation,
                 budget: int) -> None:
        self._env = env
        self._dbs = dbs
        self._room = room
        self._budget = max(budget, 1)
        self._txn: lmdb.Transaction | None = None
        self._pending = 0
        self._begin()

    def _begin(self) -> None:
        # Pages split half full: twice the records' bytes, and some.
        self._room.ensure(2 * self._budget + _SPARE)
        txn = self._txn = self._env.begin(write=True)
        self.entries = txn.cursor(self._dbs[DB_ENTRIES])
        self.dirents = txn.cursor(self._dbs[DB_DIRENTS])
        self.extents = txn.cursor(self._dbs[DB_EXTENTS])
        self.chunks = txn.cursor(self._dbs[DB_CHUNKS])
        self.meta = txn.cursor(self._dbs[DB_META])
        self._pending = 0

    def wrote(self, size: int) -> None:
        """Count `size` bytes of records written; at the budget, commit
        them and begin the next transaction (new cursors)."""
        self._pending += size
        if self._pending >= self._budget:
            self.commit()
            self._begin()

    def commit(self) -> None:
        """Commit what was written since the last commit."""
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.commit()

    def abort(self) -> None:
        """Drop what was written since the last commit."""
        txn, self._txn = self._txn, None
        if txn is not None:
            txn.abort()


class IndexBuilder:
    """Builds one snapshot's index from a staging area."""

    def __init__(self, repo: Repository, chunk_index: ChunkIndex, root: StagedEntry,
                 link_counts: dict[tuple[int, int], int],
                 locate: Callable[[list[ChunkId]], dict[ChunkId, ChunkLocation]] | None = None,
                 ) -> None:
        self._repo = repo
        self._locate = locate or chunk_index.get_many
        self._root = root
        self._link_counts = link_counts
        self.path = repo.cache_dir() / f"index-{os.getpid()}-{secrets.token_hex(4)}.lmdb"
        # No writemap: see index/local_space.py.
        with reporting_full(self.path.parent, _WHAT):
            self._env = lmdb.open(
                str(self.path), subdir=False, map_size=_MAP_SIZE, max_dbs=len(ALL_DBS) + 1,
                sync=False, metasync=False, writemap=False, lock=False, mode=FILE_MODE,
            )
            try:
                self._dbs = {name: self._env.open_db(name) for name in ALL_DBS}
                self._room = Reservation(self._env, self.path, _WHAT)
            except BaseException:
                self._env.close()
                self.path.unlink(missing_ok=True)
                raise

    def build(self, staging: Staging, meta: dict[str, Any],
              complete: Callable[[BuildResult], dict[str, Any]] | None = None
              ) -> BuildResult:
        """Write every staged record, its chunks' locations and `meta`;
        `complete`, given the counts, returns keys to add to `meta`."""
        with self._room.writing():
            # The index holds about what the staging area holds, in more tables.
            out = _Batches(self._env, self._dbs, self._room,
                           min(_BATCH_BYTES, staging.used_bytes()))
            try:
                result = self._build(staging, meta, complete, out)
            except BaseException:
                out.abort()
                raise
            out.commit()
        return result

    def _build(self, staging: Staging, meta: dict[str, Any],
               complete: Callable[[BuildResult], dict[str, Any]] | None,
               out: _Batches) -> BuildResult:
        result = BuildResult()
        link_first: dict[tuple[int, int], EntryId] = {}
        chunk_ids: set[ChunkId] = set()
        next_id = ROOT_ID + 1
        stack = [_OpenDir(b"", ROOT_ID, EntryId(0), b"", self._root)]
        with staging.items() as src:

            def close_dir(d: _OpenDir) -> None:
                assert d.staged is not None
                e = _entry(d.entry_id, d, d.parent_id, d.name, d.staged, 2, d.entry_id, None)
                out.entries.put(id_key(d.entry_id), encode_entry(e))

            for raw_key, raw in src.cursor():
                key = bytes(raw_key)
                comps = key.split(SEP)
                while len(stack) > len(comps):
                    close_dir(stack.pop())
                parent = stack[-1]
                parent_key = key.rpartition(SEP)[0]
                if len(stack) != len(comps) or parent.key != parent_key:
                    result.orphans.append(key)
                    continue
                s = StagedEntry.decode(raw)
                if s.link_owner is not None:
                    owner = staging_get(src, s.link_owner)
                    if owner is None:
                        # The path it shares content with could not be
                        # read: this link has no content to show either.
                        result.unreadable_links.append(key)
                        continue
                    s.size, s.stored_bytes, s.extents = (
                        owner.size, owner.stored_bytes, owner.extents)
                eid = EntryId(next_id)
                next_id += 1
                name = comps[-1]
                out.dirents.put(dirent_key(parent.entry_id, name), id_key(eid))
                result.entries += 1
                if s.kind == Kind.DIRECTORY:
                    parent.subdirs += 1
                    stack.append(_OpenDir(key, eid, parent.entry_id, name, s))
                    out.wrote(len(raw) + len(key))
                    continue
                result.part_files[comps[0]] = result.part_files.get(comps[0], 0) + 1
                nlink, inode_id = 1, eid
                if s.link_group is not None:
                    nlink = self._link_counts.get(s.link_group, 1)
                    inode_id = link_first.setdefault(s.link_group, eid)
                data: bytes | int | None = None
                if s.kind == Kind.SYMLINK:
                    data = s.data
                elif s.kind == Kind.REGULAR:
                    if inode_id == eid:
                        result.logical_bytes += s.size
                    exts = s.extents
                    for ext in exts:
                        if ext.chunk_id is not None:
                            chunk_ids.add(ext.chunk_id)
                    if (len(exts) == 1 and exts[0].chunk_id is not None
                            and exts[0].offset == 0 and exts[0].length == s.size):
                        data = exts[0].chunk_id
                    elif exts:
                        data = len(exts)
                        for ext in exts:
                            out.extents.put(EXTENT_KEY.pack(eid, ext.offset),
                                            encode_extent(ext.length, ext.chunk_id))
                out.entries.put(id_key(eid),
                                encode_entry(_entry(eid, None, parent.entry_id, name, s,
                                                    nlink, inode_id, data)))
                # The records hold about what the staged one held.
                out.wrote(len(raw) + len(key))
            while stack:
                close_dir(stack.pop())
        self._write_chunks(out, chunk_ids)
        result.chunks = len(chunk_ids)
        meta = {**meta, **(complete(result) if complete is not None else {}),
                "version": INDEX_VERSION, "entries": result.entries,
                "chunks": result.chunks, "logical_bytes": result.logical_bytes}
        out.meta.put(META_KEY, codec.pack(meta))
        return result

    def _write_chunks(self, out: _Batches, chunk_ids: set[ChunkId]) -> None:
        ordered = sorted(chunk_ids)
        found = self._locate(ordered)
        for cid in ordered:
            loc = found.get(cid)
            if loc is None:
                raise MissingChunk(f"chunk {cid.hex()} was not stored")
            out.chunks.put(cid, encode_location(loc), append=True)
            out.wrote(_CHUNK_ROW)

    def publish(self, ref: SnapshotRef) -> None:
        """Copy the index into the repository and make it visible: the
        commit point. The caller holds the host's lock and chose a free name."""
        storage = self._repo.storage
        with storage.writing("writing the snapshot index"):
            storage.makedirs(f"{SNAPSHOTS_DIR}/{ref.host}")
            self._repo.indexes.publish(ref.relpath, self._copy_to)

    def _copy_to(self, fd: int) -> None:
        try:
            self._env.copyfd(fd, compact=True)
        except lmdb.DiskError as exc:  # py-lmdb's name for ENOSPC
            raise OSError(errno.ENOSPC, str(exc)) from exc
        except lmdb.Error as exc:  # its message names the cause
            raise OSError(errno.EIO, str(exc)) from exc

    def close(self) -> None:
        """Drop the local build."""
        self._room.close()
        self._env.close()
        for p in (self.path, Path(str(self.path) + "-lock")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def staging_get(txn: StagedItems, key: bytes) -> StagedEntry | None:
    """A staged record read inside an open staging transaction."""
    raw = txn.get(key)
    return None if raw is None else StagedEntry.decode(raw)

