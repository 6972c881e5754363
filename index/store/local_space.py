"""Room on the local disk for the LMDB files of the cache.

A file system that is full makes a write through a memory map end the
process with SIGBUS, without a message and without cleaning up. The cache's
databases are therefore written with plain writes (no `writemap`), and
before each write transaction the file's blocks are allocated
(posix_fallocate) for what the transaction is expected to add: a disk
without that room is found before the transaction starts, and the message
says how much was needed. Should the writes still outgrow the estimate on a
full disk, they fail cleanly (ENOSPC, or EIO for a short write) and that
too becomes one `CacheFull` line naming the cache directory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import lmdb

from index.errors import CacheFull

_FULL = (errno.ENOSPC, errno.EDQUOT)
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.EINVAL)
# Less room than this left after a short write: the disk filled up.
_NEARLY_FULL = 1 << 20


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on `directory`'s disk."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def cache_full(directory: Path, what: str, needed: int | None) -> CacheFull:
    """The one-line error for a local cache that has no room for `what`;
    `needed` is the estimate of the room it wanted, if there is one."""
    need = f"needed {_size(needed)} more" if needed else "needed more"
    return CacheFull(f"the local cache {directory} is full: {what} {need}, "
                     f"{_size(free_bytes(directory))} free (free some space there, or set "
                     "HISTFS_CACHE_DIR to a larger local disk)")


def is_full(exc: BaseException, directory: Path) -> bool:
    """Whether `exc`, met writing in `directory`, says its disk is full:
    ENOSPC or EDQUOT, or LMDB's error for a write that came up short (EIO)
    while the disk has next to no room left."""
    if isinstance(exc, lmdb.DiskError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _FULL
    return (isinstance(exc, lmdb.Error) and os.strerror(errno.EIO) in str(exc)
            and free_bytes(directory) < _NEARLY_FULL)


@contextlib.contextmanager
def reporting_full(directory: Path, what: str) -> Iterator[None]:
    """Turn a full disk met inside into `CacheFull` naming `directory`."""
    try:
        yield
    except CacheFull:
        raise
    except (OSError, lmdb.Error) as exc:
        if is_full(exc, directory):
            raise cache_full(directory, what, None) from exc
        raise


class Reservation:
    """Allocates the blocks of one LMDB file of the cache ahead of its pages."""

    def __init__(self, env: lmdb.Environment, path: Path, what: str) -> None:
        self._env = env
        self.directory = path.parent
        """The cache directory the file is in (for messages)."""
        self.what = what
        """What the file is, for messages ("the deduplication index")."""
        self.page = int(env.stat()["psize"])
        """LMDB's page size."""
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        self._allocated = os.fstat(self._fd).st_size
        # Pack-writing threads record their packs concurrently.
        self._lock = threading.Lock()

    def used(self) -> int:
        """Bytes of the file that committed pages occupy."""
        return (int(self._env.info()["last_pgno"]) + 1) * self.page

    def ensure(self, upcoming: int) -> None:
        """Allocate room for `upcoming` more bytes beyond the used pages;
        raise `CacheFull` with the size that was missing if the disk has
        not got it."""
        with self._lock:
            target = self.used() + upcoming
            if target <= self._allocated:
                return
            try:
                os.posix_fallocate(self._fd, 0, target)
            except OSError as exc:
                if exc.errno in _FULL:
                    missing = target - os.fstat(self._fd).st_size
                    raise cache_full(self.directory, self.what, missing) from exc
                if exc.errno not in _UNSUPPORTED:
                    raise
                # No such call on this file system: the writes still fail
                # cleanly, without the size.
            self._allocated = target

    def raise_if_full(self, exc: BaseException) -> None:
        """Raise `CacheFull` (from `exc`) if `exc` says the disk is full."""
        if is_full(exc, self.directory):
            raise cache_full(self.directory, self.what, None) from exc

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """Turn a full disk met by the writes inside into `CacheFull`."""
        return reporting_full(self.directory, self.what)

    def close(self) -> None:
        """Stop reserving (the file keeps what it has)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def make_lock_file(path: Path, size: int = 8192) -> None:
    """Allocate an LMDB lock file before LMDB maps it: LMDB sizes a new one
    with ftruncate and writes its reader table through the map, a SIGBUS on a
    full disk. Allocating blocks changes no byte, so a file that another
    process has open is safe to pass too (its holes are filled)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.posix_fallocate(fd, 0, max(size, os.fstat(fd).st_size))
    except OSError as exc:
        if exc.errno in _FULL:
            raise cache_full(path.parent, f"the lock file {path.name}", size) from exc
        if exc.errno not in _UNSUPPORTED:
            raise
    finally:
        os.close(fd)
