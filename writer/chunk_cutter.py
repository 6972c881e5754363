"""Cutting a stream into FastCDC chunks through one read buffer per thread.

pyfastcdc's `cut_stream` allocates a zeroed buffer of twice the largest
chunk (8 MiB at the default sizes) for every stream it cuts, i.e. for every
file of more than the smallest chunk size. Four reader threads each
allocating (and zeroing) such a buffer per file: the first backup of the
benchmark corpus (1.8 GB) peaked 142-150 MB with them, 130-138 MB without
(3 runs each, taken in turn). Here each thread reads into a buffer of
its own, an anonymous mapping whose pages are only made resident as far as
a stream fills it, and whose pages past the first MiB are handed back after
each stream that filled more.

The chunks are those `cut_stream` gives, byte for byte: FastCDC places a cut
by looking at most `max_size` bytes ahead, so the buffer is cut with
`cut_buf` and a chunk is taken only if the buffer held at least `max_size`
bytes from its start, or the stream had ended, or it ended at a cut point
found before the end of the buffer (past `avg_size`, the point at which
FastCDC changes masks: the bytes after a cut point do not move it). The
bytes after the last chunk taken are moved to the front of the buffer and
the buffer is filled again.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Iterator
from typing import Protocol

from pyfastcdc import FastCDC

_READ = 1 << 20
"""Bytes read into the buffer at least each time it is filled."""
_KEEP = 1 << 20  # a multiple of the page size
"""Bytes of a thread's buffer that stay resident between streams: what
most streams of files a little over the smallest chunk size fill."""


class Readable(Protocol):
    """A stream that reads into a buffer, returning 0 at its end."""

    def readinto(self, buf: memoryview) -> int:
        """Read into `buf`; how many bytes were read (0: the end)."""
        ...


class _Buffer:
    """An anonymous mapping used as a read buffer by one thread."""

    def __init__(self, size: int) -> None:
        self.map = mmap.mmap(-1, size, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.view = memoryview(self.map)
        self.touched = 0
        """Bytes from the start that may be resident."""

        self.busy = False

    def release(self) -> None:
        """Hand the pages past the first `_KEEP` bytes back to the kernel."""
        if self.touched > _KEEP:
            self.map.madvise(mmap.MADV_DONTNEED, _KEEP, self.touched - _KEEP)
            self.touched = _KEEP


_local = threading.local()


def _buffer(size: int) -> _Buffer:
    """This thread's buffer, of at least `size` bytes (a new one while the
    thread's own is in use)."""
    buf: _Buffer | None = getattr(_local, "buffer", None)
    if buf is not None and buf.busy:
        return _Buffer(size)
    if buf is None or len(buf.map) < size:
        buf = _local.buffer = _Buffer(size)
    return buf


def buffer_size(max_size: int) -> int:
    """Bytes of the buffer that cuts chunks of at most `max_size` bytes:
    room for one largest chunk to be looked for and `_READ` more to read.
    (Moving the tail once per fill cost nothing measurable; a buffer of
    twice `max_size`, as cut_stream's, is 3 MiB more per reading thread.)"""
    return max_size + _READ


def cut(chunker: FastCDC, stream: Readable) -> Iterator[memoryview]:
    """The chunks of `stream` in order, as `chunker.cut_stream` cuts them.
    Each view is valid until the next one is asked for (the buffer is
    reused), and only in the thread that called."""
    buf = _buffer(buffer_size(chunker.max_size))
    buf.busy = True
    try:
        yield from _cut(chunker, stream, buf)
    finally:
        buf.busy = False
        buf.release()


def _cut(chunker: FastCDC, stream: Readable, buf: _Buffer) -> Iterator[memoryview]:
    view, size = buf.view, len(buf.map)
    max_size, avg_size = chunker.max_size, chunker.avg_size
    filled = 0
    ended = False
    while True:
        while not ended and filled < size:
            n = stream.readinto(view[filled:])
            if n <= 0:
                ended = True
            else:
                filled += n
        buf.touched = max(buf.touched, filled)
        if filled == 0:
            return
        taken = 0
        # Chunks starting up to here are cut as they would be with more data.
        sure = filled if ended else filled - max_size
        for chunk in chunker.cut_buf(view[:filled]):
            if chunk.offset > sure:
                left = filled - chunk.offset
                if not (left > avg_size and chunk.length < left):
                    break
            yield chunk.data
            taken = chunk.offset + chunk.length
        if ended:
            return
        buf.map.move(0, taken, filled - taken)
        filled -= taken
