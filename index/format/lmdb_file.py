"""A sanity check of an LMDB file before it is mapped.

LMDB maps the file and follows page numbers without bounds checks against
the file's size: a snapshot index cut short (a copy that stopped, a full
disk on a file system that does not fail the write) would end the reading
process with SIGBUS at the first page past the end. Reading the two meta
pages first turns that into an error naming the file.
"""

from __future__ import annotations

import os
import struct

from index.errors import RepositoryCorrupt

MAGIC = 0xBEEFC0DE
# MDB_meta on 64-bit builds, after the 16-byte page header (LMDB 0.9):
# mm_magic u32 @16, mm_version u32 @20, mm_address @24, mm_mapsize @32,
# mm_dbs[2] @40 (48 bytes each; the first's md_pad holds the page size),
# mm_last_pg u64 @136, mm_txnid u64 @144.
_MAGIC_VERSION = struct.Struct("<II")
_PAGE_SIZE = struct.Struct("<I")
_LAST_PAGE_TXNID = struct.Struct("<QQ")
_META_END = 152


def check_whole(fd: int, name: str) -> None:
    """Raise RepositoryCorrupt unless the file behind `fd` is an LMDB file
    that holds every page its newest meta page counts."""
    size = os.fstat(fd).st_size
    head = os.pread(fd, _META_END, 0)
    if len(head) < _META_END or _MAGIC_VERSION.unpack_from(head, 16)[0] != MAGIC:
        raise RepositoryCorrupt(f"{name}: not an index file (no LMDB meta page)")
    page_size = _PAGE_SIZE.unpack_from(head, 40)[0]
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise RepositoryCorrupt(f"{name}: damaged meta page (page size {page_size})")
    second = os.pread(fd, _META_END, page_size)
    metas = [head]
    if len(second) == _META_END and _MAGIC_VERSION.unpack_from(second, 16)[0] == MAGIC:
        metas.append(second)
    last_page, _ = max((_LAST_PAGE_TXNID.unpack_from(m, 136) for m in metas),
                       key=lambda pair: pair[1])
    needed = (last_page + 1) * page_size
    if size < needed:
        raise RepositoryCorrupt(f"{name}: truncated ({size} of {needed} bytes)")
