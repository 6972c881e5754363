"""Reaching files whose paths are too long for a system call."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

# System calls refuse paths of PATH_MAX (4096) bytes or more, and trees go
# deeper: paths this long are reached through a descriptor of an ancestor.
_LONG_PATH = 3072


def lstat(path: bytes) -> os.stat_result:
    """`os.lstat` of `path`, however long (see `reachable`)."""
    if len(path) < _LONG_PATH:
        return os.lstat(path)
    with reachable(path) as p:
        return os.lstat(p)


@contextlib.contextmanager
def reachable(path: bytes) -> Iterator[bytes]:
    """`path`, or if it is too long for a system call the same file as
    /proc/self/fd/N/REST, N a descriptor of one of its directories (open
    while the caller uses it)."""
    if len(path) < _LONG_PATH:
        yield path
        return
    fd: int | None = None
    rest = path
    try:
        while len(rest) >= _LONG_PATH:
            # Names are at most 255 bytes: the first half holds a separator.
            cut = rest.rfind(b"/", 1, _LONG_PATH // 2)
            head, rest = rest[:cut], rest[cut + 1 :]
            inner = os.open(head, os.O_PATH | os.O_DIRECTORY, dir_fd=fd)
            if fd is not None:
                os.close(fd)
            fd = inner
        yield f"/proc/self/fd/{fd}/".encode() + rest
    finally:
        if fd is not None:
            os.close(fd)
