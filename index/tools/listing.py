"""Looking inside snapshots without mounting them: the entries of one
directory (`histfs ls`), and the paths matching a pattern across snapshots
(`histfs find`). Both read the snapshot indexes only, never file data."""

from __future__ import annotations

import fnmatch
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import lmdb

from index.errors import RepositoryCorrupt, SnapshotDamaged, SnapshotNotFound
from index.format.types import ROOT_ID, Entry, EntryId, Kind
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_reader import SnapshotReader

_TYPE_BITS = {
    Kind.REGULAR: stat.S_IFREG, Kind.DIRECTORY: stat.S_IFDIR, Kind.SYMLINK: stat.S_IFLNK,
    Kind.FIFO: stat.S_IFIFO, Kind.CHAR_DEVICE: stat.S_IFCHR, Kind.BLOCK_DEVICE: stat.S_IFBLK,
}


def mode_text(entry: Entry) -> str:
    """The entry's type and permissions as `ls -l` shows them (drwxr-x---)."""
    return stat.filemode(_TYPE_BITS[entry.kind] | entry.mode)


def list_path(snap: SnapshotReader, path: bytes) -> list[tuple[bytes, Entry]]:
    """What `ls` shows of `path` ("part/dir", b"" for the root): a
    directory's entries, sorted by name, else the entry itself; each with
    its path from the snapshot's root. Raises PathNotFound."""
    clean = b"/".join(p for p in path.split(b"/") if p and p != b".")
    entry = snap.resolve(clean)
    if entry.kind != Kind.DIRECTORY:
        return [(clean, entry)]
    prefix = clean + b"/" if clean else b""
    return [(prefix + name, snap.entry(child)) for name, child in snap.listing(entry.entry_id)]


@dataclass(frozen=True, slots=True)
class Match:
    """A path of one snapshot that matched the pattern of `find`."""

    ref: SnapshotRef
    path: bytes
    entry: Entry


def matcher(pattern: bytes) -> Callable[[bytes, bytes], bool]:
    """A test of (path, name) for a shell pattern (`*`, `?`, `[...]`): a
    pattern with a slash is matched against the whole path from the
    snapshot's root ("mail/*/cur/*"), one without against the name alone,
    as restic's find does."""
    pattern = pattern.strip(b"/")
    if b"/" in pattern:
        return lambda path, name: fnmatch.fnmatchcase(path, pattern)
    return lambda path, name: fnmatch.fnmatchcase(name, pattern)


def find(repo: Repository, host: str | None, matches: Callable[[bytes, bytes], bool],
         damaged: Callable[[SnapshotDamaged], None]) -> Iterator[Match]:
    """The entries matching `matches` in every snapshot of `host` (default:
    of every host), snapshot by snapshot, oldest first, each snapshot's in
    path order. A snapshot whose index cannot be read is passed to
    `damaged` and left out; one pruned meanwhile is left out."""
    for ref in repo.snapshots(host):
        found: list[Match] = []
        try:
            with repo.open_snapshot(ref) as snap:
                found = [Match(ref, path, entry) for path, entry in _walk(snap)
                         if matches(path, entry.name)]
        except SnapshotNotFound:
            continue
        except (RepositoryCorrupt, lmdb.Error) as exc:
            damaged(exc if isinstance(exc, SnapshotDamaged)
                    else SnapshotDamaged(ref.host, ref.name, str(exc)))
            continue
        yield from sorted(found, key=lambda m: m.path.split(b"/"))


def _walk(snap: SnapshotReader) -> Iterator[tuple[bytes, Entry]]:
    """Every entry with its path, read in one pass over the entries table:
    ids are given depth first, so a directory normally comes before what it
    holds (else its path is looked up)."""
    dirs: dict[EntryId, bytes] = {ROOT_ID: b""}
    for entry in snap.entries():
        if entry.entry_id == ROOT_ID:
            continue
        parent = dirs.get(entry.parent_id)
        path = (parent + entry.name if parent is not None
                else snap.path_of(entry.entry_id))
        if entry.kind == Kind.DIRECTORY:
            dirs[entry.entry_id] = path + b"/"
        yield path, entry
