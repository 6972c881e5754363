"""Inode numbers of the mount: pure functions of stable data, all below
2^63 (catalogs of backup software keep them in signed 64-bit columns).

    1                              the mount's root
    bit 62 clear: key << 32 | id   an entry of a dated directory: `key` is the
                                   snapshot's 30-bit key, `id` the entry's
                                   inode id (shared by hard links); the dated
                                   directory itself is its root, id 1
    bit 62 set: 62-bit hash        host directories, `last` and everything
                                   under `last`, from (host, path, file type)

A snapshot's key is BLAKE3(host "/" name) reduced to 30 bits (never 0); if
two listed snapshots collide, the one later in (host, name) order takes the
next free key. So numbers survive remounts and the kernel never confuses two
snapshots' files. Under `last`, a path keeps its number from one day to the
next as long as its type does not change, which is what lets tape software's
incremental runs see unchanged files as unchanged.
"""

from __future__ import annotations

from typing import NewType

import blake3

Inode = NewType("Inode", int)

ROOT_INODE = Inode(1)
VIRTUAL = 1 << 62
_ENTRY_BITS = 32
MAX_ENTRY_ID = (1 << _ENTRY_BITS) - 1
_KEY_MASK = (1 << 30) - 1


def _hash62(*parts: bytes) -> int:
    digest = blake3.blake3(b"\0".join(parts)).digest(8)
    return int.from_bytes(digest, "little") & (VIRTUAL - 1)


def snapshot_key(host: str, name: str) -> int:
    """The preferred 30-bit key of a snapshot (before collision probing)."""
    key = _hash62(b"snapshot", f"{host}/{name}".encode()) & _KEY_MASK
    return key or 1


def next_key(key: int) -> int:
    """The key to try after `key` collided."""
    return (key % _KEY_MASK) + 1


def entry_inode(key: int, inode_id: int) -> Inode:
    """The inode of an entry inside a dated directory."""
    if not 0 < inode_id <= MAX_ENTRY_ID:
        raise ValueError(f"entry id {inode_id} does not fit an inode number")
    return Inode((key << _ENTRY_BITS) | inode_id)


def split_entry_inode(ino: int) -> tuple[int, int]:
    """(snapshot key, inode id) of an entry inode."""
    return ino >> _ENTRY_BITS, ino & MAX_ENTRY_ID


def is_virtual(ino: int) -> bool:
    """Whether `ino` is a host directory or lives under `last`."""
    return bool(ino & VIRTUAL)


def host_inode(host: str) -> Inode:
    """The inode of a host's directory."""
    return Inode(VIRTUAL | _hash62(b"host", host.encode()))


def last_inode(host: str, path: bytes, file_type: int) -> Inode:
    """The inode of `last` (path b"") or of a path under it."""
    return Inode(VIRTUAL | _hash62(b"last", host.encode(), path, str(file_type).encode()))
