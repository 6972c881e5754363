"""Snapshot indexes stored compressed (docs/FORMAT.md, section 8).

From repository format 3 on, `snapshots/<host>/<name>.idx` holds the LMDB
file compressed: a 32-byte header, then one zstd frame of the whole file.
(In an encrypted repository that is what is sealed: compression comes
first, as sealed bytes do not compress.) The header, little-endian:

    offset size type  field
    0      8    bytes magic `HISTFSZI`
    8      1    u8    version, 1
    9      1    u8    compression, 1 (zstd)
    10     2    u16   reserved, 0
    12     4    u32   reserved, 0
    16     8    u64   size of the LMDB file
    24     8    u64   size of the zstd frame that follows

The frame declares the same content size and carries its XXH64 checksum,
and its window is at most `MAX_WINDOW`. An LMDB file starts with its first
page's number, zero, so it is never taken for a compressed one.

Both ways stream through bounded buffers: an index of ten million entries
is gigabytes, and neither side ever holds it whole. A reader checks every
size before it uses it, stops as soon as more would come out than the
header says, and so never writes more than the declared size, which itself
cannot exceed what a zstd frame of that length can expand to.
"""

from __future__ import annotations

import os
import struct
from typing import IO, BinaryIO, cast

import zstandard

from index.errors import RepositoryCorrupt
from index.format.types import ByteSink

MAGIC = b"HISTFSZI"
HEADER = struct.Struct("<8sBBHIQQ")  # 32 bytes
VERSION = 1
COMPRESSION_ZSTD = 1

LEVEL = 3
"""The zstd level of new indexes, chosen by measurement (docs/FORMAT.md,
section 8): higher levels are several times slower for a fifth less."""

MAX_WINDOW = 1 << 23
"""The largest zstd window a reader accepts (what levels up to 19 use):
the decoder's memory, whatever a damaged header asks for."""

MAX_RATIO = 1 << 15
"""No zstd frame expands more: its densest block (RLE) is 4 bytes for at
most 128 KiB. A header declaring more than this times its frame is damaged."""

_STEP = 1 << 20
_FRAME_HEADER_MAX = 18  # ZSTD_FRAMEHEADERSIZE_MAX


def is_compressed(head: bytes) -> bool:
    """Whether a stored index starting with `head` is compressed."""
    return head[: len(MAGIC)] == MAGIC


def compress_index(plain: BinaryIO, out: BinaryIO, level: int = LEVEL) -> int:
    """Write the compressed form of the LMDB file `plain` (from its current
    position to its end) to `out` (seekable, from its current position);
    returns the number of bytes written."""
    if not 1 <= level <= 19:
        raise ValueError(f"index compression level {level}: not 1 to 19")
    start = out.tell()
    size = os.fstat(plain.fileno()).st_size - plain.tell()
    out.write(HEADER.pack(MAGIC, VERSION, COMPRESSION_ZSTD, 0, 0, size, 0))
    comp = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
    copied = 0
    with comp.stream_writer(out, size=size, closefd=False, write_size=_STEP) as writer:
        while data := plain.read(_STEP):
            copied += len(data)
            if copied > size:
                break
            writer.write(data)
    if copied != size:
        raise OSError("the snapshot index changed while it was compressed")
    end = out.tell()
    out.seek(start)
    out.write(HEADER.pack(MAGIC, VERSION, COMPRESSION_ZSTD, 0, 0, size,
                          end - start - HEADER.size))
    out.seek(end)
    return end - start


class _Bounded:
    """The decompressor's output: written to `out`, refused past `limit`."""

    def __init__(self, out: ByteSink, limit: int, name: str) -> None:
        self._out = out
        self._limit = limit
        self._name = name
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        if self.written > self._limit:
            raise RepositoryCorrupt(f"{self._name}: damaged (decompresses to more "
                                    f"than the {self._limit} bytes its header says)")
        self._out.write(data)
        return len(data)


class IndexDecoder:
    """A writable file taking the bytes of a stored index (unsealed, when it
    was sealed) and writing the LMDB file they hold to `out`: as they are
    for a plain index, decompressed for a compressed one. Call `finish`
    after the last byte; damage raises `RepositoryCorrupt` naming `name`
    ("snapshot index <relpath>"). `compressed_allowed` is False in a
    repository whose format version has no compressed indexes."""

    def __init__(self, out: ByteSink, name: str, compressed_allowed: bool = True,
                 stored_size: int | None = None) -> None:
        """`stored_size`, when known, is the size of the whole stored file:
        a header that disagrees is refused before anything is decoded."""
        self._out = out
        self._name = name
        self._allowed = compressed_allowed
        self._stored_size = stored_size
        self._head = b""
        self.compressed: bool | None = None
        self._plain_size = 0
        self._frame_left = 0
        self._frame_head = b""
        self._sink: _Bounded | None = None
        self._writer: zstandard.ZstdDecompressionWriter | None = None

    def write(self, data: bytes, /) -> int:
        """Take the next bytes of the stored file."""
        n = len(data)
        if self.compressed is None:
            # Until the header is whole, or is no magic: plain LMDB then.
            self._head += bytes(data)
            head = self._head
            if len(head) < HEADER.size and head[: len(MAGIC)] == MAGIC[: len(head)]:
                return n
            self._head = b""
            self._start(head[: HEADER.size])
            data = head[HEADER.size :] if self.compressed else head
        if self.compressed:
            self._feed(data)
        else:
            self._out.write(data)
        return n

    def _start(self, head: bytes) -> None:
        self.compressed = is_compressed(head)
        if not self.compressed:
            return
        if not self._allowed:
            raise RepositoryCorrupt(f"{self._name}: compressed, but the repository's "
                                    "format version has no compressed indexes")
        if len(head) < HEADER.size:
            raise RepositoryCorrupt(f"{self._name}: truncated (in its header)")
        _, version, method, reserved16, reserved32, plain, frame = HEADER.unpack(head)
        if version != VERSION or method != COMPRESSION_ZSTD or reserved16 or reserved32:
            raise RepositoryCorrupt(f"{self._name}: unknown compression (version {version}, "
                                    f"method {method}, reserved {reserved16} {reserved32})")
        if frame == 0 or plain > frame * MAX_RATIO:
            raise RepositoryCorrupt(f"{self._name}: damaged header (a {frame}-byte "
                                    f"frame cannot hold {plain} bytes)")
        if self._stored_size is not None and self._stored_size != HEADER.size + frame:
            raise RepositoryCorrupt(f"{self._name}: truncated or extended ({self._stored_size} "
                                    f"bytes, not {HEADER.size + frame})")
        self._plain_size = plain
        self._frame_left = frame

    def _feed(self, data: bytes) -> None:
        if len(data) > self._frame_left:
            raise RepositoryCorrupt(f"{self._name}: data after the end")
        self._frame_left -= len(data)
        if self._writer is None:
            self._frame_head += bytes(data)
            if len(self._frame_head) < _FRAME_HEADER_MAX and self._frame_left:
                return
            data, self._frame_head = self._frame_head, b""
            self._open_frame(data)
            assert self._writer is not None
        try:
            self._writer.write(data)
        except zstandard.ZstdError as exc:
            raise RepositoryCorrupt(f"{self._name}: damaged ({exc})") from None

    def _open_frame(self, head: bytes) -> None:
        try:
            params = zstandard.get_frame_parameters(head)
        except zstandard.ZstdError as exc:
            raise RepositoryCorrupt(f"{self._name}: damaged ({exc})") from None
        if not params.has_checksum or params.content_size != self._plain_size \
                or params.window_size > MAX_WINDOW:
            raise RepositoryCorrupt(
                f"{self._name}: damaged frame header (checksum {params.has_checksum}, "
                f"size {params.content_size} of {self._plain_size}, "
                f"window {params.window_size})")
        self._sink = _Bounded(self._out, self._plain_size, self._name)
        decomp = zstandard.ZstdDecompressor(max_window_size=MAX_WINDOW)
        # It only ever calls write().
        self._writer = decomp.stream_writer(cast(IO[bytes], self._sink), write_size=_STEP,
                                            closefd=False)

    def finish(self) -> None:
        """Check that the stored file ended where it should."""
        if self.compressed is None:
            head, self._head = self._head, b""
            self._start(head)
            self._out.write(head)
        if self.compressed and (self._frame_left or self._sink is None
                                or self._sink.written != self._plain_size):
            raise RepositoryCorrupt(f"{self._name}: truncated")


def decode_file(stored: BinaryIO, out: ByteSink, name: str, compressed_allowed: bool) -> bool:
    """Write the LMDB file held in the stored index `stored` (read to its
    end) to `out`; whether it was compressed."""
    start = stored.tell()
    size = stored.seek(0, os.SEEK_END) - start
    stored.seek(start)
    decoder = IndexDecoder(out, name, compressed_allowed, size)
    while data := stored.read(_STEP):
        decoder.write(data)
    decoder.finish()
    return bool(decoder.compressed)
