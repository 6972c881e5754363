"""Read-ahead for sequential readers: the chunks of the next requests of an
open file, decoded on both cores before the kernel asks for them.

A reader of a large file (a tape job, `cp`) sends one request after the
other, each as large as the previous one. While one is answered, the chunks
of the next `depth` are read and decoded in worker threads (zstd and BLAKE3
release the GIL), so that a request usually finds its chunks decoded and is
answered on the event loop without a thread hop. Each chunk is decoded
once even when two requests share it, verified like any other, and a
failure is raised by the read that needs the chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from index.format.types import ChunkId, ChunkLocation
from index.model.snapshot_reader import Piece

DEPTH = 4
"""Requests read ahead of a sequential reader (4 MiB with 1 MiB requests)."""
THREADS = 2
"""Worker threads: one for each core of the machines the mount is made for."""
MAX_CHUNKS = 8
"""A file whose requests are made of more chunks than this is not read
ahead: its small chunks cost more in bookkeeping and wake-ups than their
decoding, which one thread does for a whole request at once, with neighbours
read in one system call."""

Chunk = tuple[ChunkId, ChunkLocation]
Batch = Future[list[bytes]]


@dataclass
class _Stream:
    """What one open file is being read as."""

    end: int = -1
    """Where the last request ended: a request starting there is sequential."""
    planned_to: int = 0
    """Where the chunks read ahead end (a file offset)."""
    chunks: dict[ChunkId, tuple[int, Batch, int]] = field(default_factory=dict)
    """Chunks read ahead: id -> (file offset where its use ends, the batch
    decoding it, its place in the batch)."""
    small: bool = False
    """Made of small chunks: not read ahead (see `MAX_CHUNKS`)."""


class ReadAhead:
    """Per open file handle: chunks decoded ahead of a sequential reader."""

    def __init__(self, depth: int = DEPTH, threads: int = THREADS) -> None:
        self.depth = depth
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="read-ahead")
        self._streams: dict[int, _Stream] = {}

    def pending(self, fh: int, pieces: list[Piece]) -> list[Batch]:
        """The batches still decoding chunks of `pieces` (to wait for)."""
        stream = self._streams.get(fh)
        if stream is None or not stream.chunks:
            return []
        out: list[Batch] = []
        for p in pieces:
            if p.chunk is not None:
                made = stream.chunks.get(p.chunk[0])
                if made is not None and not made[1].done() and made[1] not in out:
                    out.append(made[1])
        return out

    def decoded(self, fh: int, cid: ChunkId) -> bytes | None:
        """Chunk `cid` if it was decoded ahead for `fh` (raising the error
        that decoding it met, if any)."""
        stream = self._streams.get(fh)
        made = stream.chunks.get(cid) if stream is not None else None
        if made is None or not made[1].done() or made[1].cancelled():
            return None
        return made[1].result()[made[2]]

    def served(self, fh: int, off: int, size: int, file_size: int,
               plan: Callable[[int, int], list[Piece]],
               read: Callable[[list[Chunk]], list[bytes]]) -> None:
        """Request (off, size) of `fh` was answered. If it followed the
        previous one, have the chunks up to `depth` requests further read
        ahead: `plan` (called here, on the caller's thread) says what a
        range of the file is made of, `read` (in a worker) decodes chunks."""
        stream = self._streams.setdefault(fh, _Stream())
        sequential = off == stream.end
        stream.end = off + size
        if stream.small:
            return
        # Chunks wholly behind the reader are not needed again.
        for cid in [c for c, made in stream.chunks.items() if made[0] <= off]:
            del stream.chunks[cid]
        if not sequential or size <= 0:
            self._drop(stream)
            stream.planned_to = off + size
            return
        start = max(stream.planned_to, off + size)
        while start < min(file_size, off + (self.depth + 1) * size):
            batch: list[Chunk] = []
            uses: list[tuple[ChunkId, int]] = []
            at = start
            pieces = plan(start, size)
            if len(pieces) > MAX_CHUNKS:
                stream.small = True
                self._drop(stream)
                return
            for p in pieces:
                at += p.length
                if p.chunk is None:
                    continue
                cid = p.chunk[0]
                known = stream.chunks.get(cid)
                if known is not None:
                    stream.chunks[cid] = (max(known[0], at), known[1], known[2])
                elif all(cid != c for c, _ in batch):
                    uses.append((cid, at))
                    batch.append(p.chunk)
            if batch:
                fut = self._pool.submit(read, batch)
                for k, (cid, end) in enumerate(uses):
                    stream.chunks[cid] = (end, fut, k)
            start += size
        stream.planned_to = start

    def release(self, fh: int) -> None:
        """`fh` was closed: what was started for it is not needed."""
        stream = self._streams.pop(fh, None)
        if stream is not None:
            self._drop(stream)

    @staticmethod
    def _drop(stream: _Stream) -> None:
        for _, fut, _ in stream.chunks.values():
            fut.cancel()
        stream.chunks.clear()

    def close(self) -> None:
        """Stop the workers."""
        for stream in self._streams.values():
            self._drop(stream)
        self._streams.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
