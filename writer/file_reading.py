"""Reading the content of a backup's regular files, in threads or not.

Large files are read, chunked, hashed and compressed by worker threads
while the walk goes on; small ones by the walking thread itself (see
`read_small`). Each read gives the file's staged entry or says why there
is none; the walk stages what was read.
"""

from __future__ import annotations

import enum
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import TracebackType
from typing import IO

from index.format.config import ChunkerParams
from index.format.names import show_path
from index.format.types import Extent, Kind
from writer.filereader import FileChanged, FileReader, InFlight
from writer.long_paths import reachable
from writer.metadata import read_xattrs
from writer.packer import ChunkSink
from writer.staging import StagedEntry
from writer.stats import BackupStats


class Unread(enum.Enum):
    """Why a file gave no entry (the warning, if any, is already given)."""

    VANISHED = "vanished"
    """It was deleted before it could be read (or moved: see the walk)."""
    FAILED = "failed"
    """It could not be read."""


@dataclass
class PendingFile:
    """A regular file to read: where it is staged and how it is counted."""

    key: bytes
    path: bytes
    ino: int
    category: str
    """The counter of `BackupStats` it adds to (files_new, files_changed)."""
    group: tuple[int, int] | None
    """(device, inode) of a file with hard links."""
    size: int


Read = tuple[PendingFile, StagedEntry | Unread]
"""A file and what reading it gave."""


class FileReading:
    """The threads that read files, and the files waiting for them. Use
    with `with`: leaving it stops the threads."""

    def __init__(self, sink: ChunkSink, chunker: ChunkerParams, stats: BackupStats,
                 threads: int) -> None:
        self._sink = sink
        self._chunker = chunker
        self._stats = stats
        self._encoders = ThreadPoolExecutor(2, thread_name_prefix="encode")
        self._in_flight = InFlight()
        self._readers = ThreadPoolExecutor(threads, thread_name_prefix="read")
        self._prefetcher = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        self._by_chunk_size: dict[int | None, FileReader] = {}
        self._reader = self._reader_for(None)
        self._small: list[tuple[PendingFile, FileReader]] = []
        self._jobs: deque[tuple[PendingFile, Future[StagedEntry | Unread]]] = deque()
        self._max_jobs = threads * 4

    def __enter__(self) -> FileReading:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _reader_for(self, chunk_size: int | None) -> FileReader:
        reader = self._by_chunk_size.get(chunk_size)
        if reader is None:
            params = self._chunker
            if chunk_size is not None:
                params = replace(params, min_size=chunk_size // 4, avg_size=chunk_size,
                                 max_size=chunk_size * 4)
            reader = self._by_chunk_size[chunk_size] = FileReader(
                self._sink, params, self._encoders, self._in_flight)
        return reader

    def use_chunk_size(self, chunk_size: int | None) -> None:
        """Cut the files added from now on into chunks of `chunk_size` on
        average (None: the repository's)."""
        self._reader = self._reader_for(chunk_size)

    def add(self, f: PendingFile) -> list[Read]:
        """Read `f` soon; returns the reads that finished meanwhile."""
        if f.size < self._reader.min_size:
            # Small files are read by the walking thread once their directory
            # has been visited (see `read_small`): handing each to a thread
            # costs more than reading it, and threads that all need the GIL
            # for short steps slow each other down (30,000 mail files took
            # 5.8 s this way, 7-8 s with one or two helper threads).
            self._small.append((f, self._reader))
            return []
        done: list[Read] = []
        while len(self._jobs) >= self._max_jobs:
            done.append(self._finish())
        self._jobs.append((f, self._readers.submit(self._read, f.path, f.group, self._reader)))
        return done

    def read_stream(self, stream: IO[bytes]) -> tuple[list[Extent], int]:
        """Chunk (at the current chunk size) and store what `stream` gives
        up to its end, in the calling thread; its extents and size."""
        def on_bytes(n: int) -> None:
            self._stats.add(bytes_read=n)

        return self._reader.read_stream(stream, on_bytes)

    def read_small(self) -> list[Read]:
        """Read the small files added, while a helper thread asks the kernel
        to fetch the next ones (posix_fadvise WILLNEED): on a cold cache the
        disk then works ahead of this thread instead of waiting for it, file
        by file."""
        items, self._small = self._small, []
        if len(items) > 1:
            self._prefetcher.submit(_fetch_ahead, [f.path for f, _ in items[1:]])
        return [(f, self._read(f.path, f.group, reader)) for f, reader in items]

    def drain(self) -> list[Read]:
        """Wait for every file handed to the threads."""
        return [self._finish() for _ in range(len(self._jobs))]

    def _finish(self) -> Read:
        f, future = self._jobs.popleft()
        return f, future.result()

    def _read(self, path: bytes, group: tuple[int, int] | None,
              reader: FileReader) -> StagedEntry | Unread:
        """Read one file (in a worker thread, or the walking one)."""
        def on_bytes(n: int) -> None:
            self._stats.add(bytes_read=n)

        self._stats.current = path
        try:
            with reachable(path) as p:
                try:
                    content = reader.read(p, on_bytes)
                except FileChanged:
                    try:
                        content = reader.read(p, on_bytes)
                    except FileChanged as again:
                        content = again.content
                        self._stats.warn(f"{show_path(path)}: changed while being read; "
                                         "stored as read")
                entry = StagedEntry.from_stat(Kind.REGULAR, content.st)
                entry.size = content.size
                entry.extents = content.extents
                entry.stored_bytes = content.stored_bytes
                entry.xattrs = read_xattrs(p)
        except FileNotFoundError:
            return Unread.VANISHED
        except OSError as exc:
            self._stats.warn(f"{show_path(path)}: {exc.strerror}", failed=True)
            return Unread.FAILED
        entry.link_group = group
        return entry

    def close(self) -> None:
        """Stop the threads (what they have not begun is dropped)."""
        self._readers.shutdown(wait=True, cancel_futures=True)
        self._prefetcher.shutdown(wait=True, cancel_futures=True)
        self._encoders.shutdown(wait=True, cancel_futures=True)


def _fetch_ahead(paths: list[bytes]) -> None:
    """Start reading files into the page cache without waiting for them."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)
    for path in paths:
        try:
            fd = os.open(path, flags)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)
