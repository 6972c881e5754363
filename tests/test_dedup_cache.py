"""The local deduplication cache is never trusted over the repository.

Two repositories with the same id (a `cp -a` copy, one of them then
damaged) are backed up from one machine with one cache directory, through
the real `histfs` command line:

- a pack truncated in one copy (same name, another size) is not reused: the
  backup stores its chunks again and its snapshot is whole;
- a backup of the other copy while a backup of the first is running cannot
  make the running one name packs its repository lacks (each copy has a
  cache of its own);
- a pack deleted behind the cache's back is stored again;
- a repository moved to another path still backs up and checks sound (its
  cache is rebuilt).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from index.format.pack import pack_relpath
from index.model.repository import Repository
from index.model.snapshot_reader import SnapshotReader
from index.store.local_storage import LocalStorage
from index.store.packs import list_packs
from tests.conftest import histfs, plain_index, reap

HOST = "mx1"
BIG = os.urandom(400_000)


def _backup(repo: Path, src: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = histfs("backup", "--repo", str(repo), "--host", HOST, "--json", f"d={src}",
                  env=env, check=0)
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


def _check(repo: Path) -> dict[str, Any]:
    proc = histfs("check", "--repo", str(repo), "--json")
    assert proc.returncode in (0, 1) and "Traceback" not in proc.stderr, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def _pack_of_big(repo: Path, snapshot: str) -> Path:
    r = Repository.open(repo)
    try:
        with r.open_snapshot(next(s for s in r.snapshots(HOST) if s.name == snapshot)) as snap:
            entry = snap.resolve("d/big.bin")
            (first, *_) = snap.extents(entry)
            assert first.chunk_id is not None
            return repo / pack_relpath(snap.location(first.chunk_id).pack_id)
    finally:
        r.close()


def _packs_named_by(repo: Path, snapshot: str) -> set[str]:
    path = repo / "snapshots" / HOST / f"{snapshot}.idx"
    with plain_index(path) as plain, SnapshotReader(plain) as snap:
        return {loc.pack_id.hex() for _, loc in snap.chunk_ids()}


@pytest.fixture
def copies(tmp_path: Path) -> tuple[Path, Path, Path, str]:
    """Repository A with one backup, and B, a `cp -a` copy of it."""
    a, b, src = tmp_path / "a", tmp_path / "b", tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(BIG)
    (src / "small.txt").write_text("hello\n")
    histfs("init", "--encryption", "none", str(a), check=0)
    first = str(_backup(a, src)["snapshot"])
    subprocess.run(["cp", "-a", str(a), str(b)], check=True)
    return a, b, src, first


@pytest.mark.timeout(180)
def test_a_pack_truncated_in_one_copy_is_not_reused(
        copies: tuple[Path, Path, Path, str]) -> None:
    a, b, src, first = copies
    pack = _pack_of_big(a, first)
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.truncate(pack.stat().st_size // 2)
    (src / "new.txt").write_text("new mail\n")
    # Both copies backed up from the same cache directory, one after the other.
    in_a = _backup(a, src)
    in_b = _backup(b, src)
    assert in_a["bytes_added"] >= len(BIG)
    assert in_b["bytes_added"] < 1000
    report = _check(b)
    assert report["sound"] is True, report
    report = _check(a)
    assert set(report["damaged"]) == {f"{HOST}/{first}"}, report
    out = a.parent / "restored"
    histfs("restore", "--repo", str(a), "--host", HOST, str(in_a["snapshot"]),
           "--target", str(out), check=0)
    assert (out / "d" / "big.bin").read_bytes() == BIG


@pytest.mark.timeout(180)
def test_a_backup_of_the_copy_cannot_redirect_a_running_backup(
        copies: tuple[Path, Path, Path, str], tmp_path: Path) -> None:
    a, b, src, first = copies
    _pack_of_big(a, first).unlink()  # A loses a pack; B, the copy, still has it
    (src / "new.txt").write_text("new mail\n")
    gate = tmp_path / "gate"
    gate.mkdir()
    # A's backup stores big.bin again, then waits before writing its index.
    running = subprocess.Popen(
        [sys.executable, "-m", "histfs", "backup", "--repo", str(a), "--host", HOST,
         "--json", f"d={src}"],
        env={**os.environ, "HISTFS_TEST_PAUSE_AT": f"before-index:{gate}"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (gate / "before-index.reached").exists():
            assert running.poll() is None and time.monotonic() < deadline, running.stderr
            time.sleep(0.05)
        # Meanwhile the copy is backed up from the same cache directory.
        _backup(b, src)
        (gate / "before-index.go").touch()
        out, err = running.communicate(timeout=60)
    finally:
        reap(running)
    assert running.returncode == 0, err
    new = json.loads(out)["snapshot"]
    present = {p.hex() for p in list_packs(LocalStorage(a))}
    assert _packs_named_by(a, new) <= present
    report = _check(a)
    assert set(report["damaged"]) == {f"{HOST}/{first}"}, report
    assert _check(b)["sound"] is True
    # Each copy has its own cache, in the directory of their common id.
    ra, rb = Repository.open(a), Repository.open(b)
    assert ra.chunk_cache_path() != rb.chunk_cache_path()
    assert ra.chunk_cache_path().parent == rb.chunk_cache_path().parent
    assert ra.chunk_cache_path().exists() and rb.chunk_cache_path().exists()
    ra.close()
    rb.close()


@pytest.mark.timeout(180)
def test_backups_of_two_copies_leave_each_others_cache_alone(
        copies: tuple[Path, Path, Path, str]) -> None:
    a, b, src, _ = copies
    assert _check(a)["cache"] == "deduplication cache up to date"
    (src / "new.txt").write_text("only in b\n")
    _backup(b, src)
    # A's cache does not know B's new pack, and did not have to forget it.
    assert _check(a)["cache"] == "deduplication cache up to date"


@pytest.mark.timeout(180)
def test_a_pack_deleted_between_two_backups_is_stored_again(
        copies: tuple[Path, Path, Path, str]) -> None:
    a, _, src, first = copies
    _pack_of_big(a, first).unlink()
    second = _backup(a, src)
    assert second["bytes_added"] >= len(BIG)
    # The same chunks may make the same pack again, which heals the first.
    report = _check(a)
    assert set(report["damaged"]) <= {f"{HOST}/{first}"}, report
    out = a.parent / "restored"
    histfs("restore", "--repo", str(a), "--host", HOST, str(second["snapshot"]),
           "--target", str(out), check=0)
    assert (out / "d" / "big.bin").read_bytes() == BIG


@pytest.mark.timeout(180)
def test_a_moved_repository_still_backs_up(copies: tuple[Path, Path, Path, str],
                                           tmp_path: Path) -> None:
    a, b, src, _ = copies
    shutil.rmtree(b)
    moved = tmp_path / "moved"
    before = Repository.open(a).chunk_cache_path()
    a.rename(moved)
    r = Repository.open(moved)
    assert r.chunk_cache_path() != before  # rebuilt, not trusted
    r.close()
    (src / "new.txt").write_text("after the move\n")
    summary = _backup(moved, src)
    assert summary["files_unchanged"] == 2 and summary["bytes_added"] < 1000
    assert _check(moved)["sound"] is True
