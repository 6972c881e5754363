"""Chunks cut through a reused buffer are those pyfastcdc's `cut_stream`
cuts, byte for byte: boundaries must never move (see test_format's golden
offsets), or new backups stop deduplicating against old ones."""

from __future__ import annotations

import io
import random
import threading
from pathlib import Path

import pytest
from pyfastcdc import FastCDC

from index.format.config import ChunkerParams
from index.model.repository import Repository
from tests.conftest import read_through_filereader
from writer.chunk_cutter import cut
from writer.filereader import InFlight

MIN, AVG, MAX = 256 * 1024, 1024 * 1024, 4 * 1024 * 1024
SEED = 0x2545F4914F6CDD1D & ((1 << 62) - 1)


def _chunker(avg: int = AVG, seed: int = SEED) -> FastCDC:
    return FastCDC(avg, min_size=avg // 4, max_size=avg * 4, normalized_chunking=1, seed=seed)


def _expected(chunker: FastCDC, data: bytes) -> list[bytes]:
    return [bytes(c.data) for c in chunker.cut_stream(io.BytesIO(data))]


def _content(kind: str, size: int, rnd: random.Random) -> bytes:
    if kind == "random":
        return rnd.randbytes(size)
    if kind == "zeros":  # no cut point: every chunk is as long as allowed
        return bytes(size)
    # A short block repeated: cut points at the same places over and over.
    return (rnd.randbytes(4099) * (size // 4099 + 1))[:size]


class _ShortReads:
    """A stream that gives a few bytes at a time, as a pipe does."""

    def __init__(self, data: bytes, rnd: random.Random) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._rnd = rnd

    def readinto(self, buf: memoryview) -> int:
        n = min(len(buf), len(self._data) - self._pos, self._rnd.randint(1, 700_000))
        buf[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


SIZES = [1, MIN - 1, MIN, MIN + 1, AVG - 1, AVG, AVG + 1, MAX - 1, MAX, MAX + 1,
         2 * MAX - 1, 2 * MAX, 2 * MAX + 1, 3 * MAX + 12345]


@pytest.mark.parametrize("kind", ["random", "zeros", "repeated"])
@pytest.mark.parametrize("size", SIZES)
def test_same_chunks_as_cut_stream(kind: str, size: int) -> None:
    rnd = random.Random(size)
    data = _content(kind, size, rnd)
    chunker = _chunker()
    want = _expected(chunker, data)
    assert [bytes(v) for v in cut(chunker, io.BytesIO(data))] == want
    assert [bytes(v) for v in cut(chunker, _ShortReads(data, rnd))] == want


def test_small_chunk_sizes_and_an_empty_stream() -> None:
    rnd = random.Random(5)
    chunker = _chunker(avg=16384, seed=0)
    for size in (0, 4095, 4096, 16384, 65535, 65536, 65537, 131072, 3 * 1024 * 1024 + 7):
        data = rnd.randbytes(size)
        assert [bytes(v) for v in cut(chunker, _ShortReads(data, rnd))] == \
            _expected(chunker, data)


def test_two_streams_cut_at_once_in_one_thread() -> None:
    rnd = random.Random(9)
    a, b = rnd.randbytes(3 * MAX), rnd.randbytes(2 * MAX + 5)
    chunker = _chunker()
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    inner = cut(chunker, io.BytesIO(b))
    for view in cut(chunker, io.BytesIO(a)):
        got_a.append(bytes(view))
        got_b.extend(bytes(v) for v in inner)
    assert got_a == _expected(chunker, a)
    assert got_b == _expected(chunker, b)


def test_a_large_file_keeps_its_chunk_ids(repo: Repository, tmp_path: Path) -> None:
    """A 50 MB file read by FileReader: the extents and ids cut_stream gives."""
    rnd = random.Random(20261207)
    parts = [rnd.randbytes(rnd.randint(1, 3 * MAX)) if i % 3 else bytes(rnd.randint(1, MAX))
             for i in range(40)]
    data = b"".join(parts)[:50 * 1024 * 1024]
    data += rnd.randbytes(50 * 1024 * 1024 - len(data))
    path = tmp_path / "large"
    path.write_bytes(data)
    params = ChunkerParams(min_size=MIN, avg_size=AVG, max_size=MAX, normalized_chunking=1,
                           seed=SEED)
    content, sink = read_through_filereader(repo, tmp_path, path, params)
    want, offset = [], 0
    for chunk in _expected(_chunker(), data):
        want.append((offset, len(chunk), sink.chunk_id(chunk)))
        offset += len(chunk)
    assert [(e.offset, e.length, e.chunk_id) for e in content.extents] == want


def test_in_flight_bounds_what_waits_for_the_encoders() -> None:
    """Readers wait while the encoders hold the limit; one batch larger than
    the limit still goes (alone)."""
    in_flight = InFlight(limit=10)
    in_flight.acquire(6)
    in_flight.acquire(4)
    entered = threading.Event()

    def third() -> None:
        in_flight.acquire(3)
        entered.set()

    waiting = threading.Thread(target=third)
    waiting.start()
    assert not entered.wait(0.2)
    in_flight.release(6)
    assert entered.wait(10)
    waiting.join()
    in_flight.release(4)
    in_flight.release(3)
    in_flight.acquire(50)
    in_flight.release(50)
