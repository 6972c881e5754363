"""Read-ahead of a sequential reader, without a kernel: which chunks are
decoded ahead, that each is decoded once, and that a jump drops the rest."""

from __future__ import annotations

import threading

from fusefs.readahead import ReadAhead
from index.format.types import ChunkId, ChunkLocation, PackId
from index.model.snapshot_reader import Piece, assemble

CHUNK = 1000
SIZE = 20 * CHUNK + 500  # 21 chunks, the last one short


def _cid(k: int) -> ChunkId:
    return ChunkId(k.to_bytes(32, "big"))


def _content(k: int) -> bytes:
    return bytes([k]) * (CHUNK if k < 20 else 500)


def _plan(at: int, size: int) -> list[Piece]:
    """A file of 1000-byte chunks, chunk k made of the byte k."""
    out = []
    end = min(SIZE, at + size)
    while at < end:
        k = at // CHUNK
        lo = at - k * CHUNK
        n = min(end, (k + 1) * CHUNK) - at
        out.append(Piece(n, (_cid(k), ChunkLocation(PackId(bytes(32)), k * CHUNK, CHUNK, 0)),
                         lo))
        at += n
    return out


class _Decoder:
    def __init__(self) -> None:
        self.decoded: list[int] = []
        self.lock = threading.Lock()

    def read(self, chunks: list[tuple[ChunkId, ChunkLocation]]) -> list[bytes]:
        with self.lock:
            self.decoded += [int.from_bytes(cid, "big") for cid, _ in chunks]
        return [_content(int.from_bytes(cid, "big")) for cid, _ in chunks]


def _read_all(ahead: ReadAhead, dec: _Decoder, request: int, start: int = 0) -> bytes:
    """Reads the file as the kernel would, from `start`; every request is
    answered from what was decoded ahead when it is there."""
    out = b""
    off = start
    while off < SIZE:
        pieces = _plan(off, request)
        for batch in ahead.pending(7, pieces):
            batch.result()
        data = assemble(pieces, lambda cid, loc: ahead.decoded(7, cid)
                        or dec.read([(cid, loc)])[0])
        assert data is not None
        out += data
        ahead.served(7, off, request, SIZE, _plan, dec.read)
        off += len(data)
    return out


def test_a_sequential_reader_gets_every_byte_and_each_chunk_is_decoded_once() -> None:
    dec = _Decoder()
    ahead = ReadAhead(depth=3)
    try:
        # Requests of 1.5 chunks: neighbouring requests share chunks.
        data = _read_all(ahead, dec, 1500)
    finally:
        ahead.close()
    assert data == b"".join(_content(k) for k in range(21))
    # The first two requests come before the reader is known to be
    # sequential; from then on each chunk is decoded once.
    assert sorted(k for k in dec.decoded if k >= 2) == list(range(2, 21))


def test_a_jump_drops_what_was_read_ahead() -> None:
    dec = _Decoder()
    ahead = ReadAhead(depth=4)
    try:
        for off in (0, 1000):
            ahead.served(7, off, 1000, SIZE, _plan, dec.read)
        assert ahead.pending(7, _plan(2000, 1000)) or ahead.decoded(7, _cid(2)) is not None
        # The reader jumps: nothing decoded for the old position is kept.
        ahead.served(7, 15000, 1000, SIZE, _plan, dec.read)
        assert ahead.decoded(7, _cid(2)) is None and ahead.pending(7, _plan(2000, 1000)) == []
        ahead.release(7)
        assert ahead.decoded(7, _cid(16)) is None
    finally:
        ahead.close()
