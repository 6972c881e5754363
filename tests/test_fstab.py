"""Mounting the way administrators do: `mount -t fuse.histfs …` and an fstab
line (`mount -T FILE`), through Debian's mount.fuse; `umount` ends it.

mount(8) gives its helpers a fixed PATH, so `histfs` has to be in one of
its directories: the fixture links /usr/local/bin/histfs to this checkout's
command for the test (unless one is there already) and removes the link.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import histfs, unmount

LINK = Path("/usr/local/bin/histfs")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/sbin/mount.fuse").exists(),
    reason="needs root and Debian's fuse3 (mount.fuse)")


@pytest.fixture
def on_mounts_path() -> Iterator[None]:
    exe = Path(sys.executable).with_name("histfs")
    made = False
    if not LINK.exists() and not LINK.is_symlink():
        LINK.symlink_to(exe)
        made = True
    try:
        yield
    finally:
        if made:
            LINK.unlink()


@pytest.fixture
def backed_up(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    (src / "cur").mkdir(parents=True)
    (src / "cur" / "1.eml").write_text("Subject: fstab\n\nmounted at boot\n")
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"mail={src}", check=0)
    return repo, src


def _mounted(path: Path) -> str | None:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(path):
            return line
    return None


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(120)
def test_mount_with_type_fuse_histfs(backed_up: tuple[Path, Path], tmp_path: Path,
                                     on_mounts_path: None) -> None:
    repo, src = backed_up
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        proc = _run("mount", "-t", "fuse.histfs", str(repo), str(mnt),
                    "-o", "ro,allow_other,host=mx1,_netdev")
        assert proc.returncode == 0, proc.stderr
        info = _mounted(mnt)
        assert info is not None and "fuse.histfs" in info
        assert {"nosuid", "nodev", "ro"} <= set(info.split()[5].split(","))
        # host=mx1: the host's snapshots at the top, and `last`.
        assert (mnt / "last" / "mail" / "cur" / "1.eml").read_text() == (
            src / "cur" / "1.eml").read_text()
        proc = _run("umount", str(mnt))
        assert proc.returncode == 0, proc.stderr
        assert _mounted(mnt) is None
    finally:
        unmount(mnt)


@pytest.mark.timeout(120)
def test_mount_from_an_fstab_line(backed_up: tuple[Path, Path], tmp_path: Path,
                                  on_mounts_path: None) -> None:
    repo, _ = backed_up
    mnt = tmp_path / "backups"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"# a test fstab\n{repo}  {mnt}  fuse.histfs  "
                     "ro,allow_other,_netdev,nofail,x-systemd.automount  0 0\n")
    try:
        proc = _run("mount", "-T", str(fstab), str(mnt))
        assert proc.returncode == 0, proc.stderr
        assert _mounted(mnt) is not None
        names = os.listdir(mnt / "mx1")
        assert "last" in names and len(names) == 2
        proc = _run("umount", str(mnt))
        assert proc.returncode == 0, proc.stderr
        assert _mounted(mnt) is None
    finally:
        unmount(mnt)


@pytest.mark.timeout(60)
def test_bad_fstab_options_are_one_line_errors(backed_up: tuple[Path, Path],
                                               tmp_path: Path) -> None:
    repo, _ = backed_up
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for opts, words in (("rw", "read-only"), ("ro,colour=blue", "unknown mount option")):
        proc = histfs(str(repo), str(mnt), "-o", opts)
        assert proc.returncode == 2 and words in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1
        assert _mounted(mnt) is None


@pytest.mark.timeout(120)
def test_encrypted_repository_with_a_passphrase_file(tmp_path: Path,
                                                     on_mounts_path: None) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "secret.txt").write_text("only with the passphrase\n")
    pass_file = tmp_path / "passphrase"
    pass_file.write_text("fstab passphrase\n")
    pass_file.chmod(0o600)
    repo = tmp_path / "repo"
    env = {"HISTFS_PASSPHRASE_FILE": str(pass_file)}
    histfs("init", str(repo), env=env, check=0)
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"d={src}", env=env, check=0)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HISTFS_PASS")}
    try:
        proc = subprocess.run(["mount", "-t", "fuse.histfs", str(repo), str(mnt), "-o",
                               f"ro,passphrase_file={pass_file}"], capture_output=True,
                              text=True, timeout=60, env=clean)
        assert proc.returncode == 0, proc.stderr
        assert (mnt / "mx1" / "last" / "d" / "secret.txt").read_text() == (
            "only with the passphrase\n")
        assert _run("umount", str(mnt)).returncode == 0
    finally:
        unmount(mnt)
