"""Turning a finished staging area into a snapshot index.

Entry ids are assigned in staging key order (depth first, names sorted), so
the same tree always gets the same ids. The records go to a
`SnapshotWriter`; `publish` makes the finished index visible by one rename:
the commit point of a backup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from index.format.snapshot_format import SNAPSHOTS_DIR
from index.format.types import ROOT_ID, Entry, EntryId, Kind
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_writer import Locate, SnapshotWriter, WriteIndex
from writer.staging import SEP, Carried, StagedEntry, StagedItems, Staging, link_key


@dataclass
class _OpenDir:
    key: bytes
    entry_id: EntryId
    parent_id: EntryId
    name: bytes
    staged: StagedEntry
    subdirs: int = 0


@dataclass
class BuildResult:
    """What the staging area held that the index could not take, and counts."""

    orphans: list[bytes] = field(default_factory=list)
    unreadable_links: list[bytes] = field(default_factory=list)
    part_files: dict[bytes, int] = field(default_factory=dict)
    """Entries other than directories below each top-level name (part)."""


def _entry(eid: EntryId, parent: EntryId, name: bytes, s: StagedEntry, nlink: int,
           inode_id: EntryId, data: bytes | int | None) -> Entry:
    return Entry(
        entry_id=eid, parent_id=parent, name=name, kind=s.kind, mode=s.mode,
        uid=s.uid, gid=s.gid, size=s.size, mtime_ns=s.mtime_ns, ctime_ns=s.ctime_ns,
        atime_ns=s.atime_ns, nlink=nlink, rdev=s.rdev, inode_id=inode_id,
        stored_bytes=s.stored_bytes, data=data, xattrs=tuple(s.xattrs),
        source_ino=s.source_ino,
    )


class IndexBuilder:
    """Writes one snapshot's index from a staging area."""

    def __init__(self, writer: SnapshotWriter, root: StagedEntry) -> None:
        """`root` is the snapshot's root directory."""
        self._out = writer
        self._root = root

    def build(self, staging: Staging, locate: Locate, meta: dict[str, Any],
              complete: Callable[[BuildResult], dict[str, Any]] | None = None
              ) -> WriteIndex:
        """Write every staged record, its chunks' places (found by `locate`)
        and `meta`; `complete`, given what the staging area held, returns
        keys to add to `meta`. Returns what writes the finished index."""
        result = BuildResult()
        with staging.items() as src:
            self._entries(src, result)
        self._out.put_locations(locate)
        extra = complete(result) if complete is not None else {}
        return self._out.finish({**meta, **extra})

    def _entries(self, src: StagedItems, result: BuildResult) -> None:
        out = self._out
        next_id = ROOT_ID + 1
        stack = [_OpenDir(b"", ROOT_ID, EntryId(0), b"", self._root)]
        for raw_key, raw in src.cursor():
            key = bytes(raw_key)
            comps = key.split(SEP)
            while len(stack) > len(comps):
                self._close_dir(stack.pop())
            parent = stack[-1]
            if len(stack) != len(comps) or parent.key != key.rpartition(SEP)[0]:
                result.orphans.append(key)
                continue
            if Carried.is_carried(raw):
                # Unchanged since the previous snapshot: records as they were.
                files = Carried.decode(raw, comps[-1])
                for name, file in files:
                    eid = EntryId(next_id)
                    next_id += 1
                    out.put_dirent(parent.entry_id, name, eid)
                    out.put_carried(eid, parent.entry_id, file)
                result.part_files[comps[0]] = result.part_files.get(comps[0], 0) + len(files)
                continue
            s = StagedEntry.decode(raw)
            if s.link_owner is not None:
                owner = _staged(src, s.link_owner)
                if owner is None:
                    # The path it shares content with could not be
                    # read: this link has no content to show either.
                    result.unreadable_links.append(key)
                    continue
                s.size, s.stored_bytes, s.extents = (
                    owner.size, owner.stored_bytes, owner.extents)
            eid = EntryId(next_id)
            next_id += 1
            name = comps[-1]
            out.put_dirent(parent.entry_id, name, eid)
            if s.kind == Kind.DIRECTORY:
                parent.subdirs += 1
                stack.append(_OpenDir(key, eid, parent.entry_id, name, s))
                continue
            result.part_files[comps[0]] = result.part_files.get(comps[0], 0) + 1
            nlink, inode_id = 1, eid
            if s.link_group is not None:
                nlink = src.link_count(s.link_group)
                inode_id = out.link_inode(link_key(s.link_group), eid)
            data: bytes | int | None = None
            if s.kind == Kind.SYMLINK:
                data = s.data
            elif s.kind == Kind.REGULAR:
                data = out.put_extents(eid, s.size, s.extents)
            out.put_entry(_entry(eid, parent.entry_id, name, s, nlink, inode_id, data))
        while stack:
            self._close_dir(stack.pop())

    def _close_dir(self, d: _OpenDir) -> None:
        self._out.put_entry(_entry(d.entry_id, d.parent_id, d.name, d.staged,
                                   2 + d.subdirs, d.entry_id, None))


def publish(repo: Repository, ref: SnapshotRef, write: WriteIndex) -> None:
    """Make the index that `write` writes snapshot `ref`: the commit point.
    The caller holds the host's lock and chose a free name."""
    storage = repo.storage
    with storage.writing("writing the snapshot index"):
        storage.makedirs(f"{SNAPSHOTS_DIR}/{ref.host}")
        repo.indexes.publish(ref.relpath, write)


def _staged(txn: StagedItems, key: bytes) -> StagedEntry | None:
    """A staged record read inside an open staging transaction."""
    raw = txn.get(key)
    return None if raw is None else StagedEntry.decode(raw)
