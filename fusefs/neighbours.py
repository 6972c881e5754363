"""The small files beside an opened file, as `fusefs.prefill` pushes them:
in a dated directory and under `last`."""

from __future__ import annotations

import itertools
import stat
from collections.abc import Iterator

from fusefs.dated import DatedEntry
from fusefs.inodes import entry_inode, last_inode
from fusefs.last import LastNode, LastView
from fusefs.prefill import SMALL, Candidate
from fusefs.snapshot_table import SnapshotTable
from fusefs.view import OpenFile
from index.errors import HistfsError
from index.format.types import Entry, EntryId, Kind
from index.model.repository import SnapshotRef
from index.model.snapshot_reader import Piece

_PAGE = 64


def small_files(table: SnapshotTable, ref: SnapshotRef, parent_id: EntryId
                ) -> Iterator[tuple[bytes, Entry]]:
    """The regular files of at most `SMALL` bytes in directory `parent_id`,
    in listing order. A page of names at a time, each in its own index
    transaction: the iterator may live across requests."""
    after: bytes | None = None
    while True:
        snap = table.reader(ref)
        names = snap.children(parent_id, after)
        page = list(itertools.islice(names, _PAGE))
        del names  # ends its transaction now (the generator is finalised)
        # Decoded before the first yield: the reader may be closed (and
        # another opened) while the caller holds this iterator.
        found = []
        for name, child_id in page:
            try:
                e = snap.entry(child_id)
            except HistfsError:  # listing it reports it
                continue
            if e.kind == Kind.REGULAR and 0 < e.size <= SMALL:
                found.append((name, e))
        del snap
        yield from found
        if len(page) < _PAGE:
            return
        after = page[-1][0]


def dated(table: SnapshotTable, node: DatedEntry, f: OpenFile
          ) -> tuple[object, Iterator[Candidate]]:
    """The directory of a file of a dated directory and its small files."""
    def pieces(e: Entry) -> list[Piece]:
        return table.reader(node.ref).pieces(e, 0, e.size)

    files = (Candidate(entry_inode(node.key, e.inode_id), e.size,
                       lambda e=e: pieces(e), lambda: True)  # type: ignore[misc]
             for _, e in small_files(table, node.ref, f.entry.parent_id))
    return ("dated", node.ref, f.entry.parent_id), files


def last(view: LastView, node: LastNode, f: OpenFile) -> tuple[object, Iterator[Candidate]]:
    """The directory of a file under `last` and its small files (hard links
    left out: their numbers follow their first link's path)."""
    parent = node.path.rpartition(b"/")[0]

    def candidates() -> Iterator[Candidate]:
        for name, e in small_files(view.table, f.ref, f.entry.parent_id):
            if e.inode_id != e.entry_id:
                continue
            path = parent + b"/" + name if parent else name
            ino = last_inode(node.host, path, stat.S_IFREG)
            yield Candidate(ino, e.size, lambda ino=ino, e=e: planned(ino, e),  # type: ignore[misc]
                            lambda ino=ino, e=e: unchanged(ino, e))  # type: ignore[misc]

    def planned(ino: int, e: Entry) -> list[Piece] | None:
        """The file's pieces, once the mount noted that the kernel may keep
        this content for the inode (None if it holds another)."""
        snap = view.table.reader(f.ref)
        if not view.keep(ino, snap.content_key(e)):
            return None
        return snap.pieces(e, 0, e.size)

    def unchanged(ino: int, e: Entry) -> bool:
        return view.kept(ino, view.table.reader(f.ref).content_key(e))

    return ("last", node.host, f.ref, f.entry.parent_id), candidates()
