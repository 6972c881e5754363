"""Capturing what the file system says about one path."""

from __future__ import annotations

import errno
import os
import stat

from index.format.types import Kind

_KINDS = {
    stat.S_IFREG: Kind.REGULAR,
    stat.S_IFDIR: Kind.DIRECTORY,
    stat.S_IFLNK: Kind.SYMLINK,
    stat.S_IFIFO: Kind.FIFO,
    stat.S_IFCHR: Kind.CHAR_DEVICE,
    stat.S_IFBLK: Kind.BLOCK_DEVICE,
}
_NO_XATTRS = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENODATA}


def kind_of(st: os.stat_result) -> Kind | None:
    """The stored kind of a file, or None for sockets and the unknown."""
    return _KINDS.get(stat.S_IFMT(st.st_mode))


def read_xattrs(path: bytes) -> list[tuple[bytes, bytes]]:
    """All extended attributes of `path` (POSIX ACLs included), sorted.

    Attributes that vanish between listing and reading are skipped; a file
    system without xattr support has none.
    """
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return []
        raise
    result: list[tuple[bytes, bytes]] = []
    for name in sorted(names, key=os.fsencode):
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in _NO_XATTRS:
                continue
            raise
        result.append((os.fsencode(name), value))
    return result
