"""Unchanged files keep their records: a backup of a tree that did not
change writes the same entries, extents and chunks as the one before, also
when files move between directories while it runs; the chunk ids of a new
index are sorted on disk beyond a bound."""

from __future__ import annotations

import os
import random
from dataclasses import replace
from pathlib import Path

import pytest

from index.format.types import ChunkId, Kind
from index.model.chunk_id_runs import ChunkIdRuns
from index.model.repository import Repository
from index.model.snapshot_reader import SnapshotReader
from tests.conftest import backup_json
from tests.trees import make_awkward_tree
from writer.backup import run_backup
from writer.parts import Part
from writer.walk import Walker


def _records(snap: SnapshotReader) -> list[tuple[object, ...]]:
    """Every entry but the root (whose times are the backup's), with its
    extents, and the chunk table; the access times of directories and
    symlinks, which listing and reading them changed, left out."""
    rows: list[tuple[object, ...]] = [
        (e if e.kind == Kind.REGULAR else replace(e, atime_ns=0), tuple(snap.extents(e)))
        for e in snap.entries() if e.entry_id != 1]
    return [*rows, *sorted(snap.chunk_ids())]


def test_an_unchanged_tree_gets_the_same_records(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_awkward_tree(src)
    (src / "big").write_bytes(random.Random(1).randbytes(3 << 20))  # several chunks
    backup_json(repo.root, f"mail={src}")
    summary = backup_json(repo.root, f"mail={src}")
    assert summary["files_new"] == summary["files_changed"] == summary["bytes_read"] == 0
    first, second = repo.snapshots("mx1")
    with repo.open_snapshot(first) as a, repo.open_snapshot(second) as b:
        assert _records(a) == _records(b)
        assert b.extents(b.resolve("mail/big"))[1].offset > 0


def test_changed_files_are_read_and_access_times_are_current(repo: Repository,
                                                             tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    for i in range(50):
        (src / "d" / f"m{i:02d}").write_bytes(b"message %d\n" % i)
    backup_json(repo.root, f"mail={src}")
    with open(src / "d" / "m10", "ab") as f:
        f.write(b"more\n")
    (src / "d" / "m20").read_bytes()
    summary = backup_json(repo.root, f"mail={src}")
    assert (summary["files_changed"], summary["files_unchanged"]) == (1, 49)
    with repo.open_snapshot(repo.snapshots("mx1")[-1]) as snap:
        assert snap.read(snap.resolve("mail/d/m10"), 0, 100) == b"message 10\nmore\n"
        for name in ("m10", "m20", "m30"):
            e = snap.resolve(f"mail/d/{name}")
            st = os.lstat(src / "d" / name)
            assert (e.atime_ns, e.mtime_ns, e.size, e.nlink, e.inode_id) == (
                st.st_atime_ns, st.st_mtime_ns, st.st_size, 1, e.entry_id)
        names = [n for n, _ in snap.children(snap.resolve("mail/d").entry_id)]
        ids = [i for _, i in snap.children(snap.resolve("mail/d").entry_id)]
        assert names == sorted(names) and ids == sorted(ids) and len(ids) == 50


def test_a_file_moved_into_a_listed_directory_is_kept_once(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cur/ is carried over as runs of unchanged files; a message moved
    from new/ into it after it was listed is found by the rescan, between
    the names of a run, and is in the snapshot once."""
    src = tmp_path / "src"
    for box in ("cur", "new"):
        (src / box).mkdir(parents=True)
    for i in range(0, 40, 2):
        (src / "cur" / f"{i:03d}").write_bytes(b"old %d\n" % i)
    (src / "new" / "011").write_bytes(b"new 11\n")
    backup_json(repo.root, f"mail={src}")
    original = Walker.scan_dir

    def scan_then_move(self: Walker, d, only_new):  # type: ignore[no-untyped-def]
        result = original(self, d, only_new)
        if d.path.endswith(b"/cur") and (src / "new" / "011").exists():
            os.rename(src / "new" / "011", src / "cur" / "011")
        return result

    monkeypatch.setattr(Walker, "scan_dir", scan_then_move)
    result = run_backup(repo, "mx1", [Part("mail", src)])
    assert result.exit_status == 0, result.stats.warnings
    assert not (src / "new" / "011").exists()
    assert (result.stats.files_new, result.stats.files_unchanged) == (1, 20)
    with repo.open_snapshot(repo.snapshots("mx1")[-1]) as snap:
        cur = snap.resolve("mail/cur")
        listed = list(snap.children(cur.entry_id))
        assert [n for n, _ in listed] == sorted(
            [b"%03d" % i for i in range(0, 40, 2)] + [b"011"])
        assert [i for _, i in listed] == sorted(i for _, i in listed)
        assert list(snap.children(snap.resolve("mail/new").entry_id)) == []
        assert snap.read(snap.resolve("mail/cur/011"), 0, 100) == b"new 11\n"
        assert all(snap.entry(i).kind == Kind.REGULAR for _, i in listed)


def test_chunk_ids_come_back_sorted_and_once(tmp_path: Path) -> None:
    rng = random.Random(2)
    ids = [ChunkId(rng.randbytes(32)) for _ in range(500)]
    runs = ChunkIdRuns(tmp_path / "ids", in_memory=64)
    for cid in ids + ids[::3]:
        runs.add(cid)
    assert (tmp_path / "ids").exists()
    assert list(runs.sorted()) == sorted(set(ids))
    runs.close()
    assert not (tmp_path / "ids").exists()
