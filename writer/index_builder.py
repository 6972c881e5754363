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


def _entry(eid: EntryId, d: _OpenDir | None, parent: EntryId, name: bytes,
           s: StagedEntry, nlink: int, inode_id: EntryId, data: bytes | int | None) -> Entry:
    return Entry(
        entry_id=eid, parent_id=parent, name=name, kind=s.kind, mode=s.mode,
        uid=s.uid, gid=s.gid, size=s.size, mtime_ns=s.mtime_ns, ctime_ns=s.ctime_ns,
        atime_ns=s.atime_ns, nlink=nlink if d is None else 2 + d.subdirs,
        rdev=s.rdev, inode_id=inode_id, stored_bytes=s.stored_bytes, data=data,
        xattrs=tuple(s.xattrs), source_ino=s.source_ino,
    )


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
        self._env = lmdb.open(
            str(self.path), subdir=False, map_size=_MAP_SIZE, max_dbs=len(ALL_DBS) + 1,
            sync=False, metasync=False, writemap=True, lock=False, mode=FILE_MODE,
        )
        self._dbs = {name: self._env.open_db(name) for name in ALL_DBS}

    def build(self, staging: Staging, meta: dict[str, Any]) -> BuildResult:
        """Write every staged record, its chunks' locations and `meta`."""
        result = BuildResult()
        link_first: dict[tuple[int, int], EntryId] = {}
        chunk_ids: set[ChunkId] = set()
        next_id = ROOT_ID + 1
        stack = [_OpenDir(b"", ROOT_ID, EntryId(0), b"", self._root)]
        with staging.items() as src, self._env.begin(write=True) as txn:
            entries = txn.cursor(self._dbs[DB_ENTRIES])
            dirents = txn.cursor(self._dbs[DB_DIRENTS])
            extents = txn.cursor(self._dbs[DB_EXTENTS])

            def close_dir(d: _OpenDir) -> None:
                assert d.staged is not None
                e = _entry(d.entry_id, d, d.parent_id, d.name, d.staged, 2, d.entry_id, None)
                entries.put(id_key(d.entry_id), encode_entry(e))

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
                dirents.put(dirent_key(parent.entry_id, name), id_key(eid))
                result.entries += 1
                if s.kind == Kind.DIRECTORY:
                    parent.subdirs += 1
                    stack.append(_OpenDir(key, eid, parent.entry_id, name, s))
                    continue
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
                            extents.put(EXTENT_KEY.pack(eid, ext.offset),
                                        encode_extent(ext.length, ext.chunk_id))
                entries.put(id_key(eid),
                            encode_entry(_entry(eid, None, parent.entry_id, name, s,
                                                nlink, inode_id, data)))
            while stack:
                close_dir(stack.pop())
            self._write_chunks(txn, chunk_ids)
            result.chunks = len(chunk_ids)
            meta = {**meta, "version": INDEX_VERSION, "entries": result.entries,
                    "chunks": result.chunks, "logical_bytes": result.logical_bytes}
            txn.put(META_KEY, codec.pack(meta), db=self._dbs[DB_META])
        return result

    def _write_chunks(self, txn: lmdb.Transaction, chunk_ids: set[ChunkId]) -> None:
        ordered = sorted(chunk_ids)
        found = self._locate(ordered)
        cur = txn.cursor(self._dbs[DB_CHUNKS])
        for cid in ordered:
            loc = found.get(cid)
            if loc is None:
                raise MissingChunk(f"chunk {cid.hex()} was not stored")
            cur.put(cid, encode_location(loc), append=True)

    def publish(self, ref: SnapshotRef) -> None:
        """Copy the index into the repository and make it visible: the
        commit point. The caller holds the host's lock and chose a free name."""
        storage = self._repo.storage
        with storage.writing("writing the snapshot index"):
            storage.makedirs(f"{SNAPSHOTS_DIR}/{ref.host}")
            self._repo.publish_index(ref.relpath, self._copy_to)

    def _copy_to(self, fd: int) -> None:
        try:
            self._env.copyfd(fd, compact=True)
        except lmdb.DiskError as exc:  # py-lmdb's name for ENOSPC
            raise OSError(errno.ENOSPC, str(exc)) from exc
        except lmdb.Error as exc:  # its message names the cause
            raise OSError(errno.EIO, str(exc)) from exc

    def close(self) -> None:
        """Drop the local build."""
        self._env.close()
        for p in (self.path, Path(str(self.path) + "-lock")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def staging_get(txn: StagedItems, key: bytes) -> StagedEntry | None:
    """A staged record read inside an open staging transaction."""
    raw = txn.get(key)
    return None if raw is None else StagedEntry.decode(raw)

