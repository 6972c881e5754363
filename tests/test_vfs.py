"""The file-system view without a kernel: inodes, listings, `last`, offsets."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import blake3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusefs.inodes import (
    MAX_ENTRY_ID,
    ROOT_INODE,
    Inode,
    entry_inode,
    host_inode,
    is_virtual,
    last_inode,
    next_key,
    snapshot_key,
    split_entry_inode,
)
from fusefs.last_moves import ForgetEntry, ForgetInode
from fusefs.vfs import FsError, Vfs
from fusefs.view import LONG_TIMEOUT, SHORT_TIMEOUT
from index.model.repository import Repository
from tests.conftest import backup_json
from writer.backup import run_backup
from writer.parts import Part

I64_MAX = 2**63 - 1


def _tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def _walk(vfs: Vfs, ino: int, prefix: str = "") -> dict[str, int]:
    found = {}
    for name, attr, _ in vfs.readdir(ino, 0):
        path = prefix + name.decode()
        found[path] = attr.ino
        if stat.S_ISDIR(attr.mode):
            found.update(_walk(vfs, attr.ino, path + "/"))
    return found


@pytest.fixture
def two_snapshots(repo: Repository, tmp_path: Path) -> Repository:
    src = tmp_path / "src"
    _tree(src, {"a/one": b"1", "a/two": b"2", "b": b"bee"})
    run_backup(repo, "mx1", [Part("mail", src)])
    (src / "a" / "two").write_bytes(b"changed")
    (src / "c").write_bytes(b"new")
    run_backup(repo, "mx1", [Part("mail", src)])
    run_backup(repo, "mx2", [Part("mail", src)])
    return repo


def test_layout_and_lookup(two_snapshots: Repository) -> None:
    vfs = Vfs(two_snapshots)
    hosts = [n for n, _, _ in vfs.readdir(ROOT_INODE, 0)]
    assert hosts == [b"mx1", b"mx2"]
    mx1 = vfs.lookup(ROOT_INODE, b"mx1")
    names = [n for n, _, _ in vfs.readdir(mx1.ino, 0)]
    refs = two_snapshots.snapshots("mx1")
    assert names == [r.name.encode() for r in refs] + [b"last"]
    first = vfs.lookup(mx1.ino, refs[0].name.encode())
    assert stat.S_ISDIR(first.mode) and not is_virtual(first.ino)
    two = vfs.lookup(vfs.lookup(vfs.lookup(first.ino, b"mail").ino, b"a").ino, b"two")
    f = vfs.open(two.ino)
    assert vfs.read(vfs.read_pieces(f, 0, 100)) == b"2"
    last_two = vfs.lookup(vfs.lookup(vfs.lookup(vfs.lookup(mx1.ino, b"last").ino, b"mail").ino,
                                     b"a").ino, b"two")
    assert vfs.read(vfs.read_pieces(vfs.open(last_two.ino), 0, 100)) == b"changed"
    # The mount tells the kernel what changed when `last` moves: it may keep
    # what it learns under `last` as long as in a dated directory.
    assert is_virtual(last_two.ino) and last_two.timeout == two.timeout
    # Where a lookup may wait for `last` to move (not below a `last`: the
    # kernel holds that directory's lock, which forgetting a name needs).
    assert vfs.under_last(last_two.ino) and vfs.under_last(vfs.last.root_inode("mx1"))
    assert not vfs.under_last(mx1.ino) and not vfs.under_last(two.ino)
    assert not vfs.under_last(ROOT_INODE)
    with pytest.raises(FsError) as info:
        vfs.lookup(first.ino, b"missing")
    assert info.value.errno == errno.ENOENT
    with pytest.raises(FsError) as info:
        vfs.lookup(two.ino, b"x")
    assert info.value.errno == errno.ENOTDIR


def test_inode_numbers_are_stable_and_distinct(two_snapshots: Repository) -> None:
    a = _walk(Vfs(two_snapshots), ROOT_INODE)
    b = _walk(Vfs(Repository.open(two_snapshots.root)), ROOT_INODE)
    assert a == b
    # No number is shared between two paths (there are no hard links here).
    assert len(set(a.values())) == len(a)
    for path, ino in a.items():
        parts = path.split("/")
        dated = len(parts) > 1 and parts[1] != "last"
        assert is_virtual(ino) != dated, path


def test_last_keeps_inode_numbers_across_snapshots(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, {"a/keep": b"k", "a/edit": b"1"})
    run_backup(repo, "mx1", [Part("mail", src)])
    before = _walk(Vfs(repo), ROOT_INODE)
    (src / "a" / "edit").write_bytes(b"2")
    (src / "a" / "keep").unlink()
    (src / "a" / "keep").mkdir()  # same path, other type: a new number
    run_backup(repo, "mx1", [Part("mail", src)])
    after = _walk(Vfs(repo), ROOT_INODE)
    assert after["mx1/last/mail/a/edit"] == before["mx1/last/mail/a/edit"]
    assert after["mx1/last/mail/a"] == before["mx1/last/mail/a"]
    assert after["mx1/last/mail/a/keep"] != before["mx1/last/mail/a/keep"]
    # The dated directories' own numbers differ from each other and from last.
    dated = [p for p in after if p.endswith("/mail/a/edit")]
    assert len({after[p] for p in dated}) == 3


def test_readdir_resumes_from_any_offset(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, {f"d/{i:04d}": b"x" for i in range(300)})
    run_backup(repo, "mx1", [Part("mail", src)])
    vfs = Vfs(repo)
    for base in ("mx1/last/mail/d", None):
        ino = ROOT_INODE
        path = base or f"mx1/{repo.snapshots()[0].name}/mail/d"
        for part in path.split("/"):
            ino = vfs.lookup(ino, part.encode()).ino
        full = list(vfs.readdir(ino, 0))
        assert [n for n, _, _ in full] == [f"{i:04d}".encode() for i in range(300)]
        for k in (0, 1, 150, 299):
            rest = [n for n, _, _ in vfs.readdir(ino, full[k][2])]
            assert rest == [n for n, _, _ in full[k + 1:]]


def test_host_mount_and_last_symlink(two_snapshots: Repository) -> None:
    vfs = Vfs(two_snapshots, host="mx1", last_symlink=True)
    names = [n for n, _, _ in vfs.readdir(ROOT_INODE, 0)]
    refs = two_snapshots.snapshots("mx1")
    assert names == [r.name.encode() for r in refs] + [b"last"]
    last = vfs.lookup(ROOT_INODE, b"last")
    assert stat.S_ISLNK(last.mode)
    assert vfs.readlink(last.ino) == refs[-1].name.encode()


def test_snapshot_keys_probe_on_collision(two_snapshots: Repository,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    key = snapshot_key("mx1", "2026-11-20T030000Z")
    assert 0 < key < 2**30
    ino = entry_inode(key, 12345)
    assert split_entry_inode(ino) == (key, 12345) and not is_virtual(ino)
    monkeypatch.setattr("fusefs.snapshot_table.snapshot_key", lambda host, name: 7)
    vfs = Vfs(two_snapshots)
    keys = vfs.table.listing().keys
    assert sorted(keys.values()) == [7, 8, 9]
    assert [keys[r] for r in sorted(keys)] == [7, 8, 9]
    walked = _walk(vfs, ROOT_INODE)
    assert len(set(walked.values())) == len(walked)


def test_removed_snapshot_disappears(two_snapshots: Repository) -> None:
    vfs = Vfs(two_snapshots, list_ttl=0.0)
    mx1 = vfs.lookup(ROOT_INODE, b"mx1").ino
    first, second = two_snapshots.snapshots("mx1")
    old = vfs.lookup(mx1, first.name.encode()).ino
    two_snapshots.storage.delete(first.relpath)
    assert [n for n, _, _ in vfs.readdir(mx1, 0)] == [second.name.encode(), b"last"]
    with pytest.raises(FsError) as info:
        vfs.getattr(old)
    assert info.value.errno == errno.ENOENT


# -- inode numbers below 2^63 (docs/FORMAT.md section 12) -------------------


def _blake62(*parts: bytes) -> int:
    """FORMAT.md section 12's "62 bits of BLAKE3", written from the text."""
    return int.from_bytes(blake3.blake3(b"\0".join(parts)).digest()[:8], "little") % 2**62


_hosts = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z")
_names = st.from_regex(r"\A\d{4}-\d{2}-\d{2}T\d{6}Z(-\d{1,3})?\Z")
_types = st.sampled_from([stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFIFO,
                          stat.S_IFCHR, stat.S_IFBLK])


@given(host=_hosts, name=_names, path=st.binary(max_size=64), file_type=_types,
       inode_id=st.integers(1, MAX_ENTRY_ID), other_id=st.integers(1, MAX_ENTRY_ID))
def test_inode_functions_stay_below_2_63_and_apart(host: str, name: str, path: bytes,
                                                   file_type: int, inode_id: int,
                                                   other_id: int) -> None:
    key = snapshot_key(host, name)
    assert 0 < key < 2**30
    assert key == (_blake62(b"snapshot", f"{host}/{name}".encode()) % 2**30 or 1)
    assert 0 < next_key(key) < 2**30 and next_key(key) != key
    ino = entry_inode(key, inode_id)
    assert ROOT_INODE < ino <= I64_MAX and not is_virtual(ino)
    assert split_entry_inode(ino) == (key, inode_id)
    assert ino == key << 32 | inode_id
    # Another entry of the same snapshot, or the same entry of the next key,
    # never gets the same number.
    assert (entry_inode(key, other_id) == ino) == (other_id == inode_id)
    assert entry_inode(next_key(key), inode_id) != ino
    for virtual, spec in ((host_inode(host), (b"host", host.encode())),
                          (last_inode(host, path, file_type),
                           (b"last", host.encode(), path, str(file_type).encode()))):
        assert 2**62 <= virtual <= I64_MAX and is_virtual(virtual)
        assert virtual == 2**62 | _blake62(*spec)
    # Pure functions: the same numbers on every call (remounts, days).
    assert last_inode(host, path, file_type) == last_inode(host, bytes(path), file_type)
    assert host_inode(host) == host_inode(str(host))


def test_every_inode_of_a_walk_is_below_2_63(two_snapshots: Repository) -> None:
    vfs = Vfs(two_snapshots)
    walked = _walk(vfs, ROOT_INODE)
    assert any("/last/" in p for p in walked) and "mx1" in walked
    assert all(0 < ino <= I64_MAX for ino in walked.values()), walked
    assert vfs.getattr(ROOT_INODE).ino == 1


# -- last and its dated twin ------------------------------------------------


def test_last_looks_like_the_dated_directory_it_shows(two_snapshots: Repository) -> None:
    for vfs in (Vfs(two_snapshots), Vfs(two_snapshots, host="mx1")):
        parent = ROOT_INODE if vfs.single_host else vfs.lookup(ROOT_INODE, b"mx1").ino
        newest = two_snapshots.snapshots("mx1")[-1].name.encode()
        listed = {name: attr for name, attr, _ in vfs.readdir(parent, 0)}
        for last, dated in ((vfs.lookup(parent, b"last"), vfs.lookup(parent, newest)),
                            (listed[b"last"], listed[newest])):
            assert last.ino != dated.ino
            assert last.mode == dated.mode == stat.S_IFDIR | 0o555
            assert (last.nlink, last.uid, last.gid, last.size) == \
                (dated.nlink, dated.uid, dated.gid, dated.size)
            assert (last.atime_ns, last.mtime_ns, last.ctime_ns) == \
                (dated.atime_ns, dated.mtime_ns, dated.ctime_ns)
            assert vfs.getattr(last.ino) == last


# -- snapshots published after the list was read ------------------------------


def test_lookup_of_a_new_snapshot_reads_the_list_again(repo: Repository,
                                                       tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, {"n": b"1"})
    part = f"mail={src}"
    # Backups in another process, as in real life (and LMDB opens a file
    # only once per process).
    backup_json(repo.root, part)
    vfs = Vfs(repo, list_ttl=3600.0)  # the list is never old enough to expire
    mx1 = vfs.lookup(ROOT_INODE, b"mx1").ino
    last_n = vfs.lookup(vfs.lookup(vfs.lookup(mx1, b"last").ino, b"mail").ino, b"n").ino
    assert vfs.read(vfs.read_pieces(vfs.open(last_n), 0, 10)) == b"1"
    (src / "n").write_bytes(b"2")
    new = backup_json(repo.root, part)["snapshot"]
    assert isinstance(new, str)
    backup_json(repo.root, part, host="mx2")
    # Names that cannot be a snapshot or a host do not re-read the list.
    for parent, name in ((mx1, b"not-a-snapshot"), (ROOT_INODE, b".Trash")):
        with pytest.raises(FsError) as info:
            vfs.lookup(parent, name)
        assert info.value.errno == errno.ENOENT
    assert [n for n, _, _ in vfs.readdir(mx1, 0)] == [
        repo.snapshots("mx1")[0].name.encode(), b"last"]
    # The new snapshot's name is found at once, and last moves with it once
    # the mount follows it (the adapter does at once, after such a lookup),
    # telling the kernel to forget the attributes and pages of what changed.
    assert not vfs.last_moved()
    assert vfs.lookup(mx1, new.encode()).ino
    assert vfs.last_moved()
    assert ForgetInode(Inode(last_n), True) in vfs.follow_last()
    assert not vfs.last_moved()
    assert vfs.read(vfs.read_pieces(vfs.open(last_n), 0, 10)) == b"2"
    assert vfs.lookup(ROOT_INODE, b"mx2").ino
    # A new host too, and with --host, a new snapshot at the root.
    backup_json(repo.root, part, host="mx3")
    assert vfs.lookup(ROOT_INODE, b"mx3").ino
    vfs.table.close()
    single = Vfs(repo, host="mx1", list_ttl=3600.0)
    assert single.lookup(ROOT_INODE, b"last").ino
    newest = backup_json(repo.root, part)["snapshot"]
    assert isinstance(newest, str)
    assert single.lookup(ROOT_INODE, newest.encode()).ino
    single.table.close()


# -- the state `last` keeps per inode ------------------------------------------


def _under_last(vfs: Vfs, *names: bytes) -> int:
    ino = vfs.lookup(ROOT_INODE, b"mx1").ino
    for name in (b"last", *names):
        ino = vfs.lookup(ino, name).ino
    return ino


def test_last_drops_an_inode_state_when_the_kernel_forgets_it(two_snapshots: Repository
                                                              ) -> None:
    vfs = Vfs(two_snapshots)
    walked = {p: ino for p, ino in _walk(vfs, ROOT_INODE).items() if p.split("/")[1:2] == ["last"]}
    two = _under_last(vfs, b"mail", b"a", b"two")  # a second reference to it
    # The kernel has no page of an inode it has not opened yet: nothing to drop.
    assert vfs.open(two).keep_cache is True
    assert vfs.open(two).keep_cache is True  # the pages it read are still right
    held = vfs.last.known(two)
    assert held is not None and held.lookups == 2 and held.content is not None
    assert held.path == b"mail/a/two" and held.ref == two_snapshots.snapshots("mx1")[-1]
    vfs.forget(two, 1)
    assert vfs.last.known(two) is held and held.lookups == 1
    assert len(vfs.last) == len(walked)
    for ino in walked.values():
        node = vfs.last.known(ino)
        assert node is not None
        vfs.forget(ino, node.lookups)
    assert len(vfs.last) == 0
    for path, ino in walked.items():
        if path.endswith("/last"):  # found from the host's name alone
            assert vfs.getattr(ino).ino == ino
            continue
        with pytest.raises(FsError) as info:
            vfs.getattr(ino)
        assert info.value.errno == errno.ENOENT
    # Looked up again, the path has lost what it remembered, as the kernel
    # lost its pages with the inode.
    assert _under_last(vfs, b"mail", b"a", b"two") == two
    again = vfs.last.known(two)
    assert again is not None and again is not held and again.content is None


def test_a_path_under_last_follows_the_newest_snapshot(repo: Repository,
                                                       tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, {"d/f": b"old"})
    backup_json(repo.root, f"mail={src}")
    vfs = Vfs(repo, list_ttl=0.0)  # every request sees the newest list
    f = _under_last(vfs, b"mail", b"d", b"f")
    first = repo.snapshots("mx1")[-1]
    held = vfs.last.known(f)
    assert held is not None and held.ref == first
    opened = vfs.open(f)
    (src / "d" / "f").write_bytes(b"newer")
    backup_json(repo.root, f"mail={src}")
    newest = repo.snapshots("mx1")[-1]
    # Until the mount follows the newest snapshot, `last` shows the one the
    # kernel holds paths of; then the kernel is told what to forget.
    assert vfs.getattr(f).size == 3
    d = _under_last(vfs, b"mail", b"d")
    forget = vfs.follow_last()
    # The file's pages and attributes; the attributes only of its directories
    # and `last` (their times may have moved), the deepest first.
    assert forget[0] == ForgetInode(Inode(f), True)
    assert ForgetInode(vfs.last.root_inode("mx1"), False) in forget
    assert all(isinstance(x, ForgetInode) and not x.data for x in forget[1:])
    assert vfs.follow_last() == []
    # The same inode, resolved again against the newest snapshot by its path.
    assert vfs.getattr(f).size == 5
    again = vfs.open(f)
    assert (again.ref, again.keep_cache) == (newest, False)
    assert vfs.read(vfs.read_pieces(again, 0, 100)) == b"newer"
    # A file opened before keeps reading the snapshot it was opened on.
    assert opened.ref == first
    assert vfs.read(vfs.read_pieces(opened, 0, 100)) == b"old"
    # Looked up again, the path is remembered as found in the newest.
    assert _under_last(vfs, b"mail", b"d", b"f") == f and held.ref == newest
    (src / "d" / "f").unlink()
    backup_json(repo.root, f"mail={src}", check=1)  # warns: the part is empty now
    assert ForgetEntry(Inode(d), b"f") in vfs.follow_last()
    with pytest.raises(FsError) as info:
        vfs.getattr(f)
    assert info.value.errno == errno.ENOENT
    vfs.close()


def test_under_last_the_kernel_keeps_long_except_hard_links_and_a_moved_listing(
        repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src, {f"d/{i:03d}": b"x" for i in range(10)})
    os.link(src / "d" / "000", src / "d" / "linked")
    backup_json(repo.root, f"mail={src}")
    vfs = Vfs(repo, list_ttl=0.0)
    d = _under_last(vfs, b"mail", b"d")
    pinned = vfs.opendir(d)
    listed = {n: a for n, a, _ in vfs.readdir(d, 0, pinned)}
    # A hard link's number follows its first name, of which the mount knows
    # one: it is asked again soon.
    assert listed[b"linked"].timeout == listed[b"000"].timeout == SHORT_TIMEOUT
    assert listed[b"001"].timeout == LONG_TIMEOUT
    offset = next(off for n, _, off in vfs.readdir(d, 0, pinned) if n == b"004")
    (src / "d" / "009").write_bytes(b"changed")
    backup_json(repo.root, f"mail={src}")
    assert vfs.follow_last()
    # A listing begun before `last` moved goes on from its snapshot, and what
    # it answers from there is not kept long (nothing will say it changed).
    rest = {n: a for n, a, _ in vfs.readdir(d, offset, pinned)}
    assert rest[b"009"].size == 1 and rest[b"009"].timeout == SHORT_TIMEOUT
    assert vfs.getattr(rest[b"009"].ino).size == len(b"changed")
    assert vfs.getattr(rest[b"009"].ino).timeout == LONG_TIMEOUT
    vfs.close()


# -- reads ------------------------------------------------------------------


def test_the_pieces_of_a_read_are_the_snapshot_readers(repo: Repository,
                                                       tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = bytes(range(256)) * 4096  # 1 MiB, several chunks
    with open(src / "sparse", "wb") as out:
        out.write(data)
        out.seek(8 << 20)  # a hole of 7 MiB
        out.write(data)
    run_backup(repo, "mx1", [Part("mail", src)])
    vfs = Vfs(repo)
    ino = vfs.lookup(vfs.lookup(ROOT_INODE, b"mx1").ino, repo.snapshots()[0].name.encode()).ino
    f = vfs.open(vfs.lookup(vfs.lookup(ino, b"mail").ino, b"sparse").ino)
    whole = data + bytes((8 << 20) - len(data)) + data
    snap = vfs.table.reader(f.ref)
    for offset, size in ((0, 1 << 30), (1000, 5), ((1 << 20) - 7, 4 << 20), (len(whole) - 3, 9),
                         (len(whole), 10)):
        pieces = vfs.read_pieces(f, offset, size)
        assert pieces == snap.pieces(f.entry, offset, size)
        wanted = whole[offset : offset + size]
        assert sum(p.length for p in pieces) == len(wanted)
        assert vfs.read(pieces) == snap.read(f.entry, offset, size) == wanted
        assert vfs.read_now(pieces) in (None, wanted)
    assert any(p.chunk is None and p.length > 1 << 20 for p in vfs.read_pieces(f, 0, 1 << 30))
    vfs.close()
