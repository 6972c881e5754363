"""`last`: each host's newest snapshot, under numbers that outlive it.

An inode under `last` is numbered from (host, path, file type), so a path
keeps its number from one snapshot to the next, and stands for that path
in whichever snapshot is newest at each request. The mount remembers, per
inode the kernel knows, the path and what it last resolved to: while that
snapshot is still the newest, a request reuses the entry instead of walking
the path again.

`last` shows, per host, the snapshot it moved to last: it moves when the
mount follows the snapshot list (`follow`), which also says what the kernel
must forget of the snapshot shown before (`fusefs.last_moves`). So the
kernel may keep what it learns under `last` as long as in the dated
directories.
"""

from __future__ import annotations

import errno
import itertools
import stat
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from fusefs import entries
from fusefs.inodes import Inode, last_inode
from fusefs.last_moves import Forget, ForgetInode, Paths, check, fingerprint
from fusefs.snapshot_table import Listing, SnapshotTable
from fusefs.view import LONG_TIMEOUT, SHORT_TIMEOUT, Attr, FsError, Listed, OpenFile
from index.errors import PathNotFound
from index.format.names import snapshot_time
from index.format.types import Entry, EntryId, Kind
from index.model.repository import SnapshotRef
from index.model.snapshot_reader import SnapshotReader


@dataclass(slots=True)
class LastNode:
    """`last` itself (path b"") or a path under it, and what the mount
    remembers of it while the kernel holds its inode."""

    host: str
    path: bytes
    ref: SnapshotRef | None = None
    """The snapshot the path was last resolved against …"""
    entry_id: EntryId | None = None
    """… and the entry it found there."""
    lookups: int = 0
    """References the kernel holds (lookups and listings less forgets)."""
    content: tuple[object, ...] | None = None
    """What the file held when last opened (`SnapshotReader.content_key`)."""
    given: int | None = None
    """What the kernel was told of the entry (`last_moves.fingerprint`)."""


_Held = tuple[LastNode, bytes, int | None, tuple[object, ...] | None]
"""A node as checked: itself, its path, what the kernel was told, its pages."""


def _same_held(prev: tuple[_Held, object, object] | None, node: LastNode) -> bool:
    """Whether `node` is still as it was checked (`prev`)."""
    return prev is not None and prev[0][0] is node \
        and prev[0][1:] == (node.path, node.given, node.content)


_BATCH = 1000
"""Paths checked at a time when `last` moves (some 30 ms)."""


class LastView:
    """`last` and everything under it, for every host."""

    def __init__(self, table: SnapshotTable, symlink: bool) -> None:
        self.table = table
        self.symlink = symlink
        """Whether `last` is a symlink to the newest dated directory."""
        self._nodes: dict[Inode, LastNode] = {}
        self._lock = threading.Lock()
        self._shown: dict[str, SnapshotRef] = {}
        """The snapshot `last` shows, per host."""
        self._paths: Counter[str] = Counter()
        """Nodes below `last` (not `last` itself) the kernel holds, per host."""

    def root_inode(self, host: str) -> Inode:
        """The inode of `host`'s `last`."""
        return last_inode(host, b"", stat.S_IFLNK if self.symlink else stat.S_IFDIR)

    def known(self, ino: int) -> LastNode | None:
        """The node of `ino` if the kernel holds it (the common case: a
        dict lookup, no hashing)."""
        return self._nodes.get(Inode(ino))

    def remember(self, ino: Inode, host: str, path: bytes,
                 ref: SnapshotRef | None = None, e: Entry | None = None) -> None:
        """The kernel got `ino` (a lookup or a listing): it stands for `path`,
        found as `e` in `ref`, until it is forgotten as often."""
        given = None if e is None else fingerprint(e)
        with self._lock:
            node = self._nodes.get(ino)
            if node is None:
                node = self._nodes[ino] = LastNode(host, path)
                if path:
                    self._paths[host] += 1
            # Hard links share a number: the path is the one seen last.
            node.path, node.ref = path, ref
            node.entry_id, node.given = (None, None) if e is None else (e.entry_id, given)
            node.lookups += 1

    def forget(self, ino: int, count: int) -> None:
        """The kernel dropped `count` references to `ino`."""
        with self._lock:
            node = self._nodes.get(Inode(ino))
            if node is not None:
                node.lookups -= count
                if node.lookups <= 0:
                    del self._nodes[Inode(ino)]
                    if node.path:
                        self._paths[node.host] -= 1

    def holds_paths(self) -> bool:
        """Whether the kernel holds any path below a `last`."""
        return any(self._paths.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def _latest(self, host: str) -> SnapshotRef:
        """The snapshot `last` shows: the newest, except while the kernel
        holds paths under it that `follow` has not yet checked against the
        newest."""
        shown = self._shown.get(host)
        if shown is None or not self._paths[host]:
            newest = self.table.listing().latest(host)
            if newest is None:
                raise FsError(errno.ENOENT, f"no snapshot of {host}")
            shown = self._shown[host] = newest
        return shown

    def moved(self, listing: Listing) -> bool:
        """Whether `last` of some host shows another snapshot than the newest
        of `listing` (a dictionary lookup a host)."""
        return any(listing.latest(host) != ref for host, ref in self._shown.items())

    def follow(self) -> Iterator[list[Forget]]:
        """Move `last` of every host to its newest snapshot. Yields what the
        kernel must forget for that, in parts: between two, the caller may
        answer other requests (which still see the snapshot shown before);
        after the last, `last` shows the newest (see `fusefs.last_moves`)."""
        listing = self.table.listing()
        for host, shown in list(self._shown.items()):
            newest = listing.latest(host)
            if newest == shown:
                continue
            if newest is None:
                # `last` itself is looked up again within SHORT_TIMEOUT and
                # gone: nothing under it can be reached.
                del self._shown[host]
                continue
            yield from self._move(host, newest)

    def _move(self, host: str, newest: SnapshotRef) -> Iterator[list[Forget]]:
        checked: dict[Inode, tuple[_Held, Forget | None, Entry | None]] = {}
        paths = Paths(self.table.reader(newest))
        for rounds in itertools.count():
            with self._lock:
                # Nodes the kernel got (or got again, otherwise) meanwhile too.
                todo = [(ino, (node, node.path, node.given, node.content))
                        for ino, node in self._nodes.items()
                        if node.host == host and node.path
                        and not _same_held(checked.get(ino), node)]
            last_round = len(todo) <= _BATCH or rounds >= 2
            for i in range(0, len(todo), _BATCH):
                paths.snap = self.table.reader(newest)  # may have been reopened
                for ino, held in todo[i:i + _BATCH]:
                    checked[ino] = (held, *check(host, paths, ino, *held[1:]))
                if not last_round:
                    yield []
            if last_round:
                break
        out: list[tuple[int, Forget]] = []
        with self._lock:
            for ino, (held, forget, e) in checked.items():
                node = self._nodes.get(ino)
                if node is not held[0]:
                    continue  # the kernel forgot it meanwhile
                path = node.path
                node.ref, node.entry_id = (None, None) if e is None else (newest, e.entry_id)
                node.given = None if e is None else fingerprint(e)
                if forget is not None:
                    out.append((path.count(b"/"), forget))
        out.sort(key=lambda item: -item[0])
        if not self.symlink:  # its times are the newest snapshot's
            out.append((0, ForgetInode(self.root_inode(host), False)))
        self._shown[host] = newest
        yield [f for _, f in out]

    def _timeout(self, host: str, ref: SnapshotRef, e: Entry) -> float:
        """How long the kernel may keep an entry under `last`: long, as the
        mount tells it when it changes; short for a hard link (the mount
        knows one of its names only) and for an answer from a snapshot `last`
        no longer shows (a listing begun before it moved)."""
        if e.nlink > 1 and e.kind != Kind.DIRECTORY:
            return SHORT_TIMEOUT
        return LONG_TIMEOUT if self._shown.get(host) == ref else SHORT_TIMEOUT

    def _resolve(self, node: LastNode, pinned: SnapshotRef | None = None
                 ) -> tuple[SnapshotRef, SnapshotReader, Entry]:
        """The entry `node` stands for in the newest snapshot (or in `pinned`,
        while that is still listed)."""
        ref = pinned if pinned is not None and pinned in self.table.listing().keys \
            else self._latest(node.host)
        snap = self.table.reader(ref)
        if node.ref == ref and node.entry_id is not None:
            return ref, snap, snap.entry(node.entry_id)
        try:
            return ref, snap, snap.resolve(node.path) if node.path else snap.root()
        except PathNotFound:
            raise FsError(errno.ENOENT, "no longer under last") from None

    def _is_link(self, node: LastNode) -> bool:
        return self.symlink and not node.path

    def _child(self, node: LastNode, ref: SnapshotRef, snap: SnapshotReader, name: bytes,
               e: Entry) -> Attr:
        """The attributes of child `name` of `node`, remembered."""
        path = node.path + b"/" + name if node.path else name
        # A hard link is numbered by the path of its first link, like its siblings.
        numbered = path if e.inode_id == e.entry_id else snap.path_of(e.inode_id)
        ino = last_inode(node.host, numbered, entries.TYPE_BITS[e.kind])
        self.remember(ino, node.host, path, ref, e)
        return entries.attr(ino, e, self._timeout(node.host, ref, e))

    def attr(self, ino: Inode, node: LastNode) -> Attr:
        """Attributes as in the newest snapshot; `last` itself looks like
        the dated directory it shows (or is a symlink to it)."""
        if node.path:
            ref, _, e = self._resolve(node)
            return entries.attr(ino, e, self._timeout(node.host, ref, e))
        newest = self._latest(node.host)
        if not self.symlink:
            # It opens no snapshot, so a host listing never does.
            return entries.dated_dir_attr(ino, newest)
        target = newest.name.encode()
        ns = int(snapshot_time(newest.name).timestamp() * 1e9)
        return Attr(ino, stat.S_IFLNK | 0o777, 1, 0, 0, 0, len(target), 0, ns, ns, ns,
                    SHORT_TIMEOUT)

    def lookup(self, node: LastNode, name: bytes) -> Attr:
        """Attributes of `name` in a directory of the newest snapshot."""
        ref, snap, entry = self._resolve(node)
        return self._child(node, ref, snap, name, entries.child(snap, entry, name))

    def opendir(self, node: LastNode) -> SnapshotRef | None:
        """The newest snapshot now: a backup finishing mid-listing must make
        the listing neither repeat nor skip names."""
        return None if self._is_link(node) else self._latest(node.host)

    def readdir(self, node: LastNode, start: int, pinned: SnapshotRef | None
                ) -> Iterator[Listed]:
        """The entries after offset `start`, from the `pinned` snapshot."""
        ref, snap, entry = self._resolve(node, pinned)
        for name, e in entries.children(ref, snap, entry, start):
            yield name, self._child(node, ref, snap, name, e), e.entry_id

    def readlink(self, node: LastNode) -> bytes:
        """The target of a symlink; `last` as a symlink names the newest snapshot."""
        if self._is_link(node):
            return self._latest(node.host).name.encode()
        return entries.symlink_target(self._resolve(node)[2])

    def xattrs(self, node: LastNode) -> dict[bytes, bytes]:
        """The extended attributes in the newest snapshot."""
        return {} if self._is_link(node) else dict(self._resolve(node)[2].xattrs)

    def open(self, ino: Inode, node: LastNode) -> OpenFile:
        """Open a file of the newest snapshot, to be read from it to the end."""
        ref, snap, entry = self._resolve(node)
        entries.check_regular(entry)
        self.table.warm(ref)
        # The inode shows other content once a newer snapshot arrives: the
        # kernel keeps its cached pages only while the content is the one
        # they were read from.
        content = snap.content_key(entry)
        with self._lock:
            # No content noted yet: the kernel has no page of this inode
            # (its pages go when it forgets the inode, and so does the node).
            same = node.content is None or node.content == content
            node.content = content
        return OpenFile(ref, entry, node.path, keep_cache=same)

    def keep(self, ino: int, content: tuple[object, ...]) -> bool:
        """Whether the kernel may be given `content` as the pages of `ino`
        (the content noted for it, or none yet: then this one is noted)."""
        with self._lock:
            node = self._nodes.get(Inode(ino))
            if node is None:
                return False
            if node.content is None:
                node.content = content
            return node.content == content

    def kept(self, ino: int, content: tuple[object, ...]) -> bool:
        """Whether `content` is still what the kernel may keep for `ino`."""
        with self._lock:
            node = self._nodes.get(Inode(ino))
            return node is not None and node.content == content
