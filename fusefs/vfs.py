"""What the repository looks like as a file system, without FUSE.

Plain synchronous code: lookups, attributes, listings, extended attributes
and byte ranges, addressed by inode number. The pyfuse3 adapter
(`fusefs.operations`) only translates types and errors, so most of the
behaviour is tested without a kernel.

Each request resolves its inode once, by the inode number's form, to a node
of one kind and the view that answers for that kind: the root and host
directories (`fusefs.dirs`), the dated directories (`fusefs.dated`) and
`last` (`fusefs.last`).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

from fusefs import neighbours
from fusefs.dated import DatedEntry, DatedView
from fusefs.dirs import DirNode, DirsView, HostDir, HostsDir
from fusefs.inodes import ROOT_INODE, Inode, host_inode, is_virtual
from fusefs.last import LastNode, LastView
from fusefs.last_moves import Forget
from fusefs.prefill import Candidate
from fusefs.snapshot_table import SnapshotTable
from fusefs.view import Attr, FsError, OpenFile, Resolved
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_reader import Piece, assemble

_HOSTS = HostsDir()

AnyResolved = Resolved[DirNode] | Resolved[DatedEntry] | Resolved[LastNode]
"""An inode resolved to a node of any kind, with its view."""


class Vfs:
    """The mount's tree. Not thread-safe except `read` and `read_now`."""

    def __init__(self, repo: Repository, host: str | None = None,
                 last_symlink: bool = False, list_ttl: float = 2.0) -> None:
        self.repo = repo
        self.single_host = host
        self.table = SnapshotTable(repo, host, ttl=list_ttl)
        self.last = LastView(self.table, last_symlink)
        self.dated = DatedView(self.table)
        self.dirs = DirsView(self.table, self.last)

    def resolve(self, ino: int) -> AnyResolved:
        """What inode `ino` stands for; FsError(ENOENT) if it is gone."""
        if ino == ROOT_INODE:
            root: DirNode = HostDir(self.single_host) if self.single_host else _HOSTS
            return Resolved(ROOT_INODE, root, self.dirs)
        listing = self.table.listing()
        if not is_virtual(ino):
            return Resolved(Inode(ino), self.dated.node(ino, listing), self.dated)
        known = self.last.known(ino)
        if known is not None:
            return Resolved(Inode(ino), known, self.last)
        for host in listing.hosts:
            if host_inode(host) == ino and not self.single_host:
                host_dir: DirNode = HostDir(host)
                return Resolved(Inode(ino), host_dir, self.dirs)
            if ino == self.last.root_inode(host):
                return Resolved(Inode(ino), LastNode(host, b""), self.last)
        raise FsError(errno.ENOENT)

    def getattr(self, ino: int) -> Attr:
        """Attributes of `ino`."""
        return self.resolve(ino).attr()

    def lookup(self, parent: int, name: bytes) -> Attr:
        """The attributes of `name` in directory `parent` (FsError ENOENT)."""
        return self.resolve(parent).lookup(name)

    def forget(self, ino: int, count: int) -> None:
        """The kernel dropped `count` references to `ino`."""
        self.last.forget(ino, count)

    def under_last(self, ino: int) -> bool:
        """Whether `ino` is a `last` or below one."""
        if not is_virtual(ino):
            return False
        if self.last.known(ino) is not None:
            return True
        return any(ino == self.last.root_inode(h) for h in self.table.listing().hosts)

    def last_moved(self) -> bool:
        """Whether the snapshot list has a newer snapshot than `last` shows."""
        return self.last.moved(self.table.listing())

    def follow_last_steps(self) -> Iterator[list[Forget]]:
        """Move `last` to the newest snapshots: what the kernel must forget
        for that, in parts between which other requests may be answered
        (`LastView.follow`). Reads the snapshot list (when older than its
        TTL) only while the kernel holds paths under `last`: otherwise
        `last` moves at the next request."""
        return self.last.follow() if self.last.holds_paths() else iter(())

    def follow_last(self) -> list[Forget]:
        """`follow_last_steps` at once."""
        return [f for step in self.follow_last_steps() for f in step]

    def opendir(self, ino: int) -> SnapshotRef | None:
        """The snapshot a listing of `ino` must stick to: under `last`, the
        one that was newest when the directory was opened, so that a backup
        finishing mid-listing neither repeats nor skips names."""
        return self.resolve(ino).opendir()

    def readdir(self, ino: int, start: int, pinned: SnapshotRef | None = None
                ) -> Iterator[tuple[bytes, Attr, int]]:
        """(name, attributes, next offset) after offset `start`.

        Offsets stay meaningful when the lists change: in a dated directory
        an entry's id (ids grow with names), under `last` the same within
        the `pinned` snapshot (see `opendir`), among snapshots the snapshot
        time, among hosts the position.
        """
        return self.resolve(ino).readdir(start, pinned)

    def readlink(self, ino: int) -> bytes:
        """The target of a symlink."""
        return self.resolve(ino).readlink()

    def listxattr(self, ino: int) -> list[bytes]:
        """Names of the stored extended attributes (ACLs included)."""
        return list(self.resolve(ino).xattrs())

    def getxattr(self, ino: int, name: bytes) -> bytes:
        """One extended attribute; FsError(ENODATA) if absent."""
        try:
            return self.resolve(ino).xattrs()[name]
        except KeyError:
            raise FsError(errno.ENODATA) from None

    def open(self, ino: int) -> OpenFile:
        """Open a regular file for reading."""
        return self.resolve(ino).open()

    def neighbours(self, ino: int, f: OpenFile) -> tuple[object, Iterator[Candidate]] | None:
        """The directory of file `ino` (just opened as `f`) as a key, and the
        small files beside it (see `fusefs.prefill`)."""
        r = self.resolve(ino)
        if isinstance(r.node, DatedEntry):
            return neighbours.dated(self.table, r.node, f)
        if isinstance(r.node, LastNode) and r.node.path:
            return neighbours.last(self.last, r.node, f)
        return None

    def file_path(self, f: OpenFile) -> bytes:
        """The path of an open file inside its snapshot (for messages)."""
        if f.path is None:
            f.path = self.table.reader(f.ref).path_of(f.entry.entry_id)
        return f.path

    def read_pieces(self, f: OpenFile, offset: int, size: int) -> list[Piece]:
        """What a read of [offset, offset+size) is made of (event loop thread)."""
        if offset >= f.entry.size:
            return []  # the kernel's read at the end: no need for the reader
        return self.table.reader(f.ref).pieces(f.entry, offset, size)

    def read(self, pieces: list[Piece]) -> bytes:
        """Assemble a read (any thread): decode chunks, fill holes with zeros."""
        # All at once: neighbours in a pack are read with one system call.
        decoded = iter(self.repo.chunk_store.read_many(
            [p.chunk for p in pieces if p.chunk is not None]))
        data = assemble(pieces, lambda cid, loc: next(decoded))
        assert data is not None  # read_many waits for every chunk
        return data

    def read_now(self, pieces: list[Piece]) -> bytes | None:
        """`read` if it needs neither the disk nor a large decode, else None."""
        return assemble(pieces, self.repo.chunk_store.read_cached)

    def statfs(self) -> os.statvfs_result:
        """The repository file system's figures (a read-only mount has no free space)."""
        return os.statvfs(self.repo.local_root or self.repo.cache.path)

    def close(self) -> None:
        """Release open snapshot indexes and pack files."""
        self.table.close()
        self.repo.close()


__all__ = ["Attr", "FsError", "OpenFile", "Piece", "Vfs"]
