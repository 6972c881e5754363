"""The previous snapshot's part of a backup walk: the names it held in
each directory, and whether a file it holds is unchanged, whose record is
then carried into the new snapshot (index.format.carried) instead of the
file being read again."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from index.format import carried
from index.format.carried import CarriedFile
from index.format.types import ChunkId, Entry, EntryId, Extent, Kind
from index.model.chunk_index import ChunkIndex
from index.model.snapshot_reader import SnapshotReader

# Chunk ids looked up in the chunk index at a time.
_CHUNK_BATCH = 4096

Listed = tuple[bytes, EntryId]
"""A name in a directory of the previous snapshot and its id."""


@dataclass
class Previous:
    """The host's previous snapshot, if any: a file it holds unchanged is
    not read again, as long as the chunk index still holds its chunks."""

    snapshot: SnapshotReader | None
    chunk_index: ChunkIndex
    _lost: set[ChunkId] | None = field(default=None, init=False)
    """Chunks of the snapshot that the repository no longer holds."""

    def listing(self, dir_id: EntryId | None) -> Iterator[Listed]:
        """The names in directory `dir_id` of the previous snapshot, sorted."""
        if self.snapshot is None or dir_id is None:
            return iter(())
        return self.snapshot.listing(dir_id)

    def carry(self, name: bytes, entry_id: EntryId, st: os.stat_result) -> CarriedFile | None:
        """The record of `name` (entry `entry_id`) carried over as it is,
        if it is that of the file `st` unchanged and the repository still
        holds its chunks; None if the file is to be looked at anew."""
        snapshot = self.snapshot
        assert snapshot is not None
        # Records are read one by one, only those of regular files: reading
        # a directory's records together also read those of its
        # subdirectories, far apart in the file, and mapped a page of every
        # one (and the kernel's neighbours of each) at once.
        raw = snapshot.record(entry_id)
        if raw is None:
            return None
        file = carried.unchanged(raw, name, st, lambda: snapshot.extent_rows(entry_id))
        if file is None:
            return None
        lost = self._lost_chunks()
        if lost and not lost.isdisjoint(carried.chunks_of(file)):
            return None
        return file

    def _lost_chunks(self) -> set[ChunkId]:
        """Chunks of the snapshot that the chunk index does not hold (any
        more): one pass over the snapshot's chunk table, looked up a few
        thousand at a time in key order, instead of lookups per file."""
        if self._lost is None:
            assert self.snapshot is not None
            self._lost = set()
            batch: list[ChunkId] = []
            for cid, _ in self.snapshot.chunk_rows():
                batch.append(ChunkId(cid))
                if len(batch) == _CHUNK_BATCH:
                    self._lost.update(self._not_held(batch))
                    batch = []
            self._lost.update(self._not_held(batch))
        return self._lost

    def _not_held(self, cids: list[ChunkId]) -> list[ChunkId]:
        held = self.chunk_index.get_many_raw(cids)
        return [cid for cid in cids if cid not in held]

    def lookup(self, parent_id: EntryId | None, name: bytes) -> EntryId | None:
        """The id of `name` in directory `parent_id` of the previous snapshot."""
        if self.snapshot is None or parent_id is None:
            return None
        return self.snapshot.lookup(parent_id, name)

    def entry(self, entry_id: EntryId | None) -> Entry | None:
        """The entry `entry_id` of the previous snapshot."""
        return self.snapshot.entry(entry_id) if self.snapshot is not None and entry_id else None

    def unchanged(self, prev: Entry, st: os.stat_result) -> list[Extent] | None:
        """The extents of `prev` if it is the regular file `st` describes,
        unchanged, and the chunk index still holds every chunk of it."""
        if self.snapshot is None or prev.kind != Kind.REGULAR or (
            prev.size, prev.mtime_ns, prev.ctime_ns, prev.source_ino
        ) != (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
            return None
        extents = self.snapshot.extents(prev)
        cids = [ChunkId(e.chunk_id) for e in extents if e.chunk_id is not None]
        return extents if len(self.chunk_index.get_many(cids)) == len(set(cids)) else None
