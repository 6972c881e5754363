"""Reading one source file into chunks: small files whole, large ones by
FastCDC, sparse files region by region so that holes are never stored."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import IO, cast

from pyfastcdc import FastCDC

from index.format.config import ChunkerParams
from index.format.types import ChunkId, Extent
from writer.chunk_cutter import Readable, cut
from writer.packer import ChunkSink

# Chunks go to the encoder threads in runs of about this many bytes: one
# 4 MiB chunk, or a few hundred small ones (per-chunk hand-offs cost more
# than hashing or compressing 8 KiB).
_BATCH_BYTES = 1 << 20
IN_FLIGHT_BYTES = 8 << 20
"""Bytes of chunks waiting for or in the encoder threads at most: the
largest chunk (4 MiB) for each of the two."""


@dataclass(frozen=True, slots=True)
class FileContent:
    """What reading a file produced."""

    st: os.stat_result
    extents: list[Extent]
    stored_bytes: int
    bytes_read: int

    @property
    def size(self) -> int:
        """The length the extents describe (the file's size unless it changed)."""
        return self.extents[-1].offset + self.extents[-1].length if self.extents else 0


class FileChanged(Exception):
    """The file changed while it was being read; `content` is what was read."""

    def __init__(self, content: FileContent) -> None:
        super().__init__("changed while being read")
        self.content = content


class _RegionReader:
    """A `readinto` stream over [start, end) of a file descriptor."""

    def __init__(self, fd: int, start: int, end: int | None) -> None:
        self._fd = fd
        self._pos = start
        self._end = end

    def readinto(self, buf: memoryview) -> int:
        n = len(buf) if self._end is None else min(len(buf), self._end - self._pos)
        if n <= 0:
            return 0
        got = os.preadv(self._fd, [buf[:n]], self._pos)
        self._pos += got
        return got


def _data_regions(fd: int, size: int) -> list[tuple[int, int]]:
    """[start, end) ranges holding data; the gaps between them are holes."""
    regions: list[tuple[int, int]] = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole is left
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end > start:
            regions.append((start, end))
        pos = end
    return regions


def _without_gaps(extents: list[Extent]) -> list[Extent]:
    """Extents that cover [0, end) without gaps: a region that came back
    short (the file shrank while read) leaves a gap, shown as a hole."""
    result: list[Extent] = []
    pos = 0
    for ext in extents:
        if ext.offset > pos:
            result.append(Extent(pos, ext.offset - pos, None))
        result.append(ext)
        pos = ext.offset + ext.length
    return result


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_size, a.st_mtime_ns, a.st_ctime_ns, a.st_ino) == (
        b.st_size, b.st_mtime_ns, b.st_ctime_ns, b.st_ino
    )


class InFlight:
    """The bytes of chunks handed to the encoder threads and not stored yet,
    by all the threads that read: a thread waits while handing over more
    would pass `limit` (one batch goes whatever its size). Each thread that
    reads holds a copy of what it hands over: without a bound shared by
    them, four threads reading files of a few MB (while the encoders were
    the slower) held some 20 MB of copies in the benchmark's first backup."""

    def __init__(self, limit: int = IN_FLIGHT_BYTES) -> None:
        self._limit = limit
        self._bytes = 0
        self._changed = threading.Condition()

    def acquire(self, size: int) -> None:
        """Wait until `size` bytes more may be handed over, and count them."""
        with self._changed:
            while self._bytes and self._bytes + size > self._limit:
                self._changed.wait()
            self._bytes += size

    def release(self, size: int) -> None:
        """`size` bytes handed over are stored (or failed)."""
        with self._changed:
            self._bytes -= size
            self._changed.notify_all()


class FileReader:
    """Turns files into extents, storing new chunks in a `ChunkSink`."""

    def __init__(self, sink: ChunkSink, params: ChunkerParams, encoders: Executor,
                 in_flight: InFlight | None = None) -> None:
        """`in_flight` bounds what the readers sharing `encoders` hand them."""
        self._sink = sink
        self._params = params
        self._encoders = encoders
        self._in_flight = in_flight or InFlight()

    def _submit(self, batch: list[tuple[ChunkId, bytes]], size: int,
                pending: list[Future[None]], on_bytes: Callable[[int], None]) -> None:
        on_bytes(size)
        while pending and pending[0].done():
            pending.pop(0).result()
        self._in_flight.acquire(size)
        try:
            future = self._encoders.submit(self._sink.store_many, batch)
        except BaseException:
            self._in_flight.release(size)
            raise
        future.add_done_callback(lambda _: self._in_flight.release(size))
        pending.append(future)

    @property
    def min_size(self) -> int:
        """Files smaller than this are one chunk."""
        return self._params.min_size

    def _chunker(self) -> FastCDC:
        return FastCDC(
            self._params.avg_size,
            min_size=self._params.min_size,
            max_size=self._params.max_size,
            normalized_chunking=self._params.normalized_chunking,  # type: ignore[arg-type]
            seed=self._params.seed,
        )

    def read(self, path: bytes, on_bytes: Callable[[int], None]) -> FileContent:
        """Read `path`; raises FileChanged if it changed meanwhile, OSError
        if it cannot be opened or read."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NOATIME", 0)
        try:
            fd = os.open(path, flags)
        except PermissionError:
            fd = os.open(path, flags & ~getattr(os, "O_NOATIME", 0))
        try:
            before = os.fstat(fd)
            extents, stored, nread = self._read_fd(fd, before, on_bytes)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        content = FileContent(before, _without_gaps(extents), stored, nread)
        if not _same(before, after) or nread != stored:
            raise FileChanged(content)
        return content

    def read_stream(self, stream: IO[bytes], on_bytes: Callable[[int], None]
                    ) -> tuple[list[Extent], int]:
        """Chunk and store what `stream` (a pipe) gives up to its end, in
        bounded memory; its extents and size."""
        extents: list[Extent] = []
        pending: list[Future[None]] = []
        try:
            # A pipe's buffered reader has readinto, which IO[bytes] does not declare.
            size = self._chunk(cast(Readable, stream), 0, self._chunker(), extents, pending,
                               on_bytes)
        finally:
            for fut in pending:
                fut.result()
        return extents, size

    def _chunk(self, stream: Readable, start: int, chunker: FastCDC,
               extents: list[Extent], pending: list[Future[None]],
               on_bytes: Callable[[int], None]) -> int:
        """Cut `stream` (beginning at offset `start` of the file) into
        chunks, add their extents to `extents` and hand them to the
        encoders in batches (their futures in `pending`); the bytes read."""
        batch: list[tuple[ChunkId, bytes]] = []
        batch_bytes = nread = 0
        for view in cut(chunker, stream):
            data = bytes(view)
            cid = self._sink.chunk_id(data)
            extents.append(Extent(start + nread, len(data), cid))
            batch.append((cid, data))
            batch_bytes += len(data)
            nread += len(data)
            if batch_bytes >= _BATCH_BYTES:
                self._submit(batch, batch_bytes, pending, on_bytes)
                batch, batch_bytes = [], 0
        if batch:
            self._submit(batch, batch_bytes, pending, on_bytes)
        return nread

    def _read_fd(
        self, fd: int, st: os.stat_result, on_bytes: Callable[[int], None]
    ) -> tuple[list[Extent], int, int]:
        size = st.st_size
        if size == 0:
            return [], 0, 0
        if size < self._params.min_size:
            data = os.pread(fd, size + 1, 0)
            on_bytes(len(data))
            grew = len(data) > size
            data = data[:size]
            if not data:
                return [], 0, int(grew)
            cid = self._sink.chunk_id(data)
            self._sink.store(cid, data)
            return [Extent(0, len(data), cid)], len(data), len(data) + int(grew)
        regions = _data_regions(fd, size) if st.st_blocks * 512 < size else [(0, size)]
        extents: list[Extent] = []
        pos = stored = nread = 0
        pending: list[Future[None]] = []
        chunker = self._chunker()
        try:
            for start, end in regions:
                if start > pos:
                    extents.append(Extent(pos, start - pos, None))
                nread += self._chunk(_RegionReader(fd, start, end), start, chunker, extents,
                                     pending, on_bytes)
                stored += end - start
                pos = end
            if pos < size:
                extents.append(Extent(pos, size - pos, None))
        finally:
            for fut in pending:
                fut.result()
        # A file that grew shows up as more bytes read than its size.
        extra = os.pread(fd, 1, size)
        return extents, stored, nread + len(extra)
