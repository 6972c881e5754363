"""The directories above the snapshots: the root (one entry per host) and
each host's directory (one per snapshot, and `last`), from the snapshot
list alone. With `--host` the root is that host's directory.
"""

from __future__ import annotations

import errno
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from fusefs import entries
from fusefs.inodes import Inode, entry_inode, host_inode
from fusefs.last import LastNode, LastView
from fusefs.snapshot_table import Listing, SnapshotTable
from fusefs.view import SHORT_TIMEOUT, Attr, FsError, Listed, OpenFile
from index.errors import ConfigError
from index.format.names import LAST, check_host, is_snapshot_name, snapshot_sort_key, snapshot_time
from index.format.types import ROOT_ID
from index.model.repository import SnapshotRef

_LAST = LAST.encode()


@dataclass(frozen=True, slots=True)
class HostsDir:
    """The root of a mount of every host."""


@dataclass(frozen=True, slots=True)
class HostDir:
    """A host's directory (the root of a `--host` mount)."""

    host: str


DirNode = HostsDir | HostDir


class DirsView:
    """The root and the host directories."""

    def __init__(self, table: SnapshotTable, last: LastView) -> None:
        self.table = table
        self.last = last

    def _snapshot_attr(self, ref: SnapshotRef, listing: Listing) -> Attr:
        return entries.dated_dir_attr(entry_inode(listing.keys[ref], ROOT_ID), ref)

    def _last_attr(self, host: str) -> Attr:
        return self.last.attr(self.last.root_inode(host), LastNode(host, b""))

    def _host_attr(self, ino: Inode, listing: Listing, host: str) -> Attr:
        """A host's directory: a link per snapshot, and `last` as a directory."""
        refs = listing.by_host.get(host, [])
        ns = _newest_ns(refs)
        nlink = 2 + len(refs) + (1 if refs and not self.last.symlink else 0)
        return Attr(ino, stat.S_IFDIR | 0o555, nlink, 0, 0, 0, 0, 0, ns, ns, ns, SHORT_TIMEOUT)

    def _find(self, node: DirNode, name: bytes, listing: Listing) -> Attr | None:
        """The attributes of `name` in the directory, if listed."""
        if isinstance(node, HostsDir):
            host = next((h for h in listing.hosts if h.encode() == name), None)
            return None if host is None else self._host_attr(host_inode(host), listing, host)
        refs = listing.by_host.get(node.host)
        if not refs:
            return None
        if name == _LAST:
            return self._last_attr(node.host)
        ref = next((r for r in refs if r.name.encode() == name), None)
        return None if ref is None else self._snapshot_attr(ref, listing)

    def attr(self, ino: Inode, node: DirNode) -> Attr:
        """Attributes that follow the list: link count, newest snapshot's time."""
        listing = self.table.listing()
        if isinstance(node, HostsDir):
            return _hosts_attr(ino, listing)
        return self._host_attr(ino, listing, node.host)

    def lookup(self, node: DirNode, name: bytes) -> Attr:
        """A host, a snapshot or `last`, by name."""
        attr = self._find(node, name, self.table.listing())
        if attr is None and _may_be_new(node, name):
            # A post-backup hook looks up the path it was given at once: the
            # list may be older than that snapshot. Reading it again also
            # moves `last`. ENOENT is not cached by the kernel (an error
            # reply, not a negative entry), so a name that appears later is
            # looked up again.
            attr = self._find(node, name, self.table.listing(fresh=True))
        if attr is None:
            raise FsError(errno.ENOENT)
        if name == _LAST and isinstance(node, HostDir):
            self.last.remember(attr.ino, node.host, b"")
        return attr

    def opendir(self, node: DirNode) -> SnapshotRef | None:
        """Nothing to stick to: offsets are positions or snapshot times."""
        return None

    def readdir(self, node: DirNode, start: int, pinned: SnapshotRef | None
                ) -> Iterator[Listed]:
        """Hosts by position, snapshots by time, `last` at the end."""
        listing = self.table.listing()
        if isinstance(node, HostsDir):
            for i, host in enumerate(listing.hosts):
                if i + 1 > start:
                    yield host.encode(), self._host_attr(host_inode(host), listing, host), i + 1
            return
        refs = listing.by_host.get(node.host, [])
        for ref in refs:
            off = _snapshot_offset(ref.name)
            if off > start:
                yield ref.name.encode(), self._snapshot_attr(ref, listing), off
        if refs and start < _LAST_OFFSET:
            attr = self._last_attr(node.host)
            self.last.remember(attr.ino, node.host, b"")
            yield _LAST, attr, _LAST_OFFSET

    def readlink(self, node: DirNode) -> bytes:
        """Not a symlink."""
        raise FsError(errno.EINVAL)

    def xattrs(self, node: DirNode) -> dict[bytes, bytes]:
        """None."""
        return {}

    def open(self, ino: Inode, node: DirNode) -> OpenFile:
        """A directory does not open as a file."""
        raise FsError(errno.EISDIR)


def _newest_ns(refs: list[SnapshotRef]) -> int:
    return int(max((snapshot_time(r.name).timestamp() for r in refs), default=0.0) * 1e9)


def _hosts_attr(ino: Inode, listing: Listing) -> Attr:
    """The root of a mount of every host: a link per host."""
    ns = _newest_ns([r for refs in listing.by_host.values() for r in refs])
    nlink = 2 + len(listing.hosts)
    return Attr(ino, stat.S_IFDIR | 0o555, nlink, 0, 0, 0, 0, 0, ns, ns, ns, SHORT_TIMEOUT)


def _may_be_new(node: DirNode, name: bytes) -> bool:
    """Whether `name` could be a snapshot (or, at the root, a host) that
    was published since the list was read."""
    try:
        text = name.decode()
    except UnicodeDecodeError:
        return False
    if isinstance(node, HostDir):
        return is_snapshot_name(text)
    try:
        check_host(text)
    except ConfigError:
        return False
    return True


_LAST_OFFSET = 1 << 62
"""`last`'s readdir offset: after every snapshot's."""


def _snapshot_offset(name: str) -> int:
    """A readdir offset that orders snapshot names by time."""
    suffix = snapshot_sort_key(name)[1]
    seconds = int(snapshot_time(name).timestamp())
    return (seconds << 16) + min(suffix, 0xFFFF) + 1


__all__ = ["DirNode", "DirsView", "HostDir", "HostsDir"]
