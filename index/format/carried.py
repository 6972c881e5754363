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
from collections.abc import Callable
from typing import NamedTuple

import msgpack

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
_PACK_ID_LEN = 32

# codec.pack's encoding, by one Packer: making a new one for each call (as
# msgpack.packb does) cost as much as packing a record's parts. Records are
# carried by the walking thread only.
_pack = msgpack.Packer(use_bin_type=True).pack

_HEAD = codec.pack([RECORD_VERSION] * len(ENTRY_FIELDS))[:-len(ENTRY_FIELDS) + 1]
"""The bytes a record begins with: the array header and the record version."""


class CarriedFile(NamedTuple):
    """An unchanged file's record without the ids that place it (put in by
    `place`), and its `extents` rows, with what the writer of the new
    index counts."""

    body: bytes
    """The record's elements from `name` to `rdev`, encoded; one link, the
    access time now."""
    tail: bytes
    """Its elements from `stored_bytes` on, encoded as they were."""
    size: int
    chunk_id: bytes | None
    """The file's one chunk (None: its content is in `extent_rows`, or empty)."""
    extent_rows: list[tuple[int, bytes]]
    """(offset, value) of its `extents` rows, as they were."""


def unchanged(raw: bytes, name: bytes, st: os.stat_result,
              extent_rows: Callable[[], list[tuple[bytes, bytes]]]) -> CarriedFile | None:
    """The record `raw` of `name` in the previous snapshot, to be carried
    into the new one, if it is that of the regular file `st` unchanged: the
    same size, modification and change times and inode (the rule of
    change), and so also the same permissions, owner and group, which
    cannot change without the change time. `extent_rows` gives its
    `extents` rows (key, value), read only if it has any. None if the file
    changed, or if its record is not one this version would write: the
    caller then reads the file or decodes the record anew."""
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
    data = rec[_DATA]
    rows: list[tuple[int, bytes]] = []
    if type(data) is int and data:
        found = _extent_offsets(extent_rows(), data, st.st_size)
        if found is None:
            return None
        rows = found
    rec[_ATIME] = st.st_atime_ns
    rec[_NLINK] = 1
    # Elements 2-12 and 14-17 as arrays of their own, without the headers
    # (one byte: both have fewer than 16 elements).
    return CarriedFile(_pack(rec[_NAME:_INODE])[1:], _pack(rec[_STORED:])[1:],
                       st.st_size, data if type(data) is bytes else None, rows)


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


def _extent_offsets(rows: list[tuple[bytes, bytes]], count: int, size: int
                    ) -> list[tuple[int, bytes]] | None:
    """`extents` rows (key, value) of a file as (offset, value), if they are
    the `count` rows its record announces: from offset 0 to its `size`,
    without gap or overlap; None if not."""
    if len(rows) != count:
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
    return found if end == size else None


def chunks_of(file: CarriedFile) -> list[ChunkId]:
    """The chunks a carried file is made of."""
    if file.chunk_id is not None:
        return [ChunkId(file.chunk_id)]
    return [cid for _, value in file.extent_rows if (cid := extent_chunk(value)) is not None]


def head(parent_id: int) -> bytes:
    """The bytes that begin the record of every entry of directory
    `parent_id` (see `place`)."""
    return _HEAD + codec.pack(parent_id)


def place(head: bytes, body: bytes, tail: bytes, entry_id: int) -> bytes:
    """The record of a carried file (its `body` and `tail`) as entry
    `entry_id`, with the `head` of its directory, not a hard link."""
    return b"".join((head, body, _pack(entry_id), tail))


def as_entry(file: CarriedFile) -> tuple[Entry, list[Extent]]:
    """A carried file decoded (for the rare reader that needs it whole)."""
    entry = decode_entry(0, place(head(0), file.body, file.tail, 0))
    if file.chunk_id is not None:
        return entry, [Extent(0, entry.size, ChunkId(file.chunk_id))]
    return entry, [decode_extent(EXTENT_KEY.pack(0, offset), value)
                   for offset, value in file.extent_rows]


def extent_chunk(value: bytes) -> ChunkId | None:
    """The chunk an `extents` value names (None: a hole)."""
    if len(value) != EXTENT_LENGTH.size + _CHUNK_ID_LEN:
        return None
    return ChunkId(value[EXTENT_LENGTH.size :])


def location_pack(value: bytes) -> PackId | None:
    """The pack a `chunks` value places its chunk in (None: not a location)."""
    return PackId(value[:_PACK_ID_LEN]) if len(value) == CHUNK_LOCATION.size else None
