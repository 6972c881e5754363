"""Reading one published snapshot index without loading it.

Every operation is one or a few B-tree lookups in the snapshot's LMDB file,
opened read-only and without a lock file, so any number of readers (and
readers on NFS) can share it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from index.errors import MissingChunk, PathNotFound, RepositoryCorrupt
from index.format.lmdb_file import check_whole
from index.format.snapshot_format import (
    DB_CHUNKS,
    DB_DIRENTS,
    DB_ENTRIES,
    DB_EXTENTS,
    DB_META,
    EXTENT_KEY,
    ID_KEY,
    META_KEY,
    decode_entry,
    decode_extent,
    decode_extent_key,
    decode_id,
    decode_location,
    decode_meta,
    dirent_key,
    id_key,
)
from index.format.types import ROOT_ID, ChunkId, ChunkLocation, Entry, EntryId, Extent, Kind
from index.model.chunkstore import ChunkStore
from index.model.snapshot_meta import SnapshotMeta


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of a read: `length` zeros, or bytes [lo, lo+length) of a chunk."""

    length: int
    chunk: tuple[ChunkId, ChunkLocation] | None = None
    lo: int = 0


def assemble(pieces: list[Piece], fetch: Callable[[ChunkId, ChunkLocation], bytes | None]
             ) -> bytes | None:
    """The bytes of a read from its pieces, with `fetch` giving each chunk
    decoded; None as soon as `fetch` does (a chunk its reader would have to
    wait for)."""
    out: list[bytes | memoryview] = []
    for p in pieces:
        if p.chunk is None:
            out.append(bytes(p.length))
            continue
        data = fetch(*p.chunk)
        if data is None:
            return None
        # A view: the join below is then the only copy of a partial chunk
        # (a whole chunk alone is returned as it is).
        whole = p.lo == 0 and p.length == len(data)
        out.append(data if whole else memoryview(data)[p.lo : p.lo + p.length])
    return b"".join(out)


class SnapshotReader:
    """Read access to one snapshot index file."""

    def __init__(self, path: Path, chunks: ChunkStore | None = None,
                 fd: int | None = None, stored_id: str = "") -> None:
        """Open the index at `path`, or the file open as `fd` (which the
        reader then owns; `path` only names it in messages)."""
        # Which stored file this was read from (IndexFiles.identity):
        # gc may replace an index by a relocated copy under the same name
        # (index.model.snapshot_editor), and readers that stay open for long compare it
        # with the stored file's current identity.
        self.stored_id = stored_id
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC) if fd is None else fd
        try:
            check_whole(self._fd, f"snapshot index {path.name}")
            # LMDB opens the very file behind the descriptor: no name inside
            # the repository is looked up again.
            # Kernel read-ahead stays on: on a cold cache, a walk through a
            # snapshot touches its index pages roughly in file order.
            self._env = lmdb.open(
                f"/proc/self/fd/{self._fd}", subdir=False, readonly=True, lock=False,
                max_dbs=8,
            )
        except lmdb.Error as exc:
            os.close(self._fd)
            raise RepositoryCorrupt(f"snapshot index {path.name}: {exc}") from exc
        except BaseException:
            os.close(self._fd)
            raise
        try:
            self._meta_db = self._env.open_db(DB_META, create=False)
            self._entries = self._env.open_db(DB_ENTRIES, create=False)
            self._dirents = self._env.open_db(DB_DIRENTS, create=False)
            self._extents = self._env.open_db(DB_EXTENTS, create=False)
            self._chunks = self._env.open_db(DB_CHUNKS, create=False)
            with self._env.begin(db=self._meta_db) as txn:
                raw = txn.get(META_KEY)
            if raw is None:
                raise RepositoryCorrupt(f"snapshot index {path.name}: no metadata")
            self.meta: dict[str, Any] = decode_meta(raw, path.name)
        except lmdb.Error as exc:
            self.close()
            raise RepositoryCorrupt(f"snapshot index {path.name}: {exc}") from exc
        except BaseException:
            self.close()
            raise
        self.path = path
        self.chunk_store = chunks

    @property
    def mapped_file(self) -> str:
        """A path of the very file this reader maps (for mapped_pages)."""
        return f"/proc/self/fd/{self._fd}"

    @property
    def snapshot_meta(self) -> SnapshotMeta:
        """What the metadata says of the snapshot, typed."""
        return SnapshotMeta.from_meta(self.meta)

    def prefetch(self) -> None:
        """Ask the kernel to read the whole index into the page cache in the
        background: lookups in the chunk table go by hash, i.e. to random
        pages, which on a cold cache would cost a disk seek per file."""
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_WILLNEED)

    def close(self) -> None:
        """Release the memory map and the file."""
        self._env.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def entry(self, entry_id: EntryId) -> Entry:
        """The entry with id `entry_id`."""
        with self._env.begin(db=self._entries, buffers=True) as txn:
            raw = txn.get(id_key(entry_id))
            if raw is None:
                raise PathNotFound(f"no entry {entry_id} in {self.path.name}")
            return decode_entry(entry_id, raw)

    def root(self) -> Entry:
        """The snapshot's root directory (its children are the parts)."""
        return self.entry(ROOT_ID)

    def lookup(self, parent_id: EntryId, name: bytes) -> EntryId | None:
        """The id of `name` inside directory `parent_id`, if present."""
        with self._env.begin(db=self._dirents) as txn:
            raw = txn.get(dirent_key(parent_id, name))
        return None if raw is None else decode_id(raw, f"{self.path.name}: dirent")

    def resolve(self, path: bytes | str) -> Entry:
        """The entry at `path` ("part/dir/file"); raises PathNotFound."""
        if isinstance(path, str):
            path = path.encode("utf-8", "surrogateescape")
        current = ROOT_ID
        for name in path.split(b"/"):
            if not name or name == b".":
                continue
            found = self.lookup(current, name)
            if found is None:
                shown = path.decode("utf-8", "backslashreplace")
                raise PathNotFound(f"{shown}: not in snapshot {self.meta['name']}")
            current = found
        return self.entry(current)

    def children(
        self, dir_id: EntryId, after: bytes | None = None
    ) -> Iterator[tuple[bytes, EntryId]]:
        """Names and ids in directory `dir_id`, sorted, starting after `after`."""
        prefix = ID_KEY.pack(dir_id)
        with self._env.begin(db=self._dirents) as txn:
            cur = txn.cursor()
            start = prefix + after if after is not None else prefix
            if not cur.set_range(start):
                return
            for key, value in cur:
                if not key.startswith(prefix):
                    return
                name = key[len(prefix):]
                if after is not None and name == after:
                    continue
                yield name, decode_id(value, f"{self.path.name}: dirent")

    def listing(self, dir_id: EntryId) -> Iterator[tuple[bytes, EntryId]]:
        """The names in directory `dir_id`, sorted, with their entries'
        ids, read in one transaction."""
        prefix = ID_KEY.pack(dir_id)
        what = f"{self.path.name}: dirent"
        with self._env.begin(db=self._dirents, buffers=False) as txn:
            cur = txn.cursor()
            if not cur.set_range(prefix):
                return
            for key, value in cur:
                if key[: ID_KEY.size] != prefix:
                    return
                yield key[ID_KEY.size :], decode_id(value, what)

    def record(self, entry_id: EntryId) -> bytes | None:
        """The undecoded record of entry `entry_id` (see
        index.format.carried), if there is one."""
        with self._env.begin(db=self._entries, buffers=False) as txn:
            raw = txn.get(id_key(entry_id))
        return None if raw is None else bytes(raw)

    def extent_rows(self, entry_id: EntryId) -> list[tuple[bytes, bytes]]:
        """The undecoded `extents` rows (key, value) of entry `entry_id`, in
        offset order."""
        prefix = id_key(entry_id)
        rows: list[tuple[bytes, bytes]] = []
        with self._env.begin(db=self._extents, buffers=False) as txn:
            cur = txn.cursor()
            if not cur.set_range(prefix):
                return rows
            for key, value in cur:
                if key[: ID_KEY.size] != prefix:
                    break
                rows.append((key, value))
        return rows

    def chunk_rows(self) -> Iterator[tuple[bytes, bytes]]:
        """The undecoded `chunks` rows (chunk id, location), in id order."""
        with self._env.begin(db=self._chunks, buffers=False) as txn:
            yield from txn.cursor()

    def extents(self, entry: Entry, offset: int = 0, size: int | None = None) -> list[Extent]:
        """The extents of a regular file that overlap [offset, offset+size)."""
        end = entry.size if size is None else min(entry.size, offset + size)
        if entry.kind != Kind.REGULAR or offset >= end:
            return []
        if isinstance(entry.data, bytes):
            return [Extent(0, entry.size, ChunkId(entry.data))]
        if not entry.data:
            return [Extent(0, entry.size, None)]
        result: list[Extent] = []
        with self._env.begin(db=self._extents) as txn:
            cur = txn.cursor()
            # The extent holding `offset` starts at or before it.
            wanted = EXTENT_KEY.pack(entry.entry_id, offset)
            if not cur.set_range(wanted):
                cur.last()
            elif cur.key() != wanted:
                cur.prev()
            for key, value in cur:
                eid, _ = decode_extent_key(key)
                if eid != entry.entry_id:
                    if eid < entry.entry_id:
                        continue
                    break
                ext = decode_extent(key, value)
                if ext.offset >= end:
                    break
                if ext.offset + ext.length > offset:
                    result.append(ext)
        return result

    def location(self, cid: ChunkId) -> ChunkLocation:
        """Where chunk `cid` is stored."""
        with self._env.begin(db=self._chunks) as txn:
            raw = txn.get(cid)
        if raw is None:
            raise MissingChunk(f"chunk {cid.hex()} is not in snapshot {self.meta['name']}")
        return decode_location(raw)

    def pieces(self, entry: Entry, offset: int, size: int) -> list[Piece]:
        """What bytes [offset, offset+size) of a regular file are made of
        (short at the end): zeros, or part of a chunk with its location."""
        end = min(entry.size, offset + size)
        if offset >= end:
            return []
        pieces: list[Piece] = []
        pos = offset
        for ext in self.extents(entry, offset, end - offset):
            lo, hi = max(pos, ext.offset), min(end, ext.offset + ext.length)
            if lo >= hi:
                continue
            if ext.chunk_id is None:
                pieces.append(Piece(hi - lo))
            else:
                loc = self.location(ext.chunk_id)
                pieces.append(Piece(hi - lo, (ext.chunk_id, loc), lo - ext.offset))
            pos = hi
        if pos < end:
            pieces.append(Piece(end - pos))
        return pieces

    def read(self, entry: Entry, offset: int, size: int) -> bytes:
        """`size` bytes of a regular file from `offset` (short at the end)."""
        store = self.chunk_store
        if store is None:
            raise RuntimeError("snapshot opened without a chunk store")
        data = assemble(self.pieces(entry, offset, size), store.read)
        assert data is not None  # read waits for every chunk
        return data

    def chunk_ids(self) -> Iterator[tuple[ChunkId, ChunkLocation]]:
        """Every chunk this snapshot uses, with its location."""
        with self._env.begin(db=self._chunks) as txn:
            for key, value in txn.cursor():
                yield ChunkId(bytes(key)), decode_location(value)

    def path_of(self, entry_id: EntryId) -> bytes:
        """The path of an entry, from its parents (for messages and links)."""
        names: list[bytes] = []
        while entry_id != ROOT_ID:
            e = self.entry(entry_id)
            names.append(e.name)
            entry_id = e.parent_id
        return b"/".join(reversed(names))

    def entries(self) -> Iterator[Entry]:
        """Every entry in id order (depth first), decoded."""
        with self._env.begin(db=self._entries) as txn:
            for key, value in txn.cursor():
                yield decode_entry(decode_id(key, f"{self.path.name}: entry key"), value)

    def content_key(self, entry: Entry) -> tuple[object, ...]:
        """What a file's content is made of: equal keys mean equal bytes."""
        if entry.kind == Kind.SYMLINK:
            return (entry.data,)
        if entry.kind != Kind.REGULAR:
            return (entry.kind, entry.rdev)
        return (entry.size, *[(x.offset, x.length, x.chunk_id) for x in self.extents(entry)])

    def walk(self, top: EntryId = ROOT_ID, prefix: bytes = b"") -> Iterator[tuple[bytes, Entry]]:
        """Every entry below `top`, depth first, with its path."""
        for name, child_id in list(self.children(top)):
            entry = self.entry(child_id)
            path = prefix + name
            yield path, entry
            if entry.kind == Kind.DIRECTORY:
                yield from self.walk(child_id, path + b"/")
