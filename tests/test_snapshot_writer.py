"""The one writer of snapshot indexes, and its editor of chunk ids and places."""

from __future__ import annotations

from pathlib import Path

import pytest

from index.errors import MissingChunk
from index.format.snapshot_format import SNAPSHOTS_DIR
from index.format.types import (
    ROOT_ID,
    ChunkId,
    ChunkLocation,
    Entry,
    EntryId,
    Extent,
    Kind,
    PackId,
)
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_editor import SnapshotEditor
from index.model.snapshot_writer import SnapshotWriter

A, B, C = (ChunkId(bytes([n]) * 32) for n in (1, 2, 3))
PACK = PackId(b"\xaa" * 32)
PLACES = {A: ChunkLocation(PACK, 0, 10, 100), B: ChunkLocation(PACK, 10, 10, 50),
          C: ChunkLocation(PACK, 20, 10, 30)}


def _entry(eid: int, parent: int, name: bytes, kind: Kind, size: int = 0,
           data: bytes | int | None = None, inode_id: int | None = None) -> Entry:
    return Entry(EntryId(eid), EntryId(parent), name, kind, 0o644, 0, 0, size, 1, 2, 3,
                 1 if kind != Kind.DIRECTORY else 2, 0, EntryId(inode_id or eid), size, data,
                 (), 1000 + eid)


def _write(repo: Repository, ref: SnapshotRef) -> None:
    """root/{one: one chunk, two: two chunks and a hole, link: a hard link to one}."""
    with SnapshotWriter(repo.cache.work_file("index"), 1 << 16) as out:
        one = [Extent(0, 100, A)]
        two = [Extent(0, 50, B), Extent(50, 20, None), Extent(70, 30, C)]
        for eid, name, extents, inode in ((2, b"link", one, 3), (3, b"one", one, 3),
                                          (4, b"two", two, 4)):
            out.put_dirent(ROOT_ID, name, EntryId(eid))
            data = out.put_extents(EntryId(eid), 100, extents)
            out.put_entry(_entry(eid, 1, name, Kind.REGULAR, 100, data, inode))
        out.put_entry(_entry(1, 0, b"", Kind.DIRECTORY))
        assert out.put_locations(lambda ids: {c: PLACES[c] for c in ids}) == 3
        write = out.finish({"host": ref.host, "name": ref.name})
        repo.storage.makedirs(f"{SNAPSHOTS_DIR}/{ref.host}")
        repo.indexes.publish(ref.relpath, write)


def test_written_index_reads_back(repo: Repository) -> None:
    ref = SnapshotRef("mx1", "2026-01-01T000000Z")
    _write(repo, ref)
    with repo.open_snapshot(ref) as snap:
        assert snap.meta["entries"] == 3 and snap.meta["chunks"] == 3
        # The hard link's content counts once.
        assert snap.meta["logical_bytes"] == 200 and snap.meta["version"] == 1
        assert snap.resolve("one").data == A
        two = snap.resolve("two")
        assert two.data == 3
        assert snap.extents(two) == [Extent(0, 50, B), Extent(50, 20, None), Extent(70, 30, C)]
        assert dict(snap.chunk_ids()) == PLACES


def test_a_chunk_without_a_place_is_refused(repo: Repository) -> None:
    with SnapshotWriter(repo.cache.work_file("index"), 1 << 16) as out:
        out.put_extents(EntryId(2), 100, [Extent(0, 100, A)])
        with pytest.raises(MissingChunk):
            out.put_locations(lambda ids: {})


def test_editor_renames_chunks_and_moves_places(repo: Repository, tmp_path: Path) -> None:
    ref = SnapshotRef("mx1", "2026-01-01T000000Z")
    _write(repo, ref)
    new_a, new_b = ChunkId(b"\x0a" * 32), ChunkId(b"\x0b" * 32)
    elsewhere = ChunkLocation(PackId(b"\xbb" * 32), 0, 10, 30)
    with SnapshotEditor(repo, ref, repo.cache.work_file("index")) as editor:
        assert dict(editor.locations()) == PLACES
        editor.replace_locations({new_a: PLACES[A], new_b: PLACES[B], C: PLACES[C]})
        editor.rename_chunks({A: new_a, B: new_b})
        editor.update_locations({C: elsewhere})
        repo.indexes.publish(ref.relpath, editor.finish())
    with repo.open_snapshot(ref) as snap:
        assert snap.resolve("one").data == new_a and snap.resolve("link").data == new_a
        assert [e.chunk_id for e in snap.extents(snap.resolve("two"))] == [new_b, None, C]
        assert dict(snap.chunk_ids()) == {new_a: PLACES[A], new_b: PLACES[B], C: elsewhere}
        assert snap.resolve("two").xattrs == () and snap.resolve("one").source_ino == 1003
    assert not list(repo.cache.path.glob("index-*.lmdb*"))
