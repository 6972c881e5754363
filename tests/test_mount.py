"""The mount shows exactly what was backed up, to the tools admins use."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from index.model.repository import Repository
from tests.conftest import Mount, backup_json
from tests.trees import GIB, make_awkward_tree, source_state


@pytest.fixture(scope="module")
def awkward(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("awkward") / "src"
    make_awkward_tree(root, huge=False)
    return root


def _without_ctime(state: dict[bytes, tuple[object, ...]]) -> dict[bytes, tuple[object, ...]]:
    # Copies get a new ctime (no tool can set it); everything else must match.
    return {k: v[:6] + v[7:] for k, v in state.items()}


def _snapshot_dir(mount: Mount) -> Path:
    (host,) = os.listdir(mount.path)
    names = sorted(os.listdir(mount.path / host))
    assert names[-1] == "last"
    return mount.path / host / names[-2]


def test_stat_through_the_mount_equals_the_source(
        repo: Repository, awkward: Path, mount_repo: Callable[..., Mount]) -> None:
    backup_json(repo.root, f"mail={awkward}")
    m = mount_repo(repo.root)
    snap = _snapshot_dir(m)
    assert source_state(snap / "mail") == source_state(awkward)
    assert source_state(m.path / "mx1" / "last" / "mail") == source_state(awkward)


@pytest.mark.parametrize("tool", ["cp", "rsync", "tar"])
def test_copy_out_of_the_mount(repo: Repository, awkward: Path, tmp_path: Path,
                               mount_repo: Callable[..., Mount], tool: str) -> None:
    backup_json(repo.root, f"mail={awkward}")
    m = mount_repo(repo.root)
    src = _snapshot_dir(m) / "mail"
    out = tmp_path / "restored"
    if tool == "cp":
        subprocess.run(["cp", "-a", str(src), str(out)], check=True)
    elif tool == "rsync":
        subprocess.run(["rsync", "-aHAXS", "--numeric-ids", f"{src}/", f"{out}/"], check=True)
    else:
        archive = tmp_path / "a.tar"
        subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner",
                        "-S", "-C", str(src), "-cf", str(archive), "."], check=True)
        out.mkdir()
        subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--acls", "--numeric-owner",
                        "-C", str(out), "-xpf", str(archive)], check=True)
        os.utime(out, ns=(os.stat(awkward).st_atime_ns, os.stat(awkward).st_mtime_ns))
    assert _without_ctime(source_state(out)) == _without_ctime(source_state(awkward))
    # Hard links stay hard links.
    assert os.stat(out / "hard-a").st_ino == os.stat(out / "dir with spaces" / "hard-c").st_ino
    # Sparse files stay sparse (st_blocks through the mount reflects stored data).
    assert os.stat(out / "sparse").st_blocks * 512 < 2 * 1024 * 1024


def test_inode_numbers_and_links(repo: Repository, awkward: Path,
                                 mount_repo: Callable[..., Mount]) -> None:
    backup_json(repo.root, f"mail={awkward}")
    m = mount_repo(repo.root)
    snap = _snapshot_dir(m) / "mail"
    a, b, c = (os.stat(p) for p in (snap / "hard-a", snap / "hard-b",
                                    snap / "dir with spaces" / "hard-c"))
    assert a.st_ino == b.st_ino == c.st_ino and a.st_nlink == 3
    inos = {}
    for dirpath, _, _ in os.walk(snap):
        with os.scandir(dirpath) as it:
            for de in it:
                st = os.lstat(de.path)
                assert de.inode() == st.st_ino, de.path
                inos.setdefault(st.st_ino, set()).add(de.path)
    # Only hard links share a number.
    assert [sorted(v) for v in inos.values() if len(v) > 1] == [sorted(
        str(p) for p in (snap / "dir with spaces" / "hard-c", snap / "hard-a", snap / "hard-b"))]
    assert os.stat(snap / "plain.txt").st_blocks == 1
    assert os.statvfs(m.path).f_namemax == 255


def test_large_sparse_file_reads_exactly(repo: Repository, tmp_path: Path,
                                         mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    tail = os.urandom(3_000_000)
    with open(src / "huge", "wb") as f:
        f.write(b"start")
        f.seek(5 * GIB - 1_000_000)
        f.write(tail)
    backup_json(repo.root, f"d={src}")
    m = mount_repo(repo.root)
    path = _snapshot_dir(m) / "d" / "huge"
    st = os.stat(path)
    assert st.st_size == 5 * GIB + 2_000_000
    assert st.st_blocks * 512 < 10 * 1024 * 1024
    with open(path, "rb") as f:
        assert f.read(5) == b"start"
        for off in (4 * GIB - 3, 4 * GIB, 5 * GIB - 1_000_000 - 2):
            f.seek(off)
            expect = (b"\0" * 10 + tail)[max(0, off - (5 * GIB - 1_000_010)):][:16] \
                if off > 5 * GIB - 1_000_010 else b"\0" * 16
            assert f.read(16) == expect
        f.seek(5 * GIB + 2_000_000 - 4)
        assert f.read(100) == tail[-4:]
        assert f.read(100) == b""


def test_writes_fail_with_erofs(repo: Repository, awkward: Path,
                                mount_repo: Callable[..., Mount]) -> None:
    backup_json(repo.root, f"mail={awkward}")
    m = mount_repo(repo.root)
    target = _snapshot_dir(m) / "mail" / "plain.txt"
    for call in (lambda: os.open(target, os.O_WRONLY | os.O_APPEND),
                 lambda: os.truncate(target, 0),
                 lambda: os.chmod(target, 0o600), lambda: os.mkdir(target.parent / "x"),
                 lambda: shutil.copy(target, target.parent / "copy")):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EROFS


def test_damaged_data_gives_eio_for_that_file_only(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "victim").write_bytes(os.urandom(2_000_000))
    backup_json(repo.root, f"d={src}")
    (src / "other").write_bytes(b"fine\n")
    backup_json(repo.root, f"d={src}")
    packs = sorted((repo.root / "packs").rglob("*"), key=lambda p: p.stat().st_size
                   if p.is_file() else 0)
    big = packs[-1]
    data = bytearray(big.read_bytes())
    data[len(data) // 2] ^= 0xFF
    big.chmod(0o644)
    big.write_bytes(bytes(data))
    m = mount_repo(repo.root)
    last = m.path / "mx1" / "last" / "d"
    with pytest.raises(OSError) as info:
        (last / "victim").read_bytes()
    assert info.value.errno == errno.EIO
    assert (last / "other").read_bytes() == b"fine\n"
    assert "d/victim" in m.log.read_text()
    assert os.listdir(m.path / "mx1")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(repo: Repository, tmp_path: Path,
                                 mount_repo: Callable[..., Mount], sig: int) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    backup_json(repo.root, f"d={src}")
    m = mount_repo(repo.root)
    assert m.proc is not None
    m.proc.send_signal(sig)
    assert m.proc.wait(timeout=20) == 0
    assert not os.path.ismount(m.path)
    assert os.listdir(m.path) == []


def test_debug_logs_requests(repo: Repository, tmp_path: Path,
                             mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    backup_json(repo.root, f"d={src}")
    m = mount_repo(repo.root, "--debug")
    assert (m.path / "mx1" / "last" / "d" / "f").read_text() == "x"
    log = m.log.read_text()
    assert "lookup(" in log and "read(fh=" in log
