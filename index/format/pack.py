"""Pack files: many blobs in one immutable file, with a table at the end.

Layout (little-endian), documented in docs/FORMAT.md:

    PACK_HEADER   16 bytes   magic "HISTFSPK", u16 version, u16 0, u32 0
    blobs         each a blob header (index.format.blob) and its payload
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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import blake3

from index.errors import FormatTooNew, RepositoryCorrupt
from index.format.types import ChunkId, ChunkLocation, PackId

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


def pread_exact(pread: Callable[[int, int], bytes], size: int, offset: int,
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
    header = pread_exact(pread, PACK_HEADER.size, 0, name)
    magic, version, _, _ = PACK_HEADER.unpack(header)
    if magic != PACK_MAGIC:
        raise RepositoryCorrupt(f"pack {name}: bad magic")
    if version > PACK_VERSION:
        raise FormatTooNew(f"pack {name}: format {version} is newer than supported")
    trailer = pread_exact(pread, PACK_TRAILER.size, file_size - PACK_TRAILER.size, name)
    table_offset, count, _, _, end_magic = PACK_TRAILER.unpack(trailer)
    table_end = table_offset + count * PACK_TABLE_ENTRY.size
    # The table lies within the file, so reading it allocates no more than
    # the file's size whatever the trailer claims.
    if end_magic != PACK_END_MAGIC or table_end != file_size - PACK_TRAILER.size:
        raise RepositoryCorrupt(f"pack {name}: bad trailer")
    table = pread_exact(pread, table_end - table_offset, table_offset, name)
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


def verify_fd_hash(fd: int, name: str) -> bool:
    """Whether the open pack file `fd` still hashes to its name `name`."""
    # The descriptor's own path in /proc: what was opened, not what a name
    # in the repository may point to now.
    return verify_pack_hash(Path(f"/proc/self/fd/{fd}"), name)


def location(pack_id: PackId, row: PackedChunk) -> ChunkLocation:
    """A table row as a chunk location."""
    return ChunkLocation(pack_id, row.offset, row.stored_size, row.raw_size)
