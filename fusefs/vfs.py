"""What the repository looks like as a file system, without FUSE.

Plain synchronous code: lookups, attributes, listings, extended attributes
and byte ranges, addressed by inode number. The pyfuse3 adapter
(`fusefs.operations`) only translates types and errors, so most of the
behaviour is tested without a kernel.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from fusefs.inodes import (
    ROOT_INODE,
    Inode,
    entry_inode,
    host_inode,
    is_virtual,
    last_inode,
    split_entry_inode,
)
from fusefs.snapshot_table import Listing, SnapshotTable
from index.errors import ConfigError, PathNotFound, RepositoryCorrupt
from index.names import (
    LAST,
    check_host,
    is_snapshot_name,
    safe_name,
    snapshot_sort_key,
    snapshot_time,
)
from index.repository import Repository, SnapshotRef
from index.snapshot_reader import SnapshotReader
from index.types import ROOT_ID, ChunkId, ChunkLocation, Entry, EntryId, Kind

log = logging.getLogger("histfs.mount")

LONG_TIMEOUT = 24 * 3600.0
"""Inside a dated directory nothing ever changes."""
SHORT_TIMEOUT = 1.0
"""Host and snapshot lists, and `last`, move."""

_TYPE_BITS = {
    Kind.REGULAR: stat.S_IFREG, Kind.DIRECTORY: stat.S_IFDIR, Kind.SYMLINK: stat.S_IFLNK,
    Kind.FIFO: stat.S_IFIFO, Kind.CHAR_DEVICE: stat.S_IFCHR, Kind.BLOCK_DEVICE: stat.S_IFBLK,
}


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


class NodeKind(Enum):
    """What an inode stands for."""

    ROOT = 1
    HOST = 2
    ENTRY = 3
    LAST = 4


@dataclass(frozen=True, slots=True)
class Node:
    """An inode resolved: a host directory, an entry of a snapshot, or a path
    under `last` (resolved against the newest snapshot at each use)."""

    kind: NodeKind
    host: str = ""
    ref: SnapshotRef | None = None
    entry_id: int = 0
    path: bytes = b""


@dataclass(frozen=True, slots=True)
class Piece:
    """Part of a read: `length` zeros, or bytes [lo, hi) of a chunk."""

    length: int
    chunk: tuple[ChunkId, ChunkLocation] | None = None
    lo: int = 0


@dataclass
class OpenFile:
    """An open regular file: which snapshot entry it reads."""

    ref: SnapshotRef
    entry: Entry
    path: bytes | None
    keep_cache: bool


class Vfs:
    """The mount's tree. Not thread-safe except `read_pieces` consumers."""

    def __init__(self, repo: Repository, host: str | None = None,
                 last_symlink: bool = False, list_ttl: float = 2.0) -> None:
        self.repo = repo
        self.single_host = host
        self.last_symlink = last_symlink
        self.table = SnapshotTable(repo, host, ttl=list_ttl)
        # Under `last`: host and path of each inode the kernel knows, and the
        # snapshot and entry it last resolved to (reused while that snapshot
        # is still the newest, so most requests skip the path walk).
        self._last_nodes: dict[Inode, tuple[str, bytes, SnapshotRef | None, int]] = {}
        self._last_lookups: dict[Inode, int] = {}
        self._last_content: dict[Inode, tuple[object, ...]] = {}
        self._lock = threading.Lock()

    # -- resolving inodes ------------------------------------------------

    def node(self, ino: int) -> Node:
        """What inode `ino` stands for; FsError(ENOENT) if it is gone."""
        if ino == ROOT_INODE:
            return Node(NodeKind.ROOT, self.single_host or "")
        listing = self.table.listing()
        if is_virtual(ino):
            # Paths under `last` are the common case: a dict lookup, no hashing.
            found = self._last_nodes.get(Inode(ino))
            if found is not None:
                return Node(NodeKind.LAST, found[0], found[2], found[3], found[1])
            for host in listing.hosts:
                if host_inode(host) == ino and not self.single_host:
                    return Node(NodeKind.HOST, host)
                if ino == self._last_root_inode(host):
                    return Node(NodeKind.LAST, host)
            raise FsError(errno.ENOENT)
        key, inode_id = split_entry_inode(ino)
        ref = listing.refs.get(key) or self.table.listing(fresh=True).refs.get(key)
        if ref is None:
            raise FsError(errno.ENOENT, "snapshot no longer exists")
        return Node(NodeKind.ENTRY, ref.host, ref, inode_id)

    def _last_root_inode(self, host: str) -> Inode:
        kind = stat.S_IFLNK if self.last_symlink else stat.S_IFDIR
        return last_inode(host, b"", kind)

    def _latest(self, host: str) -> SnapshotRef:
        ref = self.table.listing().latest(host)
        if ref is None:
            raise FsError(errno.ENOENT, f"no snapshot of {host}")
        return ref

    def _resolve_last(self, node: Node, pinned: SnapshotRef | None = None
                      ) -> tuple[SnapshotRef, SnapshotReader, Entry]:
        ref = pinned if pinned is not None and pinned in self.table.listing().keys \
            else self._latest(node.host)
        snap = self.table.reader(ref)
        if node.ref == ref and node.entry_id:
            return ref, snap, snap.entry(EntryId(node.entry_id))
        try:
            return ref, snap, snap.resolve(node.path) if node.path else snap.root()
        except PathNotFound:
            raise FsError(errno.ENOENT, "no longer under last") from None

    def _entry(self, node: Node, pinned: SnapshotRef | None = None
               ) -> tuple[SnapshotRef, SnapshotReader, Entry]:
        if node.kind == NodeKind.LAST:
            return self._resolve_last(node, pinned)
        assert node.ref is not None
        snap = self.table.reader(node.ref)
        try:
            return node.ref, snap, snap.entry(EntryId(node.entry_id))
        except PathNotFound:
            raise FsError(errno.ENOENT) from None

    # -- attributes -----------------------------------------------------

    def _virtual_dir_attr(self, ino: Inode, listing: Listing, host: str | None) -> Attr:
        refs = listing.by_host.get(host, []) if host else [
            r for rs in listing.by_host.values() for r in rs]
        newest = max((snapshot_time(r.name).timestamp() for r in refs), default=0.0)
        ns = int(newest * 1e9)
        nlink = 2 + (len(refs) + (1 if refs and not self.last_symlink else 0) if host
                     else len(listing.hosts))
        return Attr(ino, stat.S_IFDIR | 0o555, nlink, 0, 0, 0, 0, 0, ns, ns, ns, SHORT_TIMEOUT)

    def _entry_attr(self, ino: Inode, e: Entry, timeout: float) -> Attr:
        blocks = (e.stored_bytes + 511) // 512 if e.kind == Kind.REGULAR else 0
        return Attr(ino, _TYPE_BITS[e.kind] | e.mode, e.nlink, e.uid, e.gid, e.rdev, e.size,
                    blocks, e.atime_ns, e.mtime_ns, e.ctime_ns, timeout)

    @staticmethod
    def _dated_dir_attr(ino: Inode, ref: SnapshotRef) -> Attr:
        # From the name alone: listing a host with thousands of snapshots
        # opens none of them. nlink 1 means "subdirectories not counted".
        # The short timeout lets a pruned snapshot disappear.
        ns = int(snapshot_time(ref.name).timestamp()) * 1_000_000_000
        return Attr(ino, stat.S_IFDIR | 0o555, 1, 0, 0, 0, 0, 0, ns, ns, ns, SHORT_TIMEOUT)

    def _last_link_attr(self, host: str) -> Attr:
        target = self._latest(host).name.encode()
        ns = int(snapshot_time(target.decode()).timestamp() * 1e9)
        return Attr(self._last_root_inode(host), stat.S_IFLNK | 0o777, 1, 0, 0, 0, len(target),
                    0, ns, ns, ns, SHORT_TIMEOUT)

    def getattr(self, ino: int) -> Attr:
        """Attributes of `ino`."""
        node = self.node(ino)
        if node.kind == NodeKind.ROOT:
            listing = self.table.listing()
            return self._virtual_dir_attr(ROOT_INODE, listing, self.single_host)
        if node.kind == NodeKind.HOST:
            return self._virtual_dir_attr(Inode(ino), self.table.listing(), node.host)
        if node.kind == NodeKind.LAST and not node.path:
            if self.last_symlink:
                return self._last_link_attr(node.host)
            # Exactly the dated directory it shows, but for the inode number
            # (and it opens no snapshot, so a host listing never does).
            return self._dated_dir_attr(Inode(ino), self._latest(node.host))
        if node.kind == NodeKind.ENTRY and node.entry_id == ROOT_ID:
            assert node.ref is not None
            return self._dated_dir_attr(Inode(ino), node.ref)
        entry = self._entry(node)[2]
        if node.kind == NodeKind.LAST:
            return self._entry_attr(Inode(ino), entry, SHORT_TIMEOUT)
        return self._entry_attr(Inode(ino), entry, LONG_TIMEOUT)

    # -- names ----------------------------------------------------------

    def _host_children(self, host: str, listing: Listing | None = None
                       ) -> list[tuple[bytes, Inode]]:
        listing = listing or self.table.listing()
        children = [(r.name.encode(), entry_inode(listing.keys[r], ROOT_ID))
                    for r in listing.by_host.get(host, [])]
        if children:
            children.append((LAST.encode(), self._last_root_inode(host)))
        return children

    def _root_children(self, listing: Listing | None = None) -> list[tuple[bytes, Inode]]:
        if self.single_host:
            return self._host_children(self.single_host, listing)
        return [(h.encode(), host_inode(h)) for h in (listing or self.table.listing()).hosts]

    def _child_of(self, node: Node, name: bytes, listing: Listing | None = None
                  ) -> Inode | None:
        """The inode of `name` in the root or a host directory, if listed."""
        children = self._root_children(listing) if node.kind == NodeKind.ROOT else \
            self._host_children(node.host, listing)
        return next((ino for child_name, ino in children if child_name == name), None)

    def _may_be_new(self, node: Node, name: bytes) -> bool:
        """Whether `name` could be a snapshot (or, at the root, a host) that
        was published since the list was read."""
        try:
            text = name.decode()
        except UnicodeDecodeError:
            return False
        if node.kind == NodeKind.HOST or self.single_host:
            return is_snapshot_name(text)
        try:
            check_host(text)
        except ConfigError:
            return False
        return True

    def lookup(self, parent: int, name: bytes) -> Attr:
        """The attributes of `name` in directory `parent` (FsError ENOENT)."""
        node = self.node(parent)
        if node.kind in (NodeKind.ROOT, NodeKind.HOST):
            ino = self._child_of(node, name)
            if ino is None and self._may_be_new(node, name):
                # A post-backup hook looks up the path it was given at once:
                # the list may be older than that snapshot. Reading it again
                # also moves `last`. ENOENT is not cached by the kernel (an
                # error reply, not a negative entry), so a name that appears
                # later is looked up again.
                ino = self._child_of(node, name, self.table.listing(fresh=True))
            if ino is None:
                raise FsError(errno.ENOENT)
            if name == LAST.encode() and node.host:
                self._remember_last(ino, node.host, b"")
            return self.getattr(ino)
        ref, snap, entry = self._entry(node)
        if entry.kind != Kind.DIRECTORY:
            raise FsError(errno.ENOTDIR)
        child_id = snap.lookup(entry.entry_id, name)
        if child_id is None:
            raise FsError(errno.ENOENT)
        child = snap.entry(child_id)
        if node.kind == NodeKind.LAST:
            path = node.path + b"/" + name if node.path else name
            ino = self._last_child_inode(node.host, snap, path, child)
            self._remember_last(ino, node.host, path, ref, child_id)
            return self._entry_attr(ino, child, SHORT_TIMEOUT)
        key = self.table.listing().keys[ref]
        return self._entry_attr(entry_inode(key, child.inode_id), child, LONG_TIMEOUT)

    def _last_child_inode(self, host: str, snap: SnapshotReader, path: bytes,
                          child: Entry) -> Inode:
        if child.inode_id != child.entry_id:
            # A hard link: number it by the path of its first link, like its siblings.
            path = snap.path_of(child.inode_id)
        return last_inode(host, path, _TYPE_BITS[child.kind])

    def _remember_last(self, ino: Inode, host: str, path: bytes,
                       ref: SnapshotRef | None = None, entry_id: int = 0) -> None:
        with self._lock:
            self._last_nodes[ino] = (host, path, ref, entry_id)
            self._last_lookups[ino] = self._last_lookups.get(ino, 0) + 1

    def forget(self, ino: int, count: int) -> None:
        """The kernel dropped `count` references to `ino`."""
        with self._lock:
            left = self._last_lookups.get(Inode(ino), 0) - count
            if left > 0:
                self._last_lookups[Inode(ino)] = left
            else:
                self._last_lookups.pop(Inode(ino), None)
                self._last_nodes.pop(Inode(ino), None)
                self._last_content.pop(Inode(ino), None)

    def opendir(self, ino: int) -> SnapshotRef | None:
        """The snapshot a listing of `ino` must stick to: under `last`, the
        one that was newest when the directory was opened, so that a backup
        finishing mid-listing neither repeats nor skips names."""
        node = self.node(ino)
        if node.kind == NodeKind.LAST and not (self.last_symlink and not node.path):
            return self._latest(node.host)
        return None

    def readdir(self, ino: int, start: int, pinned: SnapshotRef | None = None
                ) -> Iterator[tuple[bytes, Attr, int]]:
        """(name, attributes, next offset) after offset `start`.

        Offsets stay meaningful when the lists change: in a dated directory
        an entry's id (ids grow with names), under `last` the same within
        the `pinned` snapshot (see `opendir`), among snapshots the snapshot
        time, among hosts the position.
        """
        node = self.node(ino)
        if node.kind == NodeKind.ROOT and not self.single_host:
            for i, (name, host_ino) in enumerate(self._root_children()):
                if i + 1 > start:
                    yield name, self.getattr(host_ino), i + 1
            return
        if node.kind in (NodeKind.ROOT, NodeKind.HOST):
            for name, snap_ino in self._host_children(node.host):
                off = _snapshot_offset(name)
                if off > start:
                    if name == LAST.encode():
                        self._remember_last(snap_ino, node.host, b"")
                    yield name, self.getattr(snap_ino), off
            return
        ref, snap, entry = self._entry(node, pinned)
        if entry.kind != Kind.DIRECTORY:
            raise FsError(errno.ENOTDIR)
        after = snap.entry(EntryId(start)).name if start > entry.entry_id else None
        key = self.table.listing().keys.get(ref, 0)
        for name, child_id in snap.children(entry.entry_id, after):
            # A hostile or damaged index must not make the kernel list "..",
            # a name with "/", or stop the whole listing at one bad entry.
            if not safe_name(name):
                log.error("%s/%s: unsafe name %r in the index; not listed",
                          ref.host, ref.name, name)
                continue
            try:
                child = snap.entry(child_id)
            except RepositoryCorrupt as exc:
                log.error("%s/%s: %s; not listed", ref.host, ref.name, exc)
                continue
            if node.kind == NodeKind.LAST:
                path = node.path + b"/" + name if node.path else name
                child_ino = self._last_child_inode(node.host, snap, path, child)
                self._remember_last(child_ino, node.host, path, ref, child_id)
                attr = self._entry_attr(child_ino, child, SHORT_TIMEOUT)
            else:
                attr = self._entry_attr(entry_inode(key, child.inode_id), child, LONG_TIMEOUT)
            yield name, attr, child_id

    # -- contents -------------------------------------------------------

    def readlink(self, ino: int) -> bytes:
        """The target of a symlink."""
        node = self.node(ino)
        if node.kind == NodeKind.LAST and not node.path and self.last_symlink:
            return self._latest(node.host).name.encode()
        if node.kind in (NodeKind.ROOT, NodeKind.HOST):
            raise FsError(errno.EINVAL)
        _, _, entry = self._entry(node)
        if entry.kind != Kind.SYMLINK or not isinstance(entry.data, bytes):
            raise FsError(errno.EINVAL)
        return entry.data

    def _xattrs(self, ino: int) -> dict[bytes, bytes]:
        node = self.node(ino)
        if node.kind in (NodeKind.ROOT, NodeKind.HOST) or (
                node.kind == NodeKind.LAST and not node.path and self.last_symlink):
            return {}
        _, _, entry = self._entry(node)
        return dict(entry.xattrs)

    def listxattr(self, ino: int) -> list[bytes]:
        """Names of the stored extended attributes (ACLs included)."""
        return list(self._xattrs(ino))

    def getxattr(self, ino: int, name: bytes) -> bytes:
        """One extended attribute; FsError(ENODATA) if absent."""
        try:
            return self._xattrs(ino)[name]
        except KeyError:
            raise FsError(errno.ENODATA) from None

    def open(self, ino: int) -> OpenFile:
        """Open a regular file for reading."""
        node = self.node(ino)
        if node.kind in (NodeKind.ROOT, NodeKind.HOST):
            raise FsError(errno.EISDIR)
        ref, snap, entry = self._entry(node)
        if entry.kind == Kind.DIRECTORY:
            raise FsError(errno.EISDIR)
        if entry.kind != Kind.REGULAR:
            raise FsError(errno.ENXIO)
        self.table.warm(ref)
        if node.kind != NodeKind.LAST:
            # The path is only needed for error messages: found then (`file_path`).
            return OpenFile(ref, entry, None, keep_cache=True)
        # Under `last` an inode shows other content once a newer snapshot
        # arrives: the kernel keeps its cached pages only while the content
        # is the one they were read from.
        content = snap.content_key(entry)
        with self._lock:
            same = self._last_content.get(Inode(ino)) == content
            self._last_content[Inode(ino)] = content
        return OpenFile(ref, entry, node.path, keep_cache=same)

    def file_path(self, f: OpenFile) -> bytes:
        """The path of an open file inside its snapshot (for messages)."""
        if f.path is None:
            f.path = self.table.reader(f.ref).path_of(f.entry.entry_id)
        return f.path

    def read_pieces(self, f: OpenFile, offset: int, size: int) -> list[Piece]:
        """What a read of [offset, offset+size) is made of (event loop thread)."""
        entry = f.entry
        end = min(entry.size, offset + size)
        if offset >= end:
            return []
        snap = self.table.reader(f.ref)
        pieces: list[Piece] = []
        pos = offset
        for ext in snap.extents(entry, offset, end - offset):
            lo, hi = max(pos, ext.offset), min(end, ext.offset + ext.length)
            if lo >= hi:
                continue
            if ext.chunk_id is None:
                pieces.append(Piece(hi - lo))
            else:
                loc = snap.location(ext.chunk_id)
                pieces.append(Piece(hi - lo, (ext.chunk_id, loc), lo - ext.offset))
            pos = hi
        if pos < end:
            pieces.append(Piece(end - pos))
        return pieces

    def read(self, pieces: list[Piece]) -> bytes:
        """Assemble a read (any thread): decode chunks, fill holes with zeros."""
        chunks = [p.chunk for p in pieces if p.chunk is not None]
        decoded = iter(self.repo.chunk_store.read_many(chunks))
        out: list[bytes] = []
        for p in pieces:
            if p.chunk is None:
                out.append(bytes(p.length))
            else:
                data = next(decoded)
                out.append(data[p.lo : p.lo + p.length])
        return b"".join(out)

    def read_now(self, pieces: list[Piece]) -> bytes | None:
        """`read` if it needs neither the disk nor a large decode, else None."""
        store = self.repo.chunk_store
        out: list[bytes] = []
        for p in pieces:
            if p.chunk is None:
                out.append(bytes(p.length))
            else:
                data = store.read_cached(*p.chunk)
                if data is None:
                    return None
                out.append(data[p.lo : p.lo + p.length])
        return b"".join(out)

    def statfs(self) -> os.statvfs_result:
        """The repository file system's figures (a read-only mount has no free space)."""
        return os.statvfs(self.repo.local_root or self.repo.cache_dir())

    def close(self) -> None:
        """Release open snapshot indexes and pack files."""
        self.table.close()
        self.repo.close()


def _snapshot_offset(name: bytes) -> int:
    """A readdir offset that orders snapshot names by time and puts `last` last."""
    text = name.decode()
    if text == LAST:
        return 1 << 62
    suffix = snapshot_sort_key(text)[1]
    seconds = int(snapshot_time(text).timestamp())
    return (seconds << 16) + min(suffix, 0xFFFF) + 1


__all__ = ["Attr", "FsError", "Node", "NodeKind", "OpenFile", "Piece", "Vfs"]
