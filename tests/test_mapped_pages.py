"""Index pages touched through LMDB's memory map are handed back to the page
cache: in one process with a real LMDB file, and in a real mount that has
walked its snapshots (the pages no longer count in the daemon's RSS, and
the files still read correctly afterwards)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import lmdb
import pytest

from index.store.mapped_pages import drop_pages, mapped_ranges
from tests.conftest import Mount, backup_json, histfs


def _mapped_rss_kb(pid: int | str, inodes: set[int]) -> int:
    """Sum of the Rss lines of `pid`'s mappings of files with these inodes."""
    total = 0
    counting = False
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                counting = int(fields[4]) in inodes
            elif counting and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.mark.timeout(60)
def test_dropped_pages_leave_rss_and_read_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "data.lmdb"
    values = {b"%06d" % i: os.urandom(7000) for i in range(3000)}
    with lmdb.open(str(path), subdir=False, map_size=1 << 28) as env, env.begin(write=True) as txn:
        for key, value in values.items():
            txn.put(key, value)
    inode = {path.stat().st_ino}
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    try:
        with env.begin() as txn:
            assert dict(txn.cursor()) == values
        before = _mapped_rss_kb("self", inode)
        assert before > 15_000  # some 21 MB of values were touched

        ranges = mapped_ranges([path, tmp_path / "missing", tmp_path])
        assert ranges and all(start < end for start, end in ranges)
        drop_pages(ranges)
        assert _mapped_rss_kb("self", inode) < before // 10

        with env.begin() as txn:
            assert dict(txn.cursor()) == values
    finally:
        env.close()
    assert mapped_ranges([path]) == []


@pytest.mark.timeout(120)
def test_mount_hands_walked_index_pages_back(
        tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    for d in range(40):
        (src / f"d{d:02}").mkdir(parents=True)
        for f in range(250):
            (src / f"d{d:02}" / f"message {f:04}").write_bytes(b"x" * (f % 7))
    histfs("init", "--encryption", "none", str(repo), check=0)
    for _ in range(3):
        backup_json(repo, f"mail={src}")
    inodes = {p.stat().st_ino for p in (repo / "snapshots").rglob("*.idx")}

    mnt = mount_repo(repo)
    assert mnt.proc is not None
    host_dir = mnt.path / "mx1"
    walked = 0
    for snap in sorted(os.listdir(host_dir)):
        for _, dirs, files in os.walk(host_dir / snap):
            walked += len(dirs) + len(files)
    assert walked >= 3 * 10_000
    # The daemon hands the pages back about once a second.
    deadline = time.monotonic() + 10
    while (rss := _mapped_rss_kb(mnt.proc.pid, inodes)) > 256 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert rss <= 256, f"{rss} kB of snapshot index still mapped"
    # And the mount still answers from them.
    last = host_dir / "last" / "mail" / "d39" / "message 0006"
    assert last.read_bytes() == b"x" * 6
