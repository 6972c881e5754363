"""Pack files: many blobs in one immutable file, with a table at the end.

Layout (little-endian), documented in docs/FORMAT.md:

    PACK_HEADER   16 bytes   magic "HISTFSPK", u16 version, u16 0, u32 0
    blobs         each a blob header (index.blob) and its payload
    table         one PACK_TABLE_ENTRY (48 bytes) per blob
    PACK_TRAILER  56 bytes   u64 table offset, u32 count, u32 0,
                             BLAKE3 of every byte before the trailer,
                             magic "HISTFSPE"

A pack's name is the hex BLAKE3 of the whole file, so a pack can be checked
against its own name.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3

from index.blob import BLOB_HEADER
from index.errors import EncryptionMismatch, FormatTooNew, RepositoryCorrupt
from index.local_storage import LocalRangeReader
from index.storage import PendingWrite, RangeReader, Storage
from index.types import ChunkId, ChunkLocation, PackId

PACK_MAGIC = b"HISTFSPK"
PACK_END_MAGIC = b"HISTFSPE"
PACK_VERSION = 1
PACK_HEADER = struct.Struct("<8sHHI")
PACK_TABLE_ENTRY = struct.Struct("<32sQII")
PACK_TRAILER = struct.Struct("<QII32s8s")
PACKS_DIR = "packs"


def pack_relpath(pack_id: PackId) -> str:
    """Where a pack lives: packs/<first two hex digits>/<hex id>."""
    h = pack_id.hex()
    return f"{PACKS_DIR}/{h[:2]}/{h}"


@dataclass(frozen=True, slots=True)
class PackedChunk:
    """One row of a pack's table."""

    chunk_id: ChunkId
    offset: int
    stored_size: int
    raw_size: int


class PackWriter:
    """Appends encoded blobs to a new pack; `finish` publishes it.

    Not thread-safe: the caller serialises `add`. After any error the writer
    refuses further use, so a half-written pack can never be published.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._pending: PendingWrite | None = storage.create()
        self._hash = blake3.blake3()
        self._rows: list[PackedChunk] = []
        self._size = 0
        self._broken = False
        self._write(PACK_HEADER.pack(PACK_MAGIC, PACK_VERSION, 0, 0))

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._size

    def __len__(self) -> int:
        return len(self._rows)

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        if self._broken or self._pending is None:
            raise RuntimeError("pack writer used after an error or after finish")
        try:
            self._pending.file.write(data)
        except BaseException:
            self._broken = True
            raise
        self._hash.update(data)
        self._size += len(data)

    def add(self, blob: bytes | bytearray) -> PackedChunk:
        """Append one encoded blob (header + payload) and return its row."""
        _, _, _, stored, raw, cid = BLOB_HEADER.unpack_from(blob)
        row = PackedChunk(ChunkId(cid), self._size, BLOB_HEADER.size + stored, raw)
        self._write(blob)
        self._rows.append(row)
        return row

    def finish(self) -> tuple[PackId, list[PackedChunk]]:
        """Write table and trailer, make the pack durable, verify, publish."""
        table_offset = self._size
        self._write(b"".join(
            PACK_TABLE_ENTRY.pack(r.chunk_id, r.offset, r.stored_size, r.raw_size)
            for r in self._rows
        ))
        body_hash = self._hash.copy().digest()
        self._write(PACK_TRAILER.pack(
            table_offset, len(self._rows), 0, body_hash, PACK_END_MAGIC
        ))
        pack_id = PackId(self._hash.digest())
        pending = self._pending
        assert pending is not None
        self._pending = None
        try:
            pending.sync()
            # Read the table back before the pack gets its name.
            fd = pending.file.fileno()
            written = read_table(fd, os.fstat(fd).st_size, "new pack")
            if written != self._rows:
                raise RepositoryCorrupt("a new pack does not read back as written")
            pending.commit(pack_relpath(pack_id))
        except BaseException:
            self._broken = True
            pending.abort()
            raise
        return pack_id, self._rows

    def abort(self) -> None:
        """Drop the unfinished pack."""
        self._broken = True
        if self._pending is not None:
            self._pending.abort()
            self._pending = None


def _pread_exact(pread: Callable[[int, int], bytes], size: int, offset: int,
                 name: str) -> bytes:
    # A file shorter than the size it was opened with (truncated meanwhile,
    # or a wrong size passed in) must not reach struct as a short buffer.
    data = pread(size, offset)
    if len(data) != size:
        raise RepositoryCorrupt(f"pack {name}: truncated")
    return data


def read_table(fd: int, file_size: int, name: str) -> list[PackedChunk]:
    """The table of a pack read from an open file, checked for structure."""
    return read_table_with(lambda size, offset: os.pread(fd, size, offset), file_size, name)


def read_table_with(pread: Callable[[int, int], bytes], file_size: int,
                    name: str) -> list[PackedChunk]:
    """The table of a pack of `file_size` bytes read through `pread(size,
    offset)`, checked for structure."""
    if file_size < PACK_HEADER.size + PACK_TRAILER.size:
        raise RepositoryCorrupt(f"pack {name}: too short")
    header = _pread_exact(pread, PACK_HEADER.size, 0, name)
    magic, version, _, _ = PACK_HEADER.unpack(header)
    if magic != PACK_MAGIC:
        raise RepositoryCorrupt(f"pack {name}: bad magic")
    if version > PACK_VERSION:
        raise FormatTooNew(f"pack {name}: format {version} is newer than supported")
    trailer = _pread_exact(pread, PACK_TRAILER.size, file_size - PACK_TRAILER.size, name)
    table_offset, count, _, _, end_magic = PACK_TRAILER.unpack(trailer)
    table_end = table_offset + count * PACK_TABLE_ENTRY.size
    # The table lies within the file, so reading it allocates no more than
    # the file's size whatever the trailer claims.
    if end_magic != PACK_END_MAGIC or table_end != file_size - PACK_TRAILER.size:
        raise RepositoryCorrupt(f"pack {name}: bad trailer")
    table = _pread_exact(pread, table_end - table_offset, table_offset, name)
    rows = [
        PackedChunk(ChunkId(cid), off, stored, raw)
        for cid, off, stored, raw in PACK_TABLE_ENTRY.iter_unpack(table)
    ]
    for r in rows:
        if r.offset + r.stored_size > table_offset:
            raise RepositoryCorrupt(f"pack {name}: table points past the blobs")
    return rows


def read_pack_table(path: Path) -> list[PackedChunk]:
    """The table of the pack file at `path`."""
    with open(path, "rb") as f:
        return read_table(f.fileno(), os.fstat(f.fileno()).st_size, path.name)


def verify_pack_hash(path: Path, name: str | None = None) -> bool:
    """Whether a pack's content still hashes to its name (`name`, else the
    file's)."""
    h = blake3.blake3(max_threads=blake3.blake3.AUTO)
    h.update_mmap(path)
    return h.hexdigest() == (name or path.name)


def read_stored_table(storage: Storage, pack_id: PackId,
                      encryption: int | None = None) -> list[PackedChunk]:
    """The table of a published pack, wherever the repository is. With
    `encryption`, the encryption byte of its first blob (docs/FORMAT.md
    section 5) must be that, else `EncryptionMismatch`."""
    relpath = pack_relpath(pack_id)
    fd = storage.open_local(relpath)
    reader: RangeReader = (storage.open_ranges(relpath) if fd is None
                           else LocalRangeReader(fd))
    try:
        size = storage.size(relpath) if fd is None else os.fstat(fd).st_size
        rows = read_table_with(reader.pread, size, pack_id.hex())
        if encryption is not None and rows:
            # The header was read with the table's start: no extra request
            # to a bucket.
            head = _pread_exact(reader.pread, BLOB_HEADER.size, rows[0].offset, pack_id.hex())
            found = head[1]
            if found != encryption:
                raise EncryptionMismatch(f"pack {pack_id.hex()} holds blobs of encryption "
                                         f"{found}, not {encryption}")
        return rows
    finally:
        reader.close()


def verify_fd_hash(fd: int, name: str) -> bool:
    """Whether the open pack file `fd` still hashes to its name `name`."""
    # The descriptor's own path in /proc: what was opened, not what a name
    # in the repository may point to now.
    return verify_pack_hash(Path(f"/proc/self/fd/{fd}"), name)


def list_packs(storage: Storage) -> Iterator[PackId]:
    """Every published pack of a repository."""
    for sub in storage.listdir(PACKS_DIR):
        for name in storage.listdir(f"{PACKS_DIR}/{sub}"):
            if len(name) == 64:
                try:
                    yield PackId(bytes.fromhex(name))
                except ValueError:
                    continue


def list_pack_sizes(storage: Storage) -> dict[PackId, int]:
    """Every published pack of a repository with its size, from one listing
    of each packs/ subdirectory (no request per pack)."""
    found: dict[PackId, int] = {}
    for sub in storage.listdir(PACKS_DIR):
        for name, size in storage.list_sizes(f"{PACKS_DIR}/{sub}"):
            if len(name) == 64:
                try:
                    found[PackId(bytes.fromhex(name))] = size
                except ValueError:
                    continue
    return found


def location(pack_id: PackId, row: PackedChunk) -> ChunkLocation:
    """A table row as a chunk location."""
    return ChunkLocation(pack_id, row.offset, row.stored_size, row.raw_size)
