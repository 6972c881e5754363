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
from collections.abc import Iterable
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


@dataclass(frozen=True, slots=True)
class Held:
    """A path under `last` the kernel holds, and the entry it was given."""

    ino: Inode
    path: bytes
    given: tuple[SnapshotReader, Entry] | None
    """None when the mount cannot tell (then all of it is forgotten)."""


class _Paths:
    """Paths resolved in one snapshot, each directory looked up once."""

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


def _same_attributes(old: Entry, new: Entry) -> bool:
    return (old.kind, old.mode, old.uid, old.gid, old.size, old.mtime_ns, old.ctime_ns,
            old.atime_ns, old.nlink, old.rdev, old.stored_bytes, old.xattrs) == \
        (new.kind, new.mode, new.uid, new.gid, new.size, new.mtime_ns, new.ctime_ns,
         new.atime_ns, new.nlink, new.rdev, new.stored_bytes, new.xattrs)


def _same_content(old_snap: SnapshotReader, old: Entry, new_snap: SnapshotReader,
                  new: Entry) -> bool:
    if old.kind != Kind.REGULAR or not isinstance(old.data, int) \
            or not isinstance(new.data, int):
        return old.data == new.data  # a whole-file chunk, a symlink's target
    return old_snap.content_key(old) == new_snap.content_key(new)


def forgets(host: str, new: SnapshotReader, held: Iterable[Held]
            ) -> tuple[list[Forget], dict[Inode, Entry]]:
    """What the kernel must forget of `held` once `last` of `host` shows
    `new`, deepest paths first; and the entry in `new` of each held inode
    that keeps its number."""
    paths = _Paths(new)
    out: list[tuple[int, Forget]] = []
    found: dict[Inode, Entry] = {}
    for h in held:
        try:
            e = paths.entry(h.path)
        except HistfsError:  # a damaged entry: reading it will say so
            e = None
        depth = h.path.count(b"/")
        if e is None or last_inode(host, numbered_path(new, h.path, e),
                                   entries.TYPE_BITS[e.kind]) != h.ino:
            parent_path, _, name = h.path.rpartition(b"/")
            parent = last_inode(host, parent_path, stat.S_IFDIR)
            out.append((depth, ForgetEntry(parent, name)))
            continue
        found[h.ino] = e
        if h.given is None:
            out.append((depth, ForgetInode(h.ino, True)))
            continue
        old_snap, old = h.given
        content = _same_content(old_snap, old, new, e)
        if not content or not _same_attributes(old, e):
            out.append((depth, ForgetInode(h.ino, not content)))
    out.sort(key=lambda item: -item[0])
    return [f for _, f in out], found
