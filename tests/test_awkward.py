"""Source trees with what `make_awkward_tree` lacks, backed up, then compared
exactly through the mount and after `histfs restore`.

Each feature is a part of one backup, compared on its own:

- deep: 40 levels of 200-byte directory names (paths of 8 KiB, about twice
  PATH_MAX), a file at the bottom and a hard link to it from the top. Found:
  the backup crashed (LMDB's 511-byte key limit in the staging area, then
  ENAMETOOLONG from lstat); now the staging area stores records under their
  directory's number and the backup reaches long paths through a descriptor
  of an ancestor. Both sides are walked with dir_fd-relative calls
  (`Tree`): `source_state` fails with ENAMETOOLONG past PATH_MAX.
- links: hard links to symlinks (one dangling), hard-linked fifos and device
  nodes. Found: each link was stored as a separate inode (nlink 1) and
  restored as separate files; now the links share one inode in the index,
  the mount and the restored tree.
- locked: mode 000 files (one large enough to be written by a restore
  thread) and mode 000 directories holding files and directories, owned by
  uids and gids no user has. Kept exactly.
- times: mtimes in 2200, at the last nanosecond int64 holds (2262-04-11),
  at ext4's first second (1901-12-13T20:45:52, the earliest it stores: it
  clamps earlier times and drops the nanoseconds of that second) and in
  1901 with nanoseconds, on files, directories, symlinks and a fifo. Kept
  exactly. Found on the way: a directory dated far ahead counted as "racy"
  (changed in the clock tick of its listing) and was relisted in every
  rescan round, 3 times the backup time for 20,000 files in it; now only
  mtimes up to a day ahead are.
- many: 100,000 small files in one directory:
  count and a sample through the mount, count and full state after restore.

Ctimes are compared through the mount (it shows the stored ones) and not
after a restore (no call sets them).
"""

from __future__ import annotations

import calendar
import errno
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import blake3
import pytest

import tests.trees
from tests.conftest import Mount, backup_json, histfs
from tests.trees import _file_digest, _xattrs, source_state, without_ctime

State = dict[bytes, tuple[object, ...]]

DEPTH = 40
NAME_LEN = 200
PARTS = ("deep", "links", "locked", "times")

FOREIGN = (12345, 54321)
FOREIGN2 = (23456, 65432)


def _ns(year: int, month: int, day: int, nanos: int = 0) -> int:
    return calendar.timegm((year, month, day, 0, 0, 0)) * 1_000_000_000 + nanos


Y2200 = _ns(2200, 1, 1, 123_456_789)
Y2262 = 2**63 - 1  # 2262-04-11T23:47:16.854775807Z
EXT4_FIRST = -(2**31) * 1_000_000_000  # 1901-12-13T20:45:52Z
Y1901 = -2_147_400_000 * 1_000_000_000 + 123  # 1901-12-14, odd nanoseconds
TIMES = {"2200": Y2200, "2262": Y2262, "1901-first": EXT4_FIRST, "1901": Y1901}


# -- the source tree --------------------------------------------------------


def _write(dir_fd: int, name: bytes, data: bytes, mode: int = 0o644) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, dir_fd=dir_fd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def level_name(i: int) -> bytes:
    return b"%02d-" % i + b"d" * (NAME_LEN - 3)


def make_deep(root: Path) -> None:
    """DEPTH directories of NAME_LEN-byte names, built through descriptors
    (the paths are longer than any system call takes)."""
    root.mkdir()
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    fd = os.dup(top)
    try:
        for i in range(DEPTH):
            os.mkdir(level_name(i), 0o755, dir_fd=fd)
            inner = os.open(level_name(i), os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
            if i == DEPTH // 2:
                _write(fd, b"middle", b"halfway down\n")
        _write(fd, b"bottom", b"at the bottom\n" * 100)
        os.symlink(b"bottom", b"link-to-bottom", dir_fd=fd)
        os.link(b"bottom", b"hard-link-to-bottom", src_dir_fd=fd, dst_dir_fd=top)
    finally:
        os.close(fd)
        os.close(top)


def make_links(root: Path) -> None:
    """Hard links to symlinks, fifos and a device node."""
    root.mkdir()
    (root / "sub").mkdir()
    (root / "target.txt").write_bytes(b"the symlink's target\n")
    os.symlink("target.txt", root / "sym")
    os.chown(root / "sym", *FOREIGN, follow_symlinks=False)
    os.utime(root / "sym", ns=(Y2200, Y2200), follow_symlinks=False)
    os.link(root / "sym", root / "sym-hard", follow_symlinks=False)
    os.link(root / "sym", root / "sub" / "sym-hard2", follow_symlinks=False)
    os.symlink("does/not/exist", root / "dangling")
    os.link(root / "dangling", root / "dangling-hard", follow_symlinks=False)
    os.mkfifo(root / "fifo", 0o640)
    os.chown(root / "fifo", *FOREIGN2)
    os.link(root / "fifo", root / "fifo-hard")
    os.link(root / "fifo", root / "sub" / "fifo-hard2")
    os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.link(root / "null", root / "null-hard")
    # An ordinary symlink and fifo next to them stay single.
    os.symlink("target.txt", root / "sym-single")
    os.mkfifo(root / "fifo-single")


def make_locked(root: Path) -> None:
    """Mode 000 files and directories (with contents), foreign owners."""
    root.mkdir()
    (root / "nothing").write_bytes(b"secret\n")
    (root / "big-nothing").write_bytes(os.urandom(2_000_000))
    closed = root / "closed"
    (closed / "sub").mkdir(parents=True)
    (closed / "inner.txt").write_bytes(b"inside a closed directory\n")
    (closed / "sub" / "deeper.txt").write_bytes(b"deeper\n")
    (root / "empty-closed").mkdir()
    (root / "x-only").mkdir()
    (root / "x-only" / "f").write_bytes(b"search only\n")
    os.link(root / "nothing", root / "nothing-hard")
    for rel, owner, mode in (
            ("nothing", FOREIGN, 0o000), ("big-nothing", FOREIGN2, 0o000),
            ("closed/inner.txt", FOREIGN2, 0o000), ("closed/sub/deeper.txt", FOREIGN, 0o644),
            ("closed/sub", FOREIGN, 0o000), ("closed", FOREIGN2, 0o000),
            ("empty-closed", FOREIGN, 0o000), ("x-only/f", (99999, 99999), 0o400),
            ("x-only", (99999, 99999), 0o111)):
        os.chown(root / rel, *owner)
        os.chmod(root / rel, mode)


def make_times(root: Path) -> None:
    """mtimes after 2100 and before 1970 on every kind; directories last."""
    root.mkdir()
    for label, ns in TIMES.items():
        f = root / f"file-{label}"
        f.write_bytes(label.encode())
        os.utime(f, ns=(ns, ns))
        os.symlink(f"file-{label}", root / f"link-{label}")
        os.utime(root / f"link-{label}", ns=(ns, ns), follow_symlinks=False)
        d = root / f"dir-{label}"
        d.mkdir()
        (d / "inside").write_bytes(b"a file in a dated directory\n")
    os.mkfifo(root / "fifo-2262")
    os.utime(root / "fifo-2262", ns=(Y2262, Y2262))
    for label, ns in TIMES.items():
        os.utime(root / f"dir-{label}", ns=(ns, ns))
    os.utime(root, ns=(Y1901, Y1901))


def make_more_awkward_tree(root: Path) -> None:
    """One directory per feature (see the module docstring)."""
    root.mkdir(parents=True)
    make_deep(root / "deep")
    make_links(root / "links")
    make_locked(root / "locked")
    make_times(root / "times")


def make_many(root: Path, count: int) -> None:
    """`count` files of 0-64 bytes in one directory."""
    root.mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            _write(fd, b"m%06d" % i, (b"%d," % i) * (i % 9))
    finally:
        os.close(fd)


# -- comparing, through descriptors -----------------------------------------


def digest(path: bytes) -> str:
    """`_file_digest`'s value (a hash of the content, holes as zeros).
    That one allocates 16 MiB of zeros per call: 1 ms per file, 90 s for
    each walk of 100,000 files; small files are hashed here in one read."""
    with open(path, "rb") as f:
        data = f.read(1 << 20)
        if len(data) < 1 << 20:
            return str(blake3.blake3(data).hexdigest())
    return _file_digest(path)


class Tree:
    """What `source_state` sees (plus the top directory itself, as "."),
    link counts, and which names share an inode, walked with dir_fd-relative
    calls so that no path passed to the kernel is longer than a name."""

    def __init__(self, root: Path) -> None:
        self.state: State = {}
        self.nlink: dict[bytes, int] = {}
        self._inodes: dict[tuple[int, int], list[bytes]] = {}
        top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._record(top, b".", b".")
            self._walk(top, b"")
        finally:
            os.close(top)

    @property
    def links(self) -> set[frozenset[bytes]]:
        return {frozenset(v) for v in self._inodes.values() if len(v) > 1}

    def _walk(self, dir_fd: int, rel: bytes) -> None:
        for name in sorted(os.fsencode(n) for n in os.listdir(dir_fd)):
            child = rel + b"/" + name if rel else name
            if self._record(dir_fd, name, child):
                fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                             dir_fd=dir_fd)
                try:
                    self._walk(fd, child)
                finally:
                    os.close(fd)

    def _record(self, dir_fd: int, name: bytes, rel: bytes) -> bool:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        # Short paths through the open directory, for helpers that take paths.
        here = b"/proc/self/fd/%d/%s" % (dir_fd, name)
        fmt = stat.S_IFMT(st.st_mode)
        content: object = None
        if fmt == stat.S_IFREG:
            content = digest(here)
        elif fmt == stat.S_IFLNK:
            content = os.readlink(name, dir_fd=dir_fd)
        size = st.st_size if fmt in (stat.S_IFREG, stat.S_IFLNK) else 0
        rdev = st.st_rdev if fmt in (stat.S_IFCHR, stat.S_IFBLK) else 0
        self.state[rel] = (fmt, st.st_mode & 0o7777, st.st_uid, st.st_gid, size,
                           st.st_mtime_ns, st.st_ctime_ns, rdev, _xattrs(here), content)
        self.nlink[rel] = st.st_nlink
        if fmt != stat.S_IFDIR:
            self._inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
        return fmt == stat.S_IFDIR


def assert_same_tree(got: Tree, want: Tree, ctime: bool) -> None:
    strip = (lambda s: s) if ctime else without_ctime
    assert sorted(got.state) == sorted(want.state)
    for rel in want.state:
        assert strip(got.state)[rel] == strip(want.state)[rel], rel
    assert got.nlink == want.nlink
    assert got.links == want.links


# -- fixtures -----------------------------------------------------------------


class Backup:
    def __init__(self, src: Path, repo: Path) -> None:
        self.src = src
        self.repo = repo


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> Backup:
    """The tree, and one backup of it with a part per feature."""
    base = tmp_path_factory.mktemp("awkward2")
    src = base / "src"
    make_more_awkward_tree(src)
    repo = base / "repo"
    env = {"HISTFS_CACHE_DIR": str(base / "cache")}
    histfs("init", "--encryption", "none", str(repo), check=0)
    proc = histfs("backup", "--repo", str(repo), "--host", "mx1", "--json",
                  *(f"{p}={src / p}" for p in PARTS), env=env, check=0)
    summary = json.loads(proc.stdout)
    assert summary["warnings"] == [], summary
    return Backup(src, repo)


def snapshot_dir(mount: Mount) -> Path:
    names = sorted(os.listdir(mount.path / "mx1"))
    assert names[-1] == "last"
    return mount.path / "mx1" / names[-2]


def restore(repo: Path, target: Path, *paths: str) -> dict[str, object]:
    proc = histfs("restore", "--repo", str(repo), "last", *paths, "--target", str(target),
                  "--json", timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    report: dict[str, object] = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["errors"] == [] and report["warnings"] == [], \
        proc.stderr
    return report


# -- the features -------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_source_tree_is_what_it_should_be(backup: Backup) -> None:
    """The generator made what the tests claim, and `Tree` agrees with
    `source_state` wherever the latter can see."""
    deep = Tree(backup.src / "deep")
    bottom = b"/".join(level_name(i) for i in range(DEPTH)) + b"/bottom"
    assert len(bottom) > 8000 > 4096  # PATH_MAX
    assert deep.state[bottom][9] == deep.state[b"hard-link-to-bottom"][9]
    assert deep.links == {frozenset({bottom, b"hard-link-to-bottom"})}
    # `source_state` cannot go past PATH_MAX: that is why `Tree` exists.
    with pytest.raises(OSError) as info:
        source_state(backup.src / "deep")
    assert info.value.errno == errno.ENAMETOOLONG
    for part in ("links", "locked", "times"):
        tree = Tree(backup.src / part)
        assert {k: v for k, v in tree.state.items() if k != b"."} == source_state(
            backup.src / part)
    links = Tree(backup.src / "links")
    assert links.nlink[b"sym"] == links.nlink[b"fifo"] == 3
    assert frozenset({b"sym", b"sym-hard", b"sub/sym-hard2"}) in links.links
    times = Tree(backup.src / "times")
    assert {times.state[f"dir-{k}".encode()][5] for k in TIMES} == set(TIMES.values())
    assert times.state[b"."][5] == Y1901


@pytest.mark.timeout(120)
@pytest.mark.parametrize("part", PARTS)
def test_mount_shows_the_feature_exactly(backup: Backup, mount_repo: Callable[..., Mount],
                                         part: str, figures: Callable[[str], None]) -> None:
    """Every name, type, mode, owner, size, time (ctime too), device number,
    xattr, content, link count and shared inode, in the dated directory and
    under `last`."""
    want = Tree(backup.src / part)
    m = mount_repo(backup.repo)
    for where in (snapshot_dir(m) / part, m.path / "mx1" / "last" / part):
        assert_same_tree(Tree(where), want, ctime=True)
    figures(f"{part}: {len(want.state)} entries shown by the mount exactly")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("part", PARTS)
def test_restore_gives_the_feature_back_exactly(backup: Backup, tmp_path: Path,
                                                part: str,
                                                figures: Callable[[str], None]) -> None:
    """The same (but ctimes), as `histfs restore` writes it; for the parts
    `source_state` can walk, by its comparison too."""
    target = tmp_path / "restored"
    restore(backup.repo, target, part)
    assert os.listdir(target) == [part]
    want = Tree(backup.src / part)
    assert_same_tree(Tree(target / part), want, ctime=False)
    if part != "deep":
        assert without_ctime(source_state(target / part)) == without_ctime(
            source_state(backup.src / part))
    figures(f"{part}: {len(want.state)} entries restored exactly")


# -- many files in one directory ------------------------------------------------


# 100,000 files take about 40 s here (backup 12 s, restore 12 s).
@pytest.mark.timeout(300)
@pytest.mark.parametrize("count", [100_000])
def test_many_files_in_one_directory(tmp_path: Path, mount_repo: Callable[..., Mount],
                                     count: int, figures: Callable[[str], None],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    make_many(src / "inbox", count)
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    started = time.monotonic()
    summary = backup_json(repo, f"mail={src}")
    backup_s = time.monotonic() - started
    assert summary["files_new"] == count and summary["warnings"] == []

    # Through the mount: every name, and a sample of files in full.
    m = mount_repo(repo)
    inbox = snapshot_dir(m) / "mail" / "inbox"
    started = time.monotonic()
    names = sorted(os.listdir(inbox))
    list_s = time.monotonic() - started
    assert names == [f"m{i:06d}" for i in range(count)]
    assert os.stat(inbox).st_nlink == 2
    for i in range(0, count, 97):
        name = f"m{i:06d}"
        a, b = os.lstat(inbox / name), os.lstat(src / "inbox" / name)
        assert (a.st_mode, a.st_uid, a.st_gid, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
            b.st_mode, b.st_uid, b.st_gid, b.st_size, b.st_mtime_ns, b.st_ctime_ns)
        assert (inbox / name).read_bytes() == (b"%d," % i) * (i % 9)

    # Restored: the count, and the whole state, by `source_state` with the
    # same hash computed faster (see `digest`).
    sample = os.fsencode(src / "inbox" / f"m{count - 1:06d}")
    assert digest(sample) == _file_digest(sample)
    monkeypatch.setattr(tests.trees, "_file_digest", digest)
    target = tmp_path / "restored"
    started = time.monotonic()
    report = restore(repo, target)
    restore_s = time.monotonic() - started
    assert report["files"] == count
    assert len(os.listdir(target / "mail" / "inbox")) == count
    assert without_ctime(source_state(target / "mail")) == without_ctime(source_state(src))
    figures(f"{count} files in one directory: backup {backup_s:.1f} s, listed through the "
            f"mount in {list_s:.1f} s, restore {restore_s:.1f} s; mounted and restored exactly")
