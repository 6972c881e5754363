"""Finding the right day: the versions of one path, and what changed
between two snapshots (from stored chunk ids, never from file data)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import lmdb

from index.errors import PathNotFound, RepositoryCorrupt, SnapshotDamaged, SnapshotNotFound
from index.format.types import Entry, EntryId, Kind
from index.model.repository import Repository
from index.model.snapshot_reader import SnapshotReader


@dataclass(frozen=True)
class Version:
    """A path as one snapshot has it."""

    snapshot: str
    kind: Kind
    size: int
    mtime_ns: int
    changed: bool
    """Its content differs from the previous snapshot that had the path."""


def versions(repo: Repository, host: str, path: bytes,
             damaged: Callable[[SnapshotDamaged], None] | None = None) -> list[Version]:
    """The snapshots of `host` that hold `path`, oldest first. A snapshot
    whose index cannot be read is left out and passed to `damaged` (without
    it, raised); "changed" then compares with the previous readable one."""
    found: list[Version] = []
    previous: tuple[object, ...] | None = None
    for ref in repo.snapshots(host):
        try:
            with repo.open_snapshot(ref) as snap:
                try:
                    entry = snap.resolve(path)
                except PathNotFound:
                    continue
                key = (entry.kind, snap.content_key(entry))
        except SnapshotNotFound:
            continue  # pruned meanwhile
        except (RepositoryCorrupt, lmdb.Error) as exc:
            if damaged is None:
                raise
            damaged(exc if isinstance(exc, SnapshotDamaged)
                    else SnapshotDamaged(ref.host, ref.name, str(exc)))
            continue
        found.append(Version(ref.name, entry.kind, entry.size, entry.mtime_ns, key != previous))
        previous = key
    return found


def _meta(e: Entry) -> tuple[object, ...]:
    # Directory mtimes change with their contents: only their own metadata counts.
    mtime = None if e.kind == Kind.DIRECTORY else e.mtime_ns
    return (e.mode, e.uid, e.gid, mtime, e.xattrs)


def diff(a: SnapshotReader, b: SnapshotReader) -> Iterator[tuple[str, bytes]]:
    """(status, path) for every difference, in path order; status is
    "added", "removed", "changed" (content or type) or "meta"."""
    yield from _diff_dirs(a, a.root().entry_id, b, b.root().entry_id, b"")


def _all(snap: SnapshotReader, entry_id: EntryId, prefix: bytes, status: str
         ) -> Iterator[tuple[str, bytes]]:
    for name, child_id in snap.children(entry_id):
        path = prefix + name
        yield status, path
        if snap.entry(child_id).kind == Kind.DIRECTORY:
            yield from _all(snap, child_id, path + b"/", status)


def _diff_dirs(a: SnapshotReader, a_id: EntryId, b: SnapshotReader, b_id: EntryId,
               prefix: bytes) -> Iterator[tuple[str, bytes]]:
    left = dict(a.children(a_id))
    right = dict(b.children(b_id))
    for name in sorted(left.keys() | right.keys()):
        path = prefix + name
        if name not in right:
            yield "removed", path
            if a.entry(left[name]).kind == Kind.DIRECTORY:
                yield from _all(a, left[name], path + b"/", "removed")
            continue
        if name not in left:
            yield "added", path
            if b.entry(right[name]).kind == Kind.DIRECTORY:
                yield from _all(b, right[name], path + b"/", "added")
            continue
        ea, eb = a.entry(left[name]), b.entry(right[name])
        if ea.kind != eb.kind:
            yield "removed", path
            if ea.kind == Kind.DIRECTORY:
                yield from _all(a, ea.entry_id, path + b"/", "removed")
            yield "added", path
            if eb.kind == Kind.DIRECTORY:
                yield from _all(b, eb.entry_id, path + b"/", "added")
            continue
        if ea.kind == Kind.DIRECTORY:
            if _meta(ea) != _meta(eb):
                yield "meta", path
            yield from _diff_dirs(a, ea.entry_id, b, eb.entry_id, path + b"/")
        elif a.content_key(ea) != b.content_key(eb):
            yield "changed", path
        elif _meta(ea) != _meta(eb):
            yield "meta", path
