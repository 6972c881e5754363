"""Snapshot entries as the mount shows them, in the dated directories and
under `last` alike: attributes, a directory's children, symlink targets."""

from __future__ import annotations

import errno
import logging
import stat
from collections.abc import Iterator

from fusefs.inodes import Inode
from fusefs.view import SHORT_TIMEOUT, Attr, FsError
from index.errors import RepositoryCorrupt
from index.format.names import safe_name, snapshot_time
from index.format.types import Entry, EntryId, Kind
from index.model.repository import SnapshotRef
from index.model.snapshot_reader import SnapshotReader

log = logging.getLogger("histfs.mount")

TYPE_BITS = {
    Kind.REGULAR: stat.S_IFREG, Kind.DIRECTORY: stat.S_IFDIR, Kind.SYMLINK: stat.S_IFLNK,
    Kind.FIFO: stat.S_IFIFO, Kind.CHAR_DEVICE: stat.S_IFCHR, Kind.BLOCK_DEVICE: stat.S_IFBLK,
}


def attr(ino: Inode, e: Entry, timeout: float) -> Attr:
    """The attributes of a snapshot entry."""
    blocks = (e.stored_bytes + 511) // 512 if e.kind == Kind.REGULAR else 0
    return Attr(ino, TYPE_BITS[e.kind] | e.mode, e.nlink, e.uid, e.gid, e.rdev, e.size,
                blocks, e.atime_ns, e.mtime_ns, e.ctime_ns, timeout)


def dated_dir_attr(ino: Inode, ref: SnapshotRef) -> Attr:
    """The attributes of a dated directory, from its name alone: listing a
    host with thousands of snapshots opens none of them."""
    # nlink 1 means "subdirectories not counted". The short timeout lets a
    # pruned snapshot disappear.
    ns = int(snapshot_time(ref.name).timestamp()) * 1_000_000_000
    return Attr(ino, stat.S_IFDIR | 0o555, 1, 0, 0, 0, 0, 0, ns, ns, ns, SHORT_TIMEOUT)


def child(snap: SnapshotReader, parent: Entry, name: bytes) -> Entry:
    """The entry `name` in directory `parent` (FsError ENOTDIR, ENOENT)."""
    if parent.kind != Kind.DIRECTORY:
        raise FsError(errno.ENOTDIR)
    child_id = snap.lookup(parent.entry_id, name)
    if child_id is None:
        raise FsError(errno.ENOENT)
    return snap.entry(child_id)


def children(ref: SnapshotRef, snap: SnapshotReader, parent: Entry, start: int
             ) -> Iterator[tuple[bytes, Entry]]:
    """The entries of directory `parent` after offset `start` (an entry id:
    ids grow with names, so an offset survives any listing in between)."""
    if parent.kind != Kind.DIRECTORY:
        raise FsError(errno.ENOTDIR)
    after = snap.entry(EntryId(start)).name if start > parent.entry_id else None
    for name, child_id in snap.children(parent.entry_id, after):
        # A hostile or damaged index must not make the kernel list "..",
        # a name with "/", or stop the whole listing at one bad entry.
        if not safe_name(name):
            log.error("%s/%s: unsafe name %r in the index; not listed", ref.host, ref.name, name)
            continue
        try:
            entry = snap.entry(child_id)
        except RepositoryCorrupt as exc:
            log.error("%s/%s: %s; not listed", ref.host, ref.name, exc)
            continue
        yield name, entry


def symlink_target(e: Entry) -> bytes:
    """The target of a symlink entry (FsError EINVAL for anything else)."""
    if e.kind != Kind.SYMLINK or not isinstance(e.data, bytes):
        raise FsError(errno.EINVAL)
    return e.data


def check_regular(e: Entry) -> None:
    """FsError unless `e` is a regular file, which is all that opens."""
    if e.kind == Kind.DIRECTORY:
        raise FsError(errno.EISDIR)
    if e.kind != Kind.REGULAR:
        raise FsError(errno.ENXIO)
