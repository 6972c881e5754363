"""Storing new chunks: deduplicate, encode, append to packs, publish packs.

Called from many worker threads. Encoding (zstd) runs outside the lock and
releases the GIL; only appending to the open pack is serialised. A full pack
is finished (fsynced, verified, renamed) and only then entered into the
local chunk index, so the index never names a chunk that is not durable.
A failed write into the repository (no space left) raises `WriteFailed`,
here and for every later chunk: the backup stops, it never carries on with
files whose chunks were lost.
"""

from __future__ import annotations

import threading

from index.format import blob
from index.format.crypto import Cipher
from index.format.types import ChunkId
from index.model.chunk_index import ChunkIndex
from index.store.packs import PackWriter
from index.store.storage import Storage, WriteFailed
from writer.stats import BackupStats
from writer.testpoints import crash_point

PACK_BLOBS = 16384
"""Blobs a pack holds at most, whatever their size: what a pack holds is
in memory until it is published (its table, the chunks claimed for it) and
its rows go into the chunk index in one transaction, so a backup's memory
does not grow with the number of small files."""


class ChunkSink:
    """Accepts chunks for one backup; `flush` publishes the last pack."""

    def __init__(
        self,
        storage: Storage,
        chunk_index: ChunkIndex,
        key: bytes,
        level: int,
        pack_size: int,
        stats: BackupStats,
        cipher: Cipher | None = None,
    ) -> None:
        self._storage = storage
        self._cipher = cipher
        self._index = chunk_index
        self._key = key
        self._level = level
        self._pack_size = pack_size
        self._stats = stats
        self._claimed: set[ChunkId] = set()
        self._claim_lock = threading.Lock()
        self._pack_lock = threading.Lock()
        self._pack: PackWriter | None = None
        self._failed: WriteFailed | None = None
        self.packs_written = 0

    def chunk_id(self, data: bytes | memoryview) -> ChunkId:
        """The id `data` has in this repository."""
        return blob.chunk_id(self._key, data)

    def _claim(self, cid: ChunkId) -> bool:
        with self._claim_lock:
            if cid in self._claimed:
                return False
            self._claimed.add(cid)
        return self._index.get(cid) is None

    def store(self, cid: ChunkId, data: bytes | memoryview) -> None:
        """Store `data` under `cid` unless the repository already has it."""
        if self._claim(cid):
            self._append([blob.encode(cid, data, self._level, self._cipher)])

    def store_many(self, chunks: list[tuple[ChunkId, bytes]]) -> None:
        """`store` for a run of chunks: one index transaction, one pack lock
        and one stats update for all (small chunks come by the thousand)."""
        with self._claim_lock:
            fresh = [(cid, data) for cid, data in chunks if cid not in self._claimed]
            self._claimed.update(cid for cid, _ in fresh)
        known = self._index.get_many(cid for cid, _ in fresh)
        encoded = [blob.encode(cid, data, self._level, self._cipher) for cid, data in fresh
                   if cid not in known]
        if encoded:
            self._append(encoded)

    def store_again(self, cid: ChunkId, data: bytes) -> None:
        """Store `data` even though the repository has it: its only copy is
        in a pack that garbage collection is about to delete."""
        self._append([blob.encode(cid, data, self._level, self._cipher)])

    def _append(self, encoded: list[bytes | bytearray]) -> None:
        full: list[PackWriter] = []
        try:
            with self._pack_lock:
                if self._failed is not None:
                    raise self._failed
                try:
                    with self._storage.writing("writing a pack"):
                        for one in encoded:
                            if self._pack is None:
                                self._pack = PackWriter(self._storage)
                            self._pack.add(one)
                            if self._pack.size >= self._pack_size \
                                    or len(self._pack) >= PACK_BLOBS:
                                full.append(self._pack)
                                self._pack = None
                except BaseException as exc:
                    # The open pack may hold part of a blob: it can never be
                    # finished, and the chunks claimed for it are not stored.
                    self._fail(exc)
                    raise
            self._stats.add(bytes_added=sum(map(len, encoded)), chunks_added=len(encoded))
            for pack in full:
                self._finish(pack)
        finally:
            # A no-op for published packs; after a failure it deletes the
            # temporary files of full packs not published yet.
            for pack in full:
                pack.abort()

    def _fail(self, exc: BaseException) -> None:
        """Remember a failed write and drop the open pack (holding the lock)."""
        if isinstance(exc, WriteFailed) and self._failed is None:
            self._failed = exc
        if self._pack is not None:
            self._pack.abort()
            self._pack = None

    def _finish(self, pack: PackWriter) -> None:
        try:
            with self._storage.writing("writing a pack"):
                pack_id, rows = pack.finish()
        except WriteFailed as exc:
            with self._pack_lock:
                self._fail(exc)
            raise
        crash_point("pack-published")
        self._index.add_pack(pack_id, rows, pack.size)
        with self._pack_lock:
            self.packs_written += 1
        # The chunk index answers for them now.
        with self._claim_lock:
            self._claimed.difference_update(row.chunk_id for row in rows)

    def flush(self) -> None:
        """Publish the pack being filled, if any."""
        with self._pack_lock:
            if self._failed is not None:
                raise self._failed
            pack, self._pack = self._pack, None
        if pack is not None and len(pack):
            self._finish(pack)
        elif pack is not None:
            pack.abort()

    def abort(self) -> None:
        """Drop the unfinished pack after a failure."""
        with self._pack_lock:
            pack, self._pack = self._pack, None
        if pack is not None:
            pack.abort()
