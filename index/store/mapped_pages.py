"""Unmapping the pages of a read-only file mapping without closing it.

LMDB reads a snapshot index through a shared, read-only memory map. Every
page a lookup touches stays mapped into the process and counts in its RSS,
so a long-running mount that has walked a few large snapshots shows their
whole index files as its own memory, although the pages belong to the page
cache and the kernel could drop them at any time. `madvise(MADV_DONTNEED)`
on such a mapping removes the page-table entries only: the data stays in
the page cache, the next access maps it again with a minor fault, and
nothing can be lost because the mapping is read-only.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterable

log = logging.getLogger(__name__)

_MADV_DONTNEED = 4
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.madvise.restype = ctypes.c_int


def mapped_ranges(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[int, int]]:
    """Address ranges [start, end) where this process maps the files `paths`
    (matched by device and inode, as /proc/self/maps shows them)."""
    wanted = set()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        wanted.add((os.major(st.st_dev), os.minor(st.st_dev), st.st_ino))
    ranges: list[tuple[int, int]] = []
    if not wanted:
        return ranges
    try:
        with open("/proc/self/maps", "rb") as maps:
            for line in maps:
                fields = line.split(None, 5)
                if len(fields) < 5 or fields[4] == b"0":
                    continue
                major, minor = (int(part, 16) for part in fields[3].split(b":"))
                if (major, minor, int(fields[4])) not in wanted:
                    continue
                start, end = (int(part, 16) for part in fields[0].split(b"-"))
                ranges.append((start, end))
    except OSError as exc:
        # Without /proc the pages simply stay mapped.
        log.debug("cannot read /proc/self/maps: %s", exc)
    return ranges


def drop_pages(ranges: list[tuple[int, int]]) -> None:
    """Unmap the pages of read-only file mappings `ranges` (data stays cached).

    The caller guarantees the mappings are still in place: a range that had
    been unmapped and reused for anonymous memory would be zeroed."""
    for start, end in ranges:
        if _libc.madvise(start, end - start, _MADV_DONTNEED) != 0:
            err = ctypes.get_errno()
            log.debug("madvise(%#x, %d): %s", start, end - start, os.strerror(err))
