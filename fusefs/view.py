"""What the views of the mount have in common: the answers they give
(attributes, open files, errors) and the interface each view offers for
its kind of node.

A request resolves its inode once, to a `Resolved`: the node (what the
inode stands for, typed per kind) and the view that answers for that kind.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from fusefs.inodes import Inode
from index.format.types import Entry
from index.model.repository import SnapshotRef

LONG_TIMEOUT = 24 * 3600.0
"""Inside a dated directory nothing ever changes."""
SHORT_TIMEOUT = 1.0
"""Host and snapshot lists, and `last`, move."""


class FsError(Exception):
    """A failure with a specific errno (ENOENT, ENOTDIR, ENODATA …)."""

    def __init__(self, err: int, message: str = "") -> None:
        super().__init__(message or os.strerror(err))
        self.errno = err


@dataclass(frozen=True, slots=True)
class Attr:
    """Attributes of one inode, with how long the kernel may keep them."""

    ino: Inode
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blocks: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    timeout: float


@dataclass
class OpenFile:
    """An open regular file: which snapshot entry it reads, to the end
    (under `last` too, whatever is published meanwhile)."""

    ref: SnapshotRef
    entry: Entry
    path: bytes | None
    keep_cache: bool


Listed = tuple[bytes, Attr, int]
"""A directory entry as listed: name, attributes, offset of the next one."""

N = TypeVar("N")
N_contra = TypeVar("N_contra", contravariant=True)


class View(Protocol[N_contra]):
    """The requests one kind of node answers."""

    def attr(self, ino: Inode, node: N_contra) -> Attr:
        """Attributes of the node numbered `ino`."""

    def lookup(self, node: N_contra, name: bytes) -> Attr:
        """Attributes of `name` in the directory `node` (FsError ENOENT)."""

    def opendir(self, node: N_contra) -> SnapshotRef | None:
        """The snapshot a listing of `node` must stick to, if it may move."""

    def readdir(self, node: N_contra, start: int, pinned: SnapshotRef | None
                ) -> Iterator[Listed]:
        """The entries after offset `start` (see `Vfs.readdir`)."""

    def readlink(self, node: N_contra) -> bytes:
        """The target of a symlink (FsError EINVAL otherwise)."""

    def xattrs(self, node: N_contra) -> dict[bytes, bytes]:
        """The extended attributes."""

    def open(self, ino: Inode, node: N_contra) -> OpenFile:
        """Open a regular file for reading."""


@dataclass(frozen=True, slots=True)
class Resolved(Generic[N]):
    """An inode resolved for one request: its node and the view of its kind."""

    ino: Inode
    node: N
    view: View[N]

    def attr(self) -> Attr:
        """See `View.attr`."""
        return self.view.attr(self.ino, self.node)

    def lookup(self, name: bytes) -> Attr:
        """See `View.lookup`."""
        return self.view.lookup(self.node, name)

    def opendir(self) -> SnapshotRef | None:
        """See `View.opendir`."""
        return self.view.opendir(self.node)

    def readdir(self, start: int, pinned: SnapshotRef | None) -> Iterator[Listed]:
        """See `View.readdir`."""
        return self.view.readdir(self.node, start, pinned)

    def readlink(self) -> bytes:
        """See `View.readlink`."""
        return self.view.readlink(self.node)

    def xattrs(self) -> dict[bytes, bytes]:
        """See `View.xattrs`."""
        return self.view.xattrs(self.node)

    def open(self) -> OpenFile:
        """See `View.open`."""
        return self.view.open(self.ino, self.node)
