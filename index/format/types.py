"""Value types shared by the packages: ids, entry kinds and records."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NewType, Protocol

ChunkId = NewType("ChunkId", bytes)
"""32-byte keyed BLAKE3 hash of a chunk's plaintext."""

PackId = NewType("PackId", bytes)
"""32-byte BLAKE3 hash of a whole pack file; its name in hex."""

EntryId = NewType("EntryId", int)
"""Position of an entry in its snapshot (depth-first, sorted by name)."""

ROOT_ID = EntryId(1)
"""The entry id of a snapshot's root directory (its children are parts)."""


class ByteSink(Protocol):
    """Where a stream of bytes goes: a file, or a decoder taking them."""

    def write(self, data: bytes, /) -> int:
        """Take `data`; returns its length."""


class Kind(enum.IntEnum):
    """File types a snapshot stores (numbers are part of the format)."""

    REGULAR = 1
    DIRECTORY = 2
    SYMLINK = 3
    FIFO = 4
    CHAR_DEVICE = 5
    BLOCK_DEVICE = 6


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    """Where one chunk's blob lives: pack, offset of its blob header, sizes."""

    pack_id: PackId
    offset: int
    stored_size: int
    raw_size: int


@dataclass(frozen=True, slots=True)
class Extent:
    """A byte range of a file: `chunk_id` is None for a hole (zeros)."""

    offset: int
    length: int
    chunk_id: ChunkId | None


@dataclass(frozen=True, slots=True)
class Entry:
    """Everything a snapshot knows about one path.

    `data` depends on `kind`: for a regular file, None (no content at all),
    a single `ChunkId` covering the whole file, or the number of extents
    stored separately (holes included); for a symlink, its target; for a
    directory, None.
    """

    entry_id: EntryId
    parent_id: EntryId
    name: bytes
    kind: Kind
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    atime_ns: int
    nlink: int
    rdev: int
    inode_id: EntryId
    """The id shared by all hard links to one file (own id otherwise)."""
    stored_bytes: int
    """Bytes of the file that are data rather than holes."""
    data: bytes | int | None
    xattrs: tuple[tuple[bytes, bytes], ...]
    source_ino: int
    """The source file's inode number, for change detection next time."""
