"""The packs of a repository's storage: writing a new one, reading a
published one's table, listing them. Their layout is index/format/pack.py's."""

from __future__ import annotations

import os
from collections.abc import Iterator

import blake3

from index.errors import EncryptionMismatch, RepositoryCorrupt
from index.format.blob import BLOB_HEADER
from index.format.pack import (
    PACK_END_MAGIC,
    PACK_HEADER,
    PACK_MAGIC,
    PACK_TABLE_ENTRY,
    PACK_TRAILER,
    PACK_VERSION,
    PACKS_DIR,
    PackedChunk,
    pack_relpath,
    pread_exact,
    read_table,
    read_table_with,
)
from index.format.types import ChunkId, PackId
from index.store.local_files import LocalRangeReader
from index.store.storage import PendingWrite, RangeReader, Storage


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
            head = pread_exact(reader.pread, BLOB_HEADER.size, rows[0].offset, pack_id.hex())
            found = head[1]
            if found != encryption:
                raise EncryptionMismatch(f"pack {pack_id.hex()} holds blobs of encryption "
                                         f"{found}, not {encryption}")
        return rows
    finally:
        reader.close()


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
