"""Reading chunks out of pack files, with a bounded cache of decoded chunks."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from index.errors import CorruptChunk, MissingChunk
from index.format import blob
from index.format.crypto import Cipher
from index.format.pack import pack_relpath
from index.format.types import ChunkId, ChunkLocation, PackId
from index.store.storage import RangeReader, Storage


@dataclass(slots=True)
class ChunkStoreStats:
    """Counters for benchmarks and `--debug`."""

    hits: int = 0
    misses: int = 0
    bytes_read: int = 0
    bytes_decoded: int = 0


_READ_AHEAD = 4 * 1024 * 1024

INLINE_LIMIT = 256 * 1024
"""Largest stored chunk `read_cached` decodes: small enough to decode on the
caller's thread without holding up others (a fraction of a millisecond)."""

_CACHE_MIN = 128 * 1024
_RUN_CHUNKS = 256

_NOWAIT = getattr(os, "RWF_NOWAIT", 0)


@dataclass(slots=True)
class _OpenPack:
    """A pack's descriptor, closed only when no read is using it."""

    fd: int
    remote: RangeReader | None = None
    """Ranged reads of a pack that is not on a file system (fd is -1)."""
    users: int = 0
    retired: bool = False
    advised_to: int = -1
    """End of the range last handed to the kernel's read-ahead."""


class ChunkStore:
    """Reads and verifies chunks; safe to call from several threads.

    Decoded chunks are kept in an LRU bounded by `cache_bytes`; open pack
    file descriptors in one bounded by `max_open_packs`.
    """

    def __init__(
        self,
        storage: Storage,
        key: bytes,
        cipher: Cipher | None = None,
        cache_bytes: int = 64 * 1024 * 1024,
        max_open_packs: int = 64,
    ) -> None:
        self._storage = storage
        self._key = key
        self._cipher = cipher
        self._cache: OrderedDict[ChunkId, bytes] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self._fds: OrderedDict[PackId, _OpenPack] = OrderedDict()
        self._max_fds = max_open_packs
        self._lock = threading.Lock()
        self.stats = ChunkStoreStats()

    def limit_cache(self, cache_bytes: int) -> None:
        """Keep at most `cache_bytes` of decoded chunks from now on."""
        with self._lock:
            self._cache_limit = cache_bytes
            while self._cache_bytes > self._cache_limit and self._cache:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= len(old)

    def _acquire(self, pack_id: PackId) -> _OpenPack:
        with self._lock:
            op = self._fds.get(pack_id)
            if op is not None:
                self._fds.move_to_end(pack_id)
                op.users += 1
                return op
        relpath = pack_relpath(pack_id)
        try:
            fd = self._storage.open_local(relpath)
            fresh = _OpenPack(fd) if fd is not None else \
                _OpenPack(-1, self._storage.open_ranges(relpath))
        except FileNotFoundError as exc:
            raise MissingChunk(f"pack {pack_id.hex()} is missing") from exc
        with self._lock:
            op = self._fds.get(pack_id)
            if op is not None:
                _close(fresh)
            else:
                op = self._fds[pack_id] = fresh
                while len(self._fds) > self._max_fds:
                    _, old = self._fds.popitem(last=False)
                    old.retired = True
                    if old.users == 0:
                        _close(old)
            op.users += 1
            return op

    def _release(self, op: _OpenPack) -> None:
        with self._lock:
            op.users -= 1
            if op.retired and op.users == 0:
                _close(op)

    def close_idle(self) -> None:
        """Close the pack files no read is using. A long-running reader calls
        this now and then: a pack that gc deleted keeps its disk space for
        as long as a descriptor of it stays open."""
        with self._lock:
            for op in self._fds.values():
                op.retired = True
                if op.users == 0:
                    _close(op)
            self._fds.clear()

    def _cached(self, cid: ChunkId) -> bytes | None:
        with self._lock:
            data = self._cache.get(cid)
            if data is not None:
                self._cache.move_to_end(cid)
                self.stats.hits += 1
            return data

    def read(self, cid: ChunkId, loc: ChunkLocation) -> bytes:
        """The raw bytes of chunk `cid` stored at `loc`, verified."""
        data = self._cached(cid)
        if data is not None:
            return data
        raw = self._read_raw(cid, loc, 0)
        assert raw is not None
        return self._decoded(cid, raw)

    def read_many(self, chunks: list[tuple[ChunkId, ChunkLocation]]) -> list[bytes]:
        """`read` for several chunks; neighbours in a pack take one pread.

        Small chunks (a dump cut in 8 KiB pieces) would otherwise cost a
        system call and a trip through the locks each."""
        out: list[bytes | None] = [self._cached(cid) for cid, _ in chunks]
        i = 0
        while i < len(chunks):
            if out[i] is not None:
                i += 1
                continue
            j = i + 1
            while (j < len(chunks) and out[j] is None and j - i < _RUN_CHUNKS
                   and chunks[j][1].pack_id == chunks[i][1].pack_id
                   and chunks[j][1].offset == chunks[j - 1][1].offset
                   + chunks[j - 1][1].stored_size):
                j += 1
            if j - i == 1:
                out[i] = self.read(*chunks[i])
            else:
                first, last = chunks[i][1], chunks[j - 1][1]
                span = ChunkLocation(first.pack_id, first.offset,
                                     last.offset + last.stored_size - first.offset, 0)
                raw = self._read_raw(chunks[i][0], span, 0)
                assert raw is not None
                view = memoryview(raw)
                for k in range(i, j):
                    cid, loc = chunks[k]
                    at = loc.offset - first.offset
                    out[k] = self._decoded(cid, view[at : at + loc.stored_size])
            i = j
        return [d for d in out if d is not None]

    def read_cached(self, cid: ChunkId, loc: ChunkLocation) -> bytes | None:
        """Like `read`, but None instead of waiting for the disk.

        For the file system's event loop: a chunk that is decoded already, or
        small and in the page cache, costs less to serve on the spot than
        handing it to a thread (two cross-CPU wake-ups, each slow in a VM)."""
        data = self._cached(cid)
        if data is not None:
            return data
        if not _NOWAIT or loc.stored_size > INLINE_LIMIT:
            return None
        raw = self._read_raw(cid, loc, _NOWAIT)
        return None if raw is None else self._decoded(cid, raw)

    def _read_raw(self, cid: ChunkId, loc: ChunkLocation, flags: int) -> bytes | None:
        op = self._acquire(loc.pack_id)
        try:
            if op.remote is not None:
                if flags:
                    return None  # a network read: never on the event loop
                try:
                    raw = op.remote.pread(loc.stored_size, loc.offset)
                except FileNotFoundError as exc:
                    raise MissingChunk(f"pack {loc.pack_id.hex()} is missing") from exc
            else:
                raw_local = self._pread_local(op, loc, flags)
                if raw_local is None:
                    return None
                raw = raw_local
        finally:
            self._release(op)
        if len(raw) != loc.stored_size:
            raise CorruptChunk(
                f"chunk {cid.hex()}: pack {loc.pack_id.hex()} is truncated"
            )
        return raw

    @staticmethod
    def _pread_local(op: _OpenPack, loc: ChunkLocation, flags: int) -> bytes | None:
        if loc.offset + loc.stored_size > op.advised_to:
            # Packs hold files in backup (walk) order, which is the order
            # tar, cp and rsync read them back in: let the disk fetch the
            # following megabytes while these are decoded.
            op.advised_to = loc.offset + _READ_AHEAD
            os.posix_fadvise(op.fd, loc.offset, _READ_AHEAD, os.POSIX_FADV_WILLNEED)
        if flags:
            buf = bytearray(loc.stored_size)
            try:
                n = os.preadv(op.fd, [buf], loc.offset, flags)
            except BlockingIOError:
                return None
            if n != loc.stored_size:  # partly cached: let a thread wait
                return None
            return bytes(buf)
        return os.pread(op.fd, loc.stored_size, loc.offset)

    def _decoded(self, cid: ChunkId, raw: bytes | memoryview) -> bytes:
        data = blob.decode(raw, cid, self._key, self._cipher)
        with self._lock:
            self.stats.misses += 1
            self.stats.bytes_read += len(raw)
            self.stats.bytes_decoded += len(data)
            # A chunk smaller than one read request is used once (the kernel
            # keeps the file's pages); only larger ones are met again.
            if len(data) > _CACHE_MIN and cid not in self._cache:
                self._cache[cid] = data
                self._cache_bytes += len(data)
                while self._cache_bytes > self._cache_limit and self._cache:
                    _, old = self._cache.popitem(last=False)
                    self._cache_bytes -= len(old)
        return data

    def close(self) -> None:
        """Close every open pack file and drop the chunk cache."""
        self.close_idle()
        with self._lock:
            self._cache.clear()
            self._cache_bytes = 0


def _close(op: _OpenPack) -> None:
    if op.remote is not None:
        op.remote.close()
    else:
        os.close(op.fd)
