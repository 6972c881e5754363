"""The dated directories: each snapshot as it was written, never changing.

An inode number names a snapshot (by its key) and an entry in it, so a
request needs no state of the mount's own and the kernel may keep what it
learns for a day.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from dataclasses import dataclass

from fusefs import entries
from fusefs.inodes import Inode, entry_inode, split_entry_inode
from fusefs.snapshot_table import Listing, SnapshotTable
from fusefs.view import LONG_TIMEOUT, Attr, FsError, Listed, OpenFile
from index.errors import PathNotFound
from index.format.types import ROOT_ID, Entry, EntryId
from index.model.repository import SnapshotRef
from index.model.snapshot_reader import SnapshotReader


@dataclass(frozen=True, slots=True)
class DatedEntry:
    """An entry of a dated directory (the directory itself is its root)."""

    ref: SnapshotRef
    key: int
    """The snapshot's key in inode numbers."""
    entry_id: EntryId
    """The entry's inode id: the first of its hard links."""


class DatedView:
    """The entries of dated directories."""

    def __init__(self, table: SnapshotTable) -> None:
        self.table = table

    def node(self, ino: int, listing: Listing) -> DatedEntry:
        """What the entry inode `ino` stands for; FsError(ENOENT) once its
        snapshot is gone."""
        key, inode_id = split_entry_inode(ino)
        ref = listing.refs.get(key) or self.table.listing(fresh=True).refs.get(key)
        if ref is None:
            raise FsError(errno.ENOENT, "snapshot no longer exists")
        return DatedEntry(ref, key, EntryId(inode_id))

    def _entry(self, node: DatedEntry) -> tuple[SnapshotReader, Entry]:
        snap = self.table.reader(node.ref)
        try:
            return snap, snap.entry(node.entry_id)
        except PathNotFound:
            raise FsError(errno.ENOENT) from None

    def _attr(self, node: DatedEntry, e: Entry) -> Attr:
        return entries.attr(entry_inode(node.key, e.inode_id), e, LONG_TIMEOUT)

    def attr(self, ino: Inode, node: DatedEntry) -> Attr:
        """Attributes of an entry; of the dated directory, from its name."""
        if node.entry_id == ROOT_ID:
            return entries.dated_dir_attr(ino, node.ref)
        return entries.attr(ino, self._entry(node)[1], LONG_TIMEOUT)

    def lookup(self, node: DatedEntry, name: bytes) -> Attr:
        """Attributes of `name` in a directory of the snapshot."""
        snap, entry = self._entry(node)
        return self._attr(node, entries.child(snap, entry, name))

    def opendir(self, node: DatedEntry) -> SnapshotRef | None:
        """Nothing to stick to: the snapshot never changes."""
        return None

    def readdir(self, node: DatedEntry, start: int, pinned: SnapshotRef | None
                ) -> Iterator[Listed]:
        """The entries after offset `start` (an entry id)."""
        snap, entry = self._entry(node)
        for name, e in entries.children(node.ref, snap, entry, start):
            yield name, self._attr(node, e), e.entry_id

    def readlink(self, node: DatedEntry) -> bytes:
        """The target of a symlink."""
        return entries.symlink_target(self._entry(node)[1])

    def xattrs(self, node: DatedEntry) -> dict[bytes, bytes]:
        """The stored extended attributes (ACLs included)."""
        return dict(self._entry(node)[1].xattrs)

    def open(self, ino: Inode, node: DatedEntry) -> OpenFile:
        """Open a regular file; the kernel keeps its pages (they never change)."""
        entry = self._entry(node)[1]
        entries.check_regular(entry)
        self.table.warm(node.ref)
        # The path is only needed for error messages: found then (`Vfs.file_path`).
        return OpenFile(node.ref, entry, None, keep_cache=True)
