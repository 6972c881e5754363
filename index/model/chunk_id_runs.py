"""The set of chunk ids a new snapshot uses, in bounded memory.

A snapshot of ten million small files names ten million chunks: as Python
objects in a set that is a gigabyte. Ids are gathered in memory up to a
bound, then written sorted to a local file as one run; reading merges the
runs and gives each id once, in order (the order of the `chunks` table).
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Iterator
from pathlib import Path

from index.format.types import ChunkId
from index.store.local_space import reporting_full
from index.store.private import open_private

ID_LEN = 32
_IN_MEMORY = 1 << 16
_READ_IDS = 4096
_WHAT = "sorting the chunk ids of the snapshot index"


class ChunkIdRuns:
    """Chunk ids added in any order, read back sorted and each once."""

    def __init__(self, path: Path, in_memory: int = _IN_MEMORY) -> None:
        """Spill to the local file `path` (created on the first spill,
        deleted by `close`) beyond `in_memory` distinct ids."""
        self.path = path
        self._limit = in_memory
        self._ids: set[ChunkId] = set()
        self._runs: list[tuple[int, int]] = []
        """(offset, ids) of each run in the file."""
        self._fd = -1
        self._end = 0

    def add(self, cid: ChunkId) -> None:
        """Add one id."""
        self._ids.add(cid)
        if len(self._ids) >= self._limit:
            self._spill()

    def _spill(self) -> None:
        data = b"".join(sorted(self._ids))
        with reporting_full(self.path.parent, _WHAT):
            if self._fd < 0:
                self._fd = open_private(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            written = 0
            while written < len(data):
                written += os.pwrite(self._fd, memoryview(data)[written:], self._end + written)
        self._runs.append((self._end, len(self._ids)))
        self._end += len(data)
        self._ids = set()

    def _run(self, offset: int, count: int) -> Iterator[bytes]:
        end = offset + count * ID_LEN
        while offset < end:
            block = os.pread(self._fd, min(end - offset, _READ_IDS * ID_LEN), offset)
            if not block:
                raise OSError(f"{self.path}: short read")
            offset += len(block)
            for i in range(0, len(block), ID_LEN):
                yield block[i : i + ID_LEN]

    def sorted(self) -> Iterator[ChunkId]:
        """Every id added, in byte order, each once."""
        ids: list[bytes] = sorted(self._ids)
        if not self._runs:
            yield from (ChunkId(cid) for cid in ids)
            return
        last = b""
        for cid in heapq.merge(ids, *(self._run(o, n) for o, n in self._runs)):
            if cid != last:
                last = cid
                yield ChunkId(cid)

    def close(self) -> None:
        """Forget the ids and delete the file."""
        self._ids = set()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.path.unlink(missing_ok=True)
