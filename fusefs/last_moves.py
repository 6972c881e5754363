"""What the kernel must forget when `last` moves to a newer snapshot.

Under `last` the kernel keeps entries and attributes as long as in the dated
directories: a walk asks for each path once, and a reader opening files long
after it listed them (rsync) looks nothing up again. That is right only
because the mount tells the kernel, when `last` moves, which of the paths it
holds now stand for something else: a name that is gone or changed type is
forgotten (its inode number changes with its type), an inode whose
attributes or extended attributes changed loses them, and one whose content
changed loses its pages too. Everything else keeps its entry, attributes and
page cache.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

from fusefs import entries
from fusefs.inodes import Inode, last_inode
from index.errors import HistfsError
from index.format.types import ROOT_ID, Entry, Kind
from index.model.snapshot_reader import SnapshotReader


@dataclass(frozen=True, slots=True)
class ForgetEntry:
    """The kernel must forget the name `name` in directory `parent`."""

    parent: Inode
    name: bytes


@dataclass(frozen=True, slots=True)
class ForgetInode:
    """The kernel must forget the attributes of `ino` (and its pages if `data`)."""

    ino: Inode
    data: bool


Forget = ForgetEntry | ForgetInode


def fingerprint(e: Entry) -> int:
    """What the kernel is told of an entry (attributes, xattrs, type, a
    whole-file chunk or a symlink's target), as one number: equal entries
    give equal numbers."""
    data = None if isinstance(e.data, int) else e.data
    return hash((e.kind, e.mode, e.uid, e.gid, e.size, e.mtime_ns, e.ctime_ns, e.atime_ns,
                 e.nlink, e.rdev, e.stored_bytes, e.xattrs, data))


class Paths:
    """Paths resolved in one snapshot, each directory looked up once. `snap`
    may be replaced by a fresh reader of the same snapshot between calls."""

    def __init__(self, snap: SnapshotReader) -> None:
        self.snap = snap
        self._dirs: dict[bytes, Entry | None] = {b"": snap.root()}

    def entry(self, path: bytes) -> Entry | None:
        """The entry at `path`, or None."""
        parent_path, _, name = path.rpartition(b"/")
        if parent_path in self._dirs:
            parent = self._dirs[parent_path]
        else:
            parent = self._dirs[parent_path] = self.entry(parent_path)
        if parent is None or parent.kind != Kind.DIRECTORY:
            return None
        child = self.snap.lookup(parent.entry_id, name)
        return None if child is None else self.snap.entry(child)


def numbered_path(snap: SnapshotReader, path: bytes, e: Entry) -> bytes:
    """The path a `last` inode number is made from: a hard link's first link."""
    return path if e.inode_id == e.entry_id or e.inode_id == ROOT_ID \
        else snap.path_of(e.inode_id)


def check(host: str, paths: Paths, ino: Inode, path: bytes, given: int | None,
          content: tuple[object, ...] | None) -> tuple[Forget | None, Entry | None]:
    """What the kernel must forget of inode `ino`, which it holds as `path`
    with attributes `given` (a `fingerprint`, None if unknown) and pages of
    `content` (None: no pages), once `last` shows the snapshot of `paths`;
    and the entry `ino` stands for there (None: the name must go)."""
    try:
        e = paths.entry(path)
    except HistfsError:  # a damaged entry: reading it will say so
        e = None
    if e is None or last_inode(host, numbered_path(paths.snap, path, e),
                               entries.TYPE_BITS[e.kind]) != ino:
        parent_path, _, name = path.rpartition(b"/")
        return ForgetEntry(last_inode(host, parent_path, stat.S_IFDIR), name), None
    pages = content is not None and paths.snap.content_key(e) != content
    if pages or given != fingerprint(e):
        return ForgetInode(ino, pages or given is None), e
    return None, e
