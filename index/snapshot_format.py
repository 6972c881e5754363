"""Byte layout of a snapshot index: LMDB sub-databases, keys and records.

A snapshot index is one LMDB file with these named databases (docs/FORMAT.md
has the full tables):

    meta     b"snapshot"              -> msgpack map (host, name, parts, stats)
    entries  u64 BE entry id          -> msgpack record (ENTRY_FIELDS)
    dirents  u64 BE parent + name     -> u64 BE child entry id
    extents  u64 BE entry + u64 BE offset -> u64 LE length [+ 32-byte chunk id]
    chunks   32-byte chunk id         -> 32-byte pack id, u64 offset, u32, u32
"""

from __future__ import annotations

import struct
from typing import Any

from index import codec
from index.errors import FormatTooNew, RepositoryCorrupt
from index.types import ChunkId, ChunkLocation, Entry, EntryId, Extent, Kind, PackId

SNAPSHOTS_DIR = "snapshots"
SNAPSHOT_SUFFIX = ".idx"
INDEX_VERSION = 1
RECORD_VERSION = 1

DB_META = b"meta"
DB_ENTRIES = b"entries"
DB_DIRENTS = b"dirents"
DB_EXTENTS = b"extents"
DB_CHUNKS = b"chunks"
ALL_DBS = (DB_META, DB_ENTRIES, DB_DIRENTS, DB_EXTENTS, DB_CHUNKS)
META_KEY = b"snapshot"

ID_KEY = struct.Struct(">Q")
EXTENT_KEY = struct.Struct(">QQ")
EXTENT_LENGTH = struct.Struct("<Q")
CHUNK_LOCATION = struct.Struct("<32sQII")

ENTRY_FIELDS = (
    "record_version", "parent_id", "name", "kind", "mode", "uid", "gid",
    "size", "mtime_ns", "ctime_ns", "atime_ns", "nlink", "rdev", "inode_id",
    "stored_bytes", "data", "xattrs", "source_ino",
)


def snapshot_relpath(host: str, name: str) -> str:
    """Where a snapshot index lives in the repository."""
    return f"{SNAPSHOTS_DIR}/{host}/{name}{SNAPSHOT_SUFFIX}"


def id_key(entry_id: int) -> bytes:
    """Key of an entry in `entries` (and prefix in `dirents`, `extents`)."""
    return ID_KEY.pack(entry_id)


def dirent_key(parent_id: int, name: bytes) -> bytes:
    """Key of a name in `dirents`."""
    return ID_KEY.pack(parent_id) + name


def encode_entry(e: Entry) -> bytes:
    """A record of `entries` for `e` (its id is the key, not in the record)."""
    return codec.pack([
        RECORD_VERSION, e.parent_id, e.name, int(e.kind), e.mode, e.uid, e.gid,
        e.size, e.mtime_ns, e.ctime_ns, e.atime_ns, e.nlink, e.rdev, e.inode_id,
        e.stored_bytes, e.data, [list(x) for x in e.xattrs] or None, e.source_ino,
    ])


def decode_entry(entry_id: int, raw: bytes | memoryview) -> Entry:
    """The `Entry` stored under `entry_id`."""
    rec: list[Any] = codec.unpack(raw, "entry record")
    if not isinstance(rec, list) or not rec:
        raise RepositoryCorrupt(f"entry {entry_id}: not a record")
    try:
        if rec[0] > RECORD_VERSION:
            raise FormatTooNew(f"entry record version {rec[0]} is newer than supported")
        (_, parent, name, kind, mode, uid, gid, size, mtime, ctime, atime, nlink,
         rdev, inode_id, stored, data, xattrs, source_ino) = rec[:18]
        return Entry(
            entry_id=EntryId(entry_id), parent_id=EntryId(parent), name=name,
            kind=Kind(kind), mode=mode, uid=uid, gid=gid, size=size,
            mtime_ns=mtime, ctime_ns=ctime, atime_ns=atime, nlink=nlink,
            rdev=rdev, inode_id=EntryId(inode_id), stored_bytes=stored,
            data=data, xattrs=tuple((k, v) for k, v in xattrs or ()),
            source_ino=source_ino,
        )
    except (ValueError, TypeError) as exc:
        raise RepositoryCorrupt(f"entry {entry_id}: bad record: {exc}") from exc


def encode_extent(length: int, chunk_id: ChunkId | None) -> bytes:
    """Value of an `extents` row: a hole has no chunk id."""
    return EXTENT_LENGTH.pack(length) + (chunk_id or b"")


def decode_extent(key: bytes, value: bytes) -> Extent:
    """An `extents` row as an `Extent`."""
    _, offset = EXTENT_KEY.unpack(key)
    (length,) = EXTENT_LENGTH.unpack_from(value)
    cid = ChunkId(bytes(value[8:40])) if len(value) >= 40 else None
    return Extent(offset, length, cid)


def encode_location(loc: ChunkLocation) -> bytes:
    """Value of a `chunks` row."""
    return CHUNK_LOCATION.pack(loc.pack_id, loc.offset, loc.stored_size, loc.raw_size)


def decode_location(value: bytes) -> ChunkLocation:
    """A `chunks` row as a `ChunkLocation`."""
    pack_id, offset, stored, raw = CHUNK_LOCATION.unpack(value)
    return ChunkLocation(PackId(pack_id), offset, stored, raw)
