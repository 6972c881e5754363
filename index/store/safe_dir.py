"""Reaching the names of a repository directory without following links.

Another machine sharing the directory can put anything in it: every path
is reached one component at a time from a descriptor of the repository's
directory, never through a symbolic link, and only names the format
defines (index/format/layout.py) are written or deleted. A symlink or another
type where the format has a directory or a regular file is
`UnexpectedFile`, naming it. The repository's own path may be a link that
its administrator made.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from index.errors import RepositoryCorrupt, RepositoryError, UnexpectedFile
from index.format import layout
from index.format.layout import Expect

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO put in place of a file must not hang.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
NEW_FILE_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def split_relpath(relpath: str) -> list[str]:
    """The names of `relpath`, refusing empty, `.` and `..` components."""
    parts = relpath.split("/") if relpath else []
    if any(p in ("", ".", "..") for p in parts):
        raise RepositoryError(f"invalid path in a repository: {relpath!r}")
    return parts


def type_name(mode: int) -> str:
    """What a file of `mode` is, for messages."""
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


class SafeDirectory:
    """A repository directory whose names are reached without following links."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __str__(self) -> str:
        return str(self.root)

    def path(self, relpath: str) -> Path:
        """The local path of a repository file, for messages (and tests):
        never opened by histfs, which goes through descriptors."""
        return self.root / relpath

    def check_name(self, relpath: str, want: Expect) -> None:
        """Refuse to write or delete `relpath` unless the format has a
        `want` there."""
        split_relpath(relpath)
        if layout.expected(relpath) is not want:
            raise RepositoryCorrupt(f"refusing to write or delete {self.path(relpath)}: the "
                                    f"repository format has no {want.value} of that name")

    def _unexpected(self, dir_fd: int, name: str, relpath: str, want: Expect) -> UnexpectedFile:
        try:
            what = type_name(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        except OSError:
            what = "not readable"
        why = ("; histfs does not follow links inside a repository"
               if what == "a symbolic link" else "")
        return UnexpectedFile(f"{self.path(relpath)} is {what} where the repository format "
                              f"has a {want.value}: refusing to use it{why}")

    def _subdir(self, fd: int, name: str, relpath: str, create: bool) -> int:
        try:
            return os.open(name, DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT),
                                        str(self.path(relpath))) from None
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise self._unexpected(fd, name, relpath, Expect.DIRECTORY) from None
            raise
        # Empty directories do not survive every copy of a repository.
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=fd)
            os.fsync(fd)
        return self._subdir(fd, name, relpath, create=False)

    def open_dir(self, relpath: str, create: bool = False) -> int:
        """A descriptor of the directory `relpath` (the caller closes it),
        each component opened without following links; `create` makes the
        missing ones."""
        parts = split_relpath(relpath)
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i, name in enumerate(parts):
                sub = self._subdir(fd, name, "/".join(parts[: i + 1]), create)
                os.close(fd)
                fd = sub
        except BaseException:
            os.close(fd)
            raise
        return fd

    def open_parent(self, relpath: str, create: bool = False) -> tuple[int, str]:
        """A descriptor of the directory holding `relpath`, and its last name."""
        head, _, name = relpath.rpartition("/")
        return self.open_dir(head, create), name

    def _lstat(self, dir_fd: int, name: str, relpath: str) -> os.stat_result:
        try:
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT),
                                    str(self.path(relpath))) from None

    def _regular(self, dir_fd: int, name: str, relpath: str) -> os.stat_result:
        st = self._lstat(dir_fd, name, relpath)
        if not stat.S_ISREG(st.st_mode):
            raise self._unexpected(dir_fd, name, relpath, Expect.FILE)
        return st

    def open_local(self, relpath: str) -> int:
        """A read-only descriptor of the regular file `relpath`."""
        parent, name = self.open_parent(relpath)
        try:
            # Checked before opening: opening a device can have effects.
            self._regular(parent, name, relpath)
            try:
                fd = os.open(name, FILE_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT),
                                        str(self.path(relpath))) from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # replaced by a link meanwhile
                    raise self._unexpected(parent, name, relpath, Expect.FILE) from None
                raise
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise self._unexpected(parent, name, relpath, Expect.FILE)
            os.set_blocking(fd, True)
            return fd
        finally:
            os.close(parent)
