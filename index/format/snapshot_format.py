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
from collections.abc import Mapping, Sequence
from typing import Any

from index.errors import FormatTooNew, RepositoryCorrupt, shown
from index.format import codec
from index.format.types import ChunkId, ChunkLocation, Entry, EntryId, Extent, Kind, PackId

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


# Record elements that must be ints; times may be negative (before 1970),
# the others not. `kind` is checked by `Kind` instead.
_TIME_FIELDS = (8, 9, 10)
_COUNT_FIELDS = (1, 4, 5, 6, 7, 11, 12, 13, 14, 17)
_ID32_FIELDS = (5, 6, 11)  # uid, gid, nlink
_MAX_MODE = 0o7777
_MAX_U32 = (1 << 32) - 1
_MIN_I64, _MAX_I64 = -(1 << 63), (1 << 63) - 1
_KINDS = frozenset(int(k) for k in Kind)


def decode_entry(entry_id: int, raw: bytes | memoryview) -> Entry:
    """The `Entry` stored under `entry_id`."""
    rec: list[Any] = codec.unpack(raw, "entry record")
    if not isinstance(rec, list) or not rec:
        raise RepositoryCorrupt(f"entry {entry_id}: not a record")
    if type(rec[0]) is not int:
        raise RepositoryCorrupt(f"entry {entry_id}: bad record version {shown(rec[0])}")
    if rec[0] > RECORD_VERSION:
        raise FormatTooNew(f"entry record version {rec[0]} is newer than supported")
    if len(rec) < len(ENTRY_FIELDS):
        raise RepositoryCorrupt(f"entry {entry_id}: bad record: {len(rec)} fields, "
                                f"not {len(ENTRY_FIELDS)}")
    # Every field is checked here, once, so that no reader (the mount, a
    # restore) meets a value of the wrong type later.
    # Bounds are those of the kernel's types (off_t, time in ns as int64,
    # uid_t): a value beyond them cannot be shown or restored.
    for i in _TIME_FIELDS:
        if type(rec[i]) is not int or not _MIN_I64 <= rec[i] <= _MAX_I64:
            raise _bad_field(entry_id, i, rec[i])
    for i in _COUNT_FIELDS:
        limit = _MAX_U32 if i in _ID32_FIELDS else _MAX_I64
        if type(rec[i]) is not int or not 0 <= rec[i] <= limit:
            raise _bad_field(entry_id, i, rec[i])
    (_, parent, name, kind, mode, uid, gid, size, mtime, ctime, atime, nlink,
     rdev, inode_id, stored, data, xattrs, source_ino) = rec[:18]
    if not isinstance(name, bytes):
        raise _bad_field(entry_id, 2, name)
    if type(kind) is not int or kind not in _KINDS:
        raise _bad_field(entry_id, 3, kind)
    if mode > _MAX_MODE:
        raise _bad_field(entry_id, 4, mode)
    if not (data is None or isinstance(data, bytes)
            or (type(data) is int and data >= 0)) or (
                kind == Kind.REGULAR and isinstance(data, bytes) and len(data) != 32):
        raise _bad_field(entry_id, 15, data)
    if xattrs is None:
        xattrs = []
    if not isinstance(xattrs, list) or not all(
        isinstance(x, list) and len(x) == 2 and isinstance(x[0], bytes)
        and isinstance(x[1], bytes) for x in xattrs
    ):
        raise _bad_field(entry_id, 16, xattrs)
    return Entry(
        entry_id=EntryId(entry_id), parent_id=EntryId(parent), name=name,
        kind=Kind(kind), mode=mode, uid=uid, gid=gid, size=size,
        mtime_ns=mtime, ctime_ns=ctime, atime_ns=atime, nlink=nlink,
        rdev=rdev, inode_id=EntryId(inode_id), stored_bytes=stored,
        data=data, xattrs=tuple((k, v) for k, v in xattrs),
        source_ino=source_ino,
    )


def _bad_field(entry_id: int, index: int, value: object) -> RepositoryCorrupt:
    return RepositoryCorrupt(
        f"entry {entry_id}: bad record: {ENTRY_FIELDS[index]} {shown(value)}"
    )


def file_data(size: int, extents: Sequence[Extent]) -> bytes | int | None:
    """The `data` of the record of a regular file of `size` bytes: the id
    of its one chunk if that covers it whole, else how many `extents` rows
    it has (None: it has no content at all)."""
    if (len(extents) == 1 and extents[0].chunk_id is not None
            and extents[0].offset == 0 and extents[0].length == size):
        return extents[0].chunk_id
    return len(extents) if extents else None


_KIND = ENTRY_FIELDS.index("kind")
_DATA = ENTRY_FIELDS.index("data")


def rename_entry_chunk(raw: bytes | memoryview,
                       renamed: Mapping[ChunkId, ChunkId]) -> bytes | None:
    """The `entries` record `raw` of a single-chunk file naming the new id
    `renamed` gives its chunk, every other field as it was; None if the
    record names no renamed chunk."""
    rec = codec.unpack(raw, "entry record")
    if not isinstance(rec, list) or len(rec) <= _DATA or rec[_KIND] != Kind.REGULAR:
        return None
    data = rec[_DATA]
    new_id = renamed.get(ChunkId(data)) if isinstance(data, bytes) and len(data) == 32 else None
    if new_id is None:
        return None
    rec[_DATA] = new_id
    return codec.pack(rec)


def rename_extent_chunk(value: bytes | memoryview,
                        renamed: Mapping[ChunkId, ChunkId]) -> bytes | None:
    """The `extents` value `value` naming the new id `renamed` gives its
    chunk; None if it is a hole or names no renamed chunk."""
    if len(value) != EXTENT_LENGTH.size + 32:
        return None
    new_id = renamed.get(ChunkId(bytes(value[EXTENT_LENGTH.size :])))
    return None if new_id is None else bytes(value[: EXTENT_LENGTH.size]) + new_id


def encode_extent(length: int, chunk_id: ChunkId | None) -> bytes:
    """Value of an `extents` row: a hole has no chunk id."""
    return EXTENT_LENGTH.pack(length) + (chunk_id or b"")


def decode_extent_key(key: bytes) -> tuple[int, int]:
    """An `extents` key as (entry id, offset)."""
    if len(key) != EXTENT_KEY.size:
        raise RepositoryCorrupt(f"extent key {bytes(key[:16]).hex()}: {len(key)} bytes, "
                                f"not {EXTENT_KEY.size}")
    entry_id, offset = EXTENT_KEY.unpack(key)
    return entry_id, offset


def decode_extent(key: bytes, value: bytes) -> Extent:
    """An `extents` row as an `Extent`."""
    entry_id, offset = decode_extent_key(key)
    if len(value) not in (EXTENT_LENGTH.size, EXTENT_LENGTH.size + 32):
        raise RepositoryCorrupt(f"extent of entry {entry_id} at {offset}: {len(value)} "
                                "bytes, not 8 (a hole) or 40 (a chunk)")
    (length,) = EXTENT_LENGTH.unpack_from(value)
    cid = ChunkId(bytes(value[8:40])) if len(value) == 40 else None
    return Extent(offset, length, cid)


def encode_location(loc: ChunkLocation) -> bytes:
    """Value of a `chunks` row."""
    return CHUNK_LOCATION.pack(loc.pack_id, loc.offset, loc.stored_size, loc.raw_size)


def decode_location(value: bytes) -> ChunkLocation:
    """A `chunks` row as a `ChunkLocation`."""
    if len(value) != CHUNK_LOCATION.size:
        raise RepositoryCorrupt(f"chunk location of {len(value)} bytes, "
                                f"not {CHUNK_LOCATION.size}")
    pack_id, offset, stored, raw = CHUNK_LOCATION.unpack(value)
    return ChunkLocation(PackId(pack_id), offset, stored, raw)


def decode_id(value: bytes, what: str) -> EntryId:
    """A u64 BE entry id (a `dirents` value, an `entries` key)."""
    if len(value) != ID_KEY.size:
        raise RepositoryCorrupt(f"{what}: entry id of {len(value)} bytes, not {ID_KEY.size}")
    return EntryId(ID_KEY.unpack(value)[0])


# Types of the `meta` fields that readers use; a field that is absent is
# fine (readers fall back), one of another type is damage.
_META_TYPES: dict[str, tuple[type, ...]] = {
    "version": (int,), "host": (str,), "name": (str,), "time": (str,), "parts": (list,),
    "histfs_version": (str,), "machine": (str,), "files": (int,), "directories": (int,),
    "bytes_added": (int,), "chunks_added": (int,), "warnings": (int,),
    "duration_seconds": (int, float), "entries": (int,), "chunks": (int,),
    "logical_bytes": (int,),
}
_PART_TYPES: dict[str, tuple[type, ...]] = {"name": (str,), "source": (str,),
                                            "exclude": (list,)}


def _typed(value: object, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and not isinstance(value, bool)


def decode_meta(raw: bytes | memoryview, name: str) -> dict[str, Any]:
    """The `meta` map of snapshot index `name`; a newer version is refused."""
    meta = codec.unpack(raw, f"metadata of snapshot index {name}")
    if not isinstance(meta, dict):
        raise RepositoryCorrupt(f"snapshot index {name}: metadata is not a map")
    version = meta.get("version", 0)
    if _typed(version, (int,)) and version > INDEX_VERSION:
        raise FormatTooNew(f"snapshot index {name} has a newer format")
    if not isinstance(meta.get("name"), str):
        raise RepositoryCorrupt(f"snapshot index {name}: metadata has no name")
    for key, types in _META_TYPES.items():
        if key in meta and not _typed(meta[key], types):
            raise RepositoryCorrupt(f"snapshot index {name}: bad metadata {key} "
                                    f"{shown(meta[key])}")
    for part in meta.get("parts", []):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str) or any(
            key in part and not _typed(part[key], types) for key, types in _PART_TYPES.items()
        ) or not all(isinstance(x, str) for x in part.get("exclude", [])):
            raise RepositoryCorrupt(f"snapshot index {name}: bad metadata part {shown(part)}")
    return meta


def check_place(meta: dict[str, Any], host: str, name: str, relpath: str) -> None:
    """Refuse the index at `relpath` (snapshot `name` of `host`) if its
    metadata names another snapshot: it was copied or moved there, and
    would show one host's files as another's."""
    if meta.get("host") != host or meta.get("name") != name:
        raise RepositoryCorrupt(
            f"snapshot index {relpath} is damaged: it holds snapshot "
            f"{_plain(meta.get('host'))}/{_plain(meta.get('name'))}, not {host}/{name} "
            "(copied there from another place)")


def _plain(value: object) -> str:
    if isinstance(value, str) and value.isprintable() and 0 < len(value) <= 80:
        return value
    return shown(value)
