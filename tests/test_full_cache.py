"""A backup whose local cache (HISTFS_CACHE_DIR) runs out of space, on a
real tmpfs: from the start (1 MB), and part way through the walk or the
index build (a larger one, filled up to a chosen amount).

The cache's LMDB files were written through a shared memory map, and a
write through a map into a full file system ends the process with SIGBUS:
exit 135, no message, the lock and temporary files left behind, no
metrics. Now the run fails like any other: exit 2 and one line naming the
cache directory and the space it needed, the lock released (a second
backup with a roomy cache works), nothing left in the repository's tmp/ or
in the cache, and the metrics file written with exit status 2.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import histfs


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """`tmpfs(name, size)` mounts a tmpfs of `size` at tmp_path/name;
    every one is unmounted at teardown, lazily if busy."""
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path:
        path = tmp_path / name
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs",
                        str(path)], check=True)
        mounted.append(path)
        return path

    yield mount
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _mail(root: Path, boxes: int, per_box: int, seed: int) -> None:
    rng = random.Random(seed)
    for b in range(boxes):
        cur = root / f"user{b:02d}" / "cur"
        cur.mkdir(parents=True)
        for i in range(per_box):
            (cur / f"{1700000000 + i}.M{i}P{b}.mx1:2,S").write_bytes(
                rng.randbytes(rng.randint(40, 400)))


def _exit_status(prom: Path) -> float:
    for family in text_string_to_metric_families(prom.read_text()):
        for sample in family.samples:
            if sample.name == "histfs_backup_exit_status":
                assert sample.labels == {"host": "mx1"}
                return sample.value
    raise AssertionError(f"no exit status in {prom.read_text()}")


def _assert_failed_cleanly(proc: subprocess.CompletedProcess[str], repo: Path, cache: Path,
                           prom: Path, phase: str | None) -> str:
    """Exit 2, one line naming the cache and the space needed; no lock, no
    temporary file in the repository or the cache; metrics with status 2."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    m = re.fullmatch(rf"histfs: error: the local cache ({re.escape(str(cache))}/\S+) is full: "
                     rf"(.*) needed ([0-9.]+ [kM]?B) more, ([0-9.]+ [kM]?B) free "
                     r"\(free some space there, or set HISTFS_CACHE_DIR to a larger local "
                     r"disk\)", lines[0])
    assert m is not None, lines[0]
    assert (phase or "") in m.group(2), lines[0]
    assert proc.stdout == ""
    assert os.listdir(repo / "tmp") == []
    assert os.listdir(repo / "locks") == []
    left = [p.name for p in Path(m.group(1)).iterdir()
            if p.name.startswith(("staging-", "index-"))]
    assert left == []
    assert _exit_status(prom) == 2
    return f"{m.group(2)} needed {m.group(3)} more, {m.group(4)} free"


@pytest.mark.timeout(120)
def test_backup_with_a_one_megabyte_cache(tmp_path: Path,
                                          tmpfs: Callable[[str, str], Path],
                                          figures: Callable[[str], None]) -> None:
    cache = tmpfs("cache", "1m")
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    _mail(src, boxes=10, per_box=300, seed=1)
    prom = tmp_path / "histfs.prom"
    histfs("init", "--encryption", "none", str(repo), check=0)
    proc = histfs("backup", "--repo", str(repo), "--host", "mx1", "--metrics-file", str(prom),
                  f"mail={src}", env={"HISTFS_CACHE_DIR": str(cache)})
    # Whichever of the cache's files grows first finds the disk full.
    line = _assert_failed_cleanly(proc, repo, cache, prom, None)
    assert histfs("snapshots", "--repo", str(repo), "--json", check=0).stdout.strip() == "[]"

    # The lock was released: a backup with room in its cache runs at once.
    roomy = {"HISTFS_CACHE_DIR": str(tmp_path / "roomy")}
    histfs("backup", "--repo", str(repo), "--host", "mx1", "--metrics-file", str(prom),
           f"mail={src}", env=roomy, check=0)
    assert _exit_status(prom) == 0
    histfs("check", "--repo", str(repo), env=roomy, check=0)
    figures(f"1 MB tmpfs cache, 3,000 files: exit 2, {line}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("phase", ["staging database", "building the snapshot index"])
def test_cache_fills_during_the_backup(tmp_path: Path, tmpfs: Callable[[str, str], Path],
                                       phase: str, figures: Callable[[str], None]) -> None:
    """A first backup runs with room to spare; then the cache's disk is filled
    so that the second one (of the same files: no new data, an index as large
    as the first) runs out of room while staging its 2,000 files, or once
    they are staged, while building the index."""
    cache = tmpfs("cache", "16m")
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    _mail(src, boxes=20, per_box=100, seed=2)
    prom = tmp_path / "histfs.prom"
    env = {"HISTFS_CACHE_DIR": str(cache)}
    histfs("init", "--encryption", "none", str(repo), check=0)
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"mail={src}", env=env, check=0)
    # The index's LMDB file, as the cache keeps it (stored compressed).
    (copy,) = cache.rglob("indexes/mx1/*.idx")
    index_size = copy.stat().st_size
    assert index_size > 256 * 1024, index_size

    # Staging takes about half an index's size; then the index is built
    # beside it.
    free = index_size // 8 if phase == "staging database" else index_size * 5 // 4
    vfs = os.statvfs(cache)
    filler = cache / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, vfs.f_bavail * vfs.f_frsize - free)
    proc = histfs("backup", "--repo", str(repo), "--host", "mx1", "--metrics-file", str(prom),
                  f"mail={src}", env=env)
    line = _assert_failed_cleanly(proc, repo, cache, prom, phase)
    assert len(os.listdir(repo / "snapshots" / "mx1")) == 1

    filler.unlink()
    histfs("backup", "--repo", str(repo), "--host", "mx1", "--metrics-file", str(prom),
           f"mail={src}", env=env, check=0)
    assert _exit_status(prom) == 0
    assert len(os.listdir(repo / "snapshots" / "mx1")) == 2
    histfs("check", "--repo", str(repo), env=env, check=0)
    figures(f"{free // 1024} KiB free, {index_size // 1024} KiB index: exit 2, {line}")


@pytest.mark.timeout(60)
def test_writes_beyond_the_reservation_fail_cleanly(tmp_path: Path,
                                                    tmpfs: Callable[[str, str], Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Should a transaction outgrow the room allocated for it (an estimate
    too low, a file system without fallocate), LMDB's own write fails on the
    full disk (ENOSPC, or EIO for a short write), and that is the same
    one-line error, not a crash."""
    from index.errors import CacheFull
    from index.format.types import Kind
    from index.store.local_space import Reservation
    from writer.staging import StagedEntry, Staging

    cache = tmpfs("cache", "1m")
    monkeypatch.setattr(Reservation, "ensure", lambda self, upcoming: None)
    staging = Staging(cache / "staging-1-0.lmdb")
    entry = StagedEntry.from_stat(Kind.REGULAR, os.lstat(tmp_path))
    entry.data = b"x" * 200
    with pytest.raises(CacheFull) as failed:
        for i in range(100_000):
            staging.put(f"mail\0{i:06d}".encode(), entry)
        staging.commit()
    staging.close()
    assert str(failed.value).startswith(f"the local cache {cache} is full: the backup's "
                                        "staging database needed more, "), failed.value
    assert os.listdir(cache) == []
