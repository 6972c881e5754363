"""`histfs restore --skip-existing`: what is missing in the target is
restored, what exists is left exactly as it is."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import histfs

FILES = {"john/cur/1.eml": b"one", "john/cur/2.eml": b"two", "john/cur/3.eml": b"three",
         "john/new/4.eml": b"four", "mary/cur/5.eml": b"five"}


def _state(root: Path) -> dict[str, tuple[int, int, int, bytes]]:
    """Every path below `root`: (inode, mode, mtime, content or link target)."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            data = (os.readlink(path).encode() if path.is_symlink()
                    else path.read_bytes() if path.is_file() else b"")
            found[str(path.relative_to(root))] = (st.st_ino, st.st_mode, st.st_mtime_ns, data)
    return found


@pytest.fixture
def restored(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A repository with a backup of a small Maildir tree (a symlink and a
    hard link too), and a full restore of it: (repo, source, target)."""
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    source = tmp_path / "src"
    for rel, data in FILES.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    (source / "john/latest").symlink_to("cur/3.eml")
    os.link(source / "mary/cur/5.eml", source / "mary/5-again.eml")
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"mail={source}", check=0)
    target = tmp_path / "target"
    histfs("restore", "--repo", str(repo), "last", "--target", str(target), check=0)
    return repo, source, target


@pytest.mark.timeout(120)
def test_a_directory_with_one_file_missing_is_completed(
        restored: tuple[Path, Path, Path]) -> None:
    repo, source, target = restored
    john = target / "mail/john/cur"
    (john / "2.eml").unlink()
    # Local edits that must survive: content, mode, a replaced symlink.
    (john / "1.eml").write_bytes(b"edited here")
    os.utime(john / "1.eml", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    os.chmod(john / "3.eml", 0o600)
    (target / "mail/john/latest").unlink()
    (target / "mail/john/latest").symlink_to("somewhere/else")
    os.utime(john, ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    before = _state(target)

    proc = histfs("restore", "--repo", str(repo), "last", "--target", str(target),
                  "--skip-existing", check=0)
    assert "error" not in proc.stderr and "warning" not in proc.stderr
    # The symlink, four messages and a second name of one.
    assert proc.stdout.splitlines()[1] == "skipped    6 existing, left as they were"
    after = _state(target)
    assert after["mail/john/cur/2.eml"][3] == b"two"
    assert os.lstat(john / "2.eml").st_mtime_ns == os.lstat(source / "john/cur/2.eml").st_mtime_ns
    del after["mail/john/cur/2.eml"]
    # Everything else as it was, to the inode, mode and mtime (the
    # directory's mtime too, which the new file had moved).
    assert after == before


@pytest.mark.timeout(120)
def test_skip_existing_json_and_paths(restored: tuple[Path, Path, Path]) -> None:
    repo, _, target = restored
    (target / "mail/mary/cur/5.eml").unlink()
    (target / "mail/john/new").rename(target / "mail/john/new-moved")
    before = _state(target)
    proc = histfs("restore", "--repo", str(repo), "last", "mail/john", "mail/mary/cur",
                  "--target", str(target), "--skip-existing", "--json", check=0)
    summary = json.loads(proc.stdout)
    # john/new came back whole; mary's message as a file of its own, its
    # other link being left as it was.
    assert (summary["files"], summary["directories"], summary["errors"]) == (2, 1, [])
    assert summary["skipped"] == 4
    assert (target / "mail/john/new/4.eml").read_bytes() == b"four"
    assert (target / "mail/mary/cur/5.eml").read_bytes() == b"five"
    after = _state(target)
    assert {k: v for k, v in after.items() if k in before} == before


@pytest.mark.timeout(60)
def test_skip_existing_and_overwrite_exclude_each_other(
        restored: tuple[Path, Path, Path]) -> None:
    repo, _, target = restored
    proc = histfs("restore", "--repo", str(repo), "last", "--target", str(target),
                  "--skip-existing", "--overwrite", check=2)
    assert proc.stderr == ("histfs: error: --overwrite and --skip-existing exclude each "
                           "other: give one\n")
