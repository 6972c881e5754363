"""Security of the mount as seen by an unprivileged user (nobody, through
setpriv).

- Without --allow-other only the mounting user enters the mount (FUSE's
  own rule): nobody gets EACCES even on the top directory.
- With --allow-other the kernel checks the stored modes and owners
  (`default_permissions`): nobody can do in the mount exactly what it could
  do in the source tree, path by path.
- setuid bits are shown but not honoured (nosuid); device nodes are shown
  but cannot be opened (nodev).

The tree and the mount point live in a directory under /tmp that nobody can
traverse (pytest's own temporary directories are private to root).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Mount, histfs

NOBODY = 65534
SETPRIV = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to act as another user")


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SETPRIV, *argv], capture_output=True, text=True, timeout=30)


def make_tree(src: Path) -> None:
    """Files and directories that nobody may and may not reach."""
    src.mkdir()
    (src / "public.txt").write_text("anyone may read this\n")
    (src / "secret.txt").write_text("root only\n")
    os.chmod(src / "secret.txt", 0o600)
    (src / "group.txt").write_text("root's group only\n")
    os.chmod(src / "group.txt", 0o640)
    (src / "mine.txt").write_text("nobody's own file\n")
    os.chown(src / "mine.txt", NOBODY, NOBODY)
    os.chmod(src / "mine.txt", 0o600)
    private = src / "private"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    (private / "inside.txt").write_text("behind a closed directory\n")
    search_only = src / "search-only"
    search_only.mkdir()
    (search_only / "known-name.txt").write_text("reachable by name only\n")
    os.chmod(search_only, 0o711)
    shutil.copy2("/usr/bin/id", src / "setuid-id")
    os.chmod(src / "setuid-id", 0o4755)
    os.mknod(src / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))


# What nobody tries, in the source tree and in the mount.
ATTEMPTS: list[tuple[str, ...]] = [
    ("cat", "public.txt"),
    ("cat", "secret.txt"),
    ("cat", "group.txt"),
    ("cat", "mine.txt"),
    ("ls", "private"),
    ("cat", "private/inside.txt"),
    ("stat", "private/inside.txt"),
    ("ls", "search-only"),
    ("cat", "search-only/known-name.txt"),
    ("ls", "."),
]


class Setup:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.src = base / "src"
        self.repo = base / "repo"
        self.mounts: list[Mount] = []

    def mount(self, *options: str) -> Mount:
        m = Mount(self.repo, self.base / f"mnt{len(self.mounts)}", *options)
        self.mounts.append(m)
        m.start()
        os.chmod(m.path.parent, 0o755)
        return m


@pytest.fixture
def setup() -> Iterator[Setup]:
    base = Path(tempfile.mkdtemp(prefix="histfs-security-", dir="/tmp"))
    os.chmod(base, 0o755)
    s = Setup(base)
    try:
        make_tree(s.src)
        histfs("init", "--encryption", "none", str(s.repo), check=0)
        histfs("backup", "--repo", str(s.repo), "--host", "mx1", f"data={s.src}", check=0)
        yield s
    finally:
        for m in s.mounts:
            m.stop()
        shutil.rmtree(base, ignore_errors=True)


def data_dir(m: Mount) -> Path:
    return m.path / "mx1" / "last" / "data"


def mount_options(path: Path) -> set[str]:
    """The per-mount options of `path` from /proc/self/mountinfo."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(path):
            return set(fields[5].split(","))
    raise AssertionError(f"{path} is not in mountinfo")


@pytest.mark.timeout(120)
def test_without_allow_other_only_the_mounting_user_enters(
        setup: Setup, figures: Callable[[str], None]) -> None:
    m = setup.mount()
    assert (data_dir(m) / "public.txt").read_text() == "anyone may read this\n"
    for argv in (("stat", str(m.path)), ("ls", str(m.path)),
                 ("cat", str(data_dir(m) / "public.txt"))):
        proc = as_nobody(*argv)
        assert proc.returncode != 0, argv
        assert "Permission denied" in proc.stderr, (argv, proc.stderr)
    # The same user reads its own file in the source, so the refusal is the mount's.
    assert as_nobody("cat", str(setup.src / "mine.txt")).returncode == 0
    figures("mount without --allow-other: another user is refused even the top directory")


@pytest.mark.timeout(120)
def test_allow_other_applies_the_stored_modes_and_owners(
        setup: Setup, figures: Callable[[str], None]) -> None:
    m = setup.mount("--allow-other")
    mounted = data_dir(m)
    allowed = 0
    for cmd, rel in ATTEMPTS:
        want = as_nobody(cmd, str(setup.src / rel))
        got = as_nobody(cmd, str(mounted / rel))
        assert got.returncode == want.returncode, (cmd, rel, got.stderr, want.stderr)
        if want.returncode == 0:
            allowed += 1
            if cmd == "cat":
                assert got.stdout == want.stdout, (cmd, rel)
        else:
            assert "Permission denied" in got.stderr, (cmd, rel, got.stderr)
    # Both outcomes occur, so the comparison above compared something.
    assert 0 < allowed < len(ATTEMPTS)
    figures(f"mount with --allow-other: {len(ATTEMPTS)} accesses by nobody, {allowed} "
            "allowed, the rest refused, each exactly as in the source tree")


@pytest.mark.timeout(120)
def test_setuid_is_shown_but_not_honoured(setup: Setup) -> None:
    m = setup.mount("--allow-other")
    options = mount_options(m.path)
    assert {"nosuid", "nodev"} <= options, options
    program = data_dir(m) / "setuid-id"
    assert os.stat(program).st_mode & 0o7777 == 0o4755
    # In the source tree (if its file system honours setuid) the same
    # program runs as root: the mount is what makes the difference.
    if not os.statvfs(setup.src).f_flag & os.ST_NOSUID:
        source = as_nobody(str(setup.src / "setuid-id"), "-u")
        assert source.stdout.strip() == "0", source.stderr
    proc = as_nobody(str(program), "-u")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(NOBODY)


@pytest.mark.timeout(120)
def test_device_nodes_are_shown_but_cannot_be_opened(setup: Setup) -> None:
    m = setup.mount()
    node = data_dir(m) / "null"
    st = os.stat(node)
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    # Even root, who may open any /dev/null, cannot open this one.
    with pytest.raises(PermissionError):
        os.open(node, os.O_RDONLY)
    with open(setup.src / "null", "rb") as f:
        assert f.read(1) == b""
