"""A tree with every awkward kind of file goes in and comes back equal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from index.format.types import Kind
from index.model.repository import Repository
from tests.conftest import backup_json
from tests.trees import GIB, make_awkward_tree, snapshot_state, source_state


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("awkward") / "src"
    make_awkward_tree(root)
    return root


def test_roundtrip_everything(repo: Repository, awkward: Path) -> None:
    summary = backup_json(repo.root, f"mail={awkward}")
    assert summary["exit_status"] == 0, summary["warnings"]
    (ref,) = repo.snapshots("mx1")
    with repo.open_snapshot(ref) as snap:
        assert snapshot_state(snap, "mail") == source_state(awkward)
        part = snap.resolve("mail")
        src = os.lstat(awkward)
        assert (part.mode, part.mtime_ns, part.ctime_ns) == (
            src.st_mode & 0o7777, src.st_mtime_ns, src.st_ctime_ns)


def test_hard_links_share_an_inode(repo: Repository, awkward: Path) -> None:
    backup_json(repo.root, f"mail={awkward}")
    with repo.open_snapshot(repo.snapshots()[0]) as snap:
        links = [snap.resolve(p) for p in
                 ("mail/hard-a", "mail/hard-b", "mail/dir with spaces/hard-c")]
        assert len({e.inode_id for e in links}) == 1
        assert {e.nlink for e in links} == {3}
        assert links[0].inode_id == min(e.entry_id for e in links)
        plain = snap.resolve("mail/plain.txt")
        assert plain.nlink == 1 and plain.inode_id == plain.entry_id
        # A directory counts itself, its parent's entry and its subdirectories.
        assert snap.resolve("mail/dir with spaces").nlink == 2
        assert snap.resolve("mail").nlink == 2 + sum(
            1 for p in awkward.iterdir() if p.is_dir() and not p.is_symlink())


def test_sparse_files_store_no_holes(repo: Repository, awkward: Path) -> None:
    summary = backup_json(repo.root, f"mail={awkward}")
    # The 5 GiB file is almost all hole: far less than a GiB is read or added.
    assert int(summary["bytes_read"]) < 100 * 1024 * 1024  # type: ignore[call-overload]
    with repo.open_snapshot(repo.snapshots()[0]) as snap:
        huge = snap.resolve("mail/huge")
        assert huge.size == 5 * GIB + 2_000_000
        assert huge.stored_bytes < 10 * 1024 * 1024
        holes = [x for x in snap.extents(huge) if x.chunk_id is None]
        assert holes and sum(x.length for x in holes) > 4 * GIB
        # Reads across the 4 GiB boundary and at the end are exact.
        assert snap.read(huge, 4 * GIB - 2, 4) == b"\0" * 4
        assert snap.read(huge, 0, 5) == b"start"
        with open(awkward / "huge", "rb") as f:
            f.seek(5 * GIB - 10)
            assert snap.read(huge, 5 * GIB - 10, 100) == f.read(100)
        assert snap.read(huge, huge.size - 1, 10) == b"\0"
        assert snap.read(huge, huge.size, 10) == b""


def test_kinds_and_devices(repo: Repository, awkward: Path) -> None:
    backup_json(repo.root, f"mail={awkward}")
    with repo.open_snapshot(repo.snapshots()[0]) as snap:
        assert snap.resolve("mail/fifo").kind == Kind.FIFO
        chardev = snap.resolve("mail/chardev")
        assert chardev.kind == Kind.CHAR_DEVICE and chardev.rdev == os.makedev(1, 3)
        assert snap.resolve("mail/blockdev").kind == Kind.BLOCK_DEVICE
        assert snap.resolve(b"mail/link-bytes").data == b"\xe9\xff-target"
        acl = dict(snap.resolve("mail/acl").xattrs)
        assert b"system.posix_acl_access" in acl
        assert b"system.posix_acl_default" in dict(snap.resolve("mail/sticky").xattrs)


def test_sockets_are_skipped_with_a_note(repo: Repository, tmp_path: Path) -> None:
    import socket

    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("x")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(src / "sock"))
    try:
        summary = backup_json(repo.root, f"mail={src}")
    finally:
        sock.close()
    assert summary["exit_status"] == 0
    assert summary["skipped"] == 1
    with repo.open_snapshot(repo.snapshots()[0]) as snap:
        assert [n for n, _ in snap.children(snap.resolve("mail").entry_id)] == [b"file"]


def test_entry_ids_are_deterministic(repo: Repository, awkward: Path) -> None:
    backup_json(repo.root, f"mail={awkward}")
    backup_json(repo.root, f"mail={awkward}")
    first, second = repo.snapshots()
    with repo.open_snapshot(first) as a, repo.open_snapshot(second) as b:
        ids_a = [(p, e.entry_id, e.inode_id) for p, e in a.walk()]
        ids_b = [(p, e.entry_id, e.inode_id) for p, e in b.walk()]
    assert ids_a == ids_b
    # Depth-first, names sorted bytewise: ids grow along the walk.
    assert [i for _, i, _ in ids_a] == sorted(i for _, i, _ in ids_a)


def test_listing_resumes_from_any_name(repo: Repository, awkward: Path) -> None:
    backup_json(repo.root, f"mail={awkward}")
    with repo.open_snapshot(repo.snapshots()[0]) as snap:
        part = snap.resolve("mail").entry_id
        names = [n for n, _ in snap.children(part)]
        assert names == sorted(names) and len(names) > 20
        for i, name in enumerate(names):
            assert [n for n, _ in snap.children(part, after=name)] == names[i + 1:]
