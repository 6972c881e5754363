"""Entry records of unchanged files, carried from one snapshot index into
the next.

A file that did not change keeps its record: only the ids that place it in
the new snapshot (its parent, its own as inode id), its link count and its
access time can differ. Turning each record into an `Entry` and back, with
every field checked, was most of what an unchanged file cost; here msgpack
splits the record, the fields that are copied unchanged are checked against
the file's current status (which they must equal) or by type, and the new
ids are put in. A record of another version or layout is not carried: the
caller then decodes it as usual.
"""

from __future__ import annotations

import os
from typing import Any

from index.errors import RepositoryCorrupt
from index.format import codec
from index.format.snapshot_format import (
    CHUNK_LOCATION,
    ENTRY_FIELDS,
    EXTENT_KEY,
    EXTENT_LENGTH,
    RECORD_VERSION,
    decode_entry,
    decode_extent,
)
from index.format.types import ChunkId, Entry, Extent, Kind, PackId

_LAYOUT_VERSION = 1
"""The record version whose layout (ENTRY_FIELDS) this module knows."""

(_VERSION, _PARENT, _NAME, _KIND, _MODE, _UID, _GID, _SIZE, _MTIME, _CTIME, _ATIME,
 _NLINK, _RDEV, _INODE, _STORED, _DATA, _XATTRS, _SOURCE_INO) = range(len(ENTRY_FIELDS))
_MAX_I64 = (1 << 63) - 1
_CHUNK_ID_LEN = 32

CarriedRecord = list[Any]
"""The elements of an entry record, as msgpack gives them."""


def unchanged_record(raw: bytes, name: bytes, st: os.stat_result) -> CarriedRecord | None:
    """The elements of `raw`, the record of `name` in the previous
    snapshot, if it is that of the regular file `st` unchanged: the same
    size, modification and change times and inode (the current rule of
    change) and so also the same permissions, owner and group, which cannot
    change without the change time. None if not, or if the record is not
    one this version would write: the caller then reads or decodes anew.
    The access time is taken from `st`."""
    if _LAYOUT_VERSION != RECORD_VERSION:
        return None
    try:
        rec = codec.unpack(raw, "entry record")
    except RepositoryCorrupt:
        return None
    if not (type(rec) is list and len(rec) == len(ENTRY_FIELDS)
            and rec[_VERSION] == RECORD_VERSION and rec[_KIND] == Kind.REGULAR
            and rec[_SIZE] == st.st_size and rec[_MTIME] == st.st_mtime_ns
            and rec[_CTIME] == st.st_ctime_ns and rec[_SOURCE_INO] == st.st_ino
            and rec[_NAME] == name and rec[_MODE] == st.st_mode & 0o7777
            and rec[_UID] == st.st_uid and rec[_GID] == st.st_gid and rec[_RDEV] == 0
            and type(rec[_STORED]) is int and 0 <= rec[_STORED] <= _MAX_I64
            and _valid_data(rec[_DATA]) and _valid_xattrs(rec[_XATTRS])):
        return None
    return rec


def with_atime(rec: CarriedRecord, raw: bytes, atime_ns: int) -> bytes:
    """The record bytes to carry: `raw` itself, unless the file was read
    since (`atime_ns` is its access time now)."""
    if rec[_ATIME] == atime_ns:
        return raw
    rec[_ATIME] = atime_ns
    return codec.pack(rec)


def _valid_data(data: object) -> bool:
    if data is None:
        return True
    if type(data) is bytes:
        return len(data) == _CHUNK_ID_LEN
    return type(data) is int and 0 <= data <= _MAX_I64


def _valid_xattrs(xattrs: object) -> bool:
    return xattrs is None or (type(xattrs) is list and all(
        type(x) is list and len(x) == 2 and type(x[0]) is bytes and type(x[1]) is bytes
        for x in xattrs))


def extent_rows_expected(rec: CarriedRecord) -> int:
    """How many `extents` rows the file of `rec` has (0: its record holds
    all of its content)."""
    data = rec[_DATA]
    return data if type(data) is int else 0


def chunks_of(rec: CarriedRecord, rows: list[tuple[int, bytes]]) -> list[ChunkId]:
    """The chunks the file of `rec` (with its `extents` rows) is made of."""
    data = rec[_DATA]
    if type(data) is bytes:
        return [ChunkId(data)]
    return [cid for _, value in rows if (cid := extent_chunk(value)) is not None]


def place(record: bytes, parent_id: int, entry_id: int) -> tuple[bytes, int, ChunkId | None]:
    """The carried `record` as entry `entry_id` of directory `parent_id`,
    with one link; returns it with the file's size and the id of its one
    chunk (None if its content is in `extents` rows, or empty)."""
    rec = codec.unpack(record, "carried entry record")
    rec[_PARENT] = parent_id
    rec[_INODE] = entry_id
    rec[_NLINK] = 1
    data = rec[_DATA]
    return codec.pack(rec), rec[_SIZE], ChunkId(data) if type(data) is bytes else None


def extent_offsets(rows: list[tuple[bytes, bytes]], rec: CarriedRecord
                   ) -> list[tuple[int, bytes]] | None:
    """The `extents` rows (key, value) of the file of `rec` as (offset,
    value), if they are the rows its record announces: from offset 0 to its
    size, without gap or overlap; None if not."""
    if len(rows) != extent_rows_expected(rec):
        return None
    found: list[tuple[int, bytes]] = []
    end = 0
    try:
        for key, value in rows:
            ext = decode_extent(key, value)
            if ext.offset != end:
                return None
            end += ext.length
            found.append((ext.offset, value))
    except RepositoryCorrupt:
        return None
    return found if end == rec[_SIZE] else None


def as_entry(record: bytes, rows: list[tuple[int, bytes]]) -> tuple[Entry, list[Extent]]:
    """A carried record and its `extents` rows decoded (for the rare reader
    that needs them whole)."""
    entry = decode_entry(0, record)
    if isinstance(entry.data, bytes):
        return entry, [Extent(0, entry.size, ChunkId(entry.data))]
    return entry, [decode_extent(EXTENT_KEY.pack(0, offset), value) for offset, value in rows]


def extent_chunk(value: bytes) -> ChunkId | None:
    """The chunk an `extents` value names (None: a hole)."""
    if len(value) != EXTENT_LENGTH.size + _CHUNK_ID_LEN:
        return None
    return ChunkId(value[EXTENT_LENGTH.size :])


def location_pack(value: bytes) -> PackId | None:
    """The pack a `chunks` value places its chunk in (None: not a location)."""
    return PackId(value[:32]) if len(value) == CHUNK_LOCATION.size else None
