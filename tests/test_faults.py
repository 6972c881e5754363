"""Backups under faults: a repository that runs out of space, a source disk
that returns EIO.

A full repository stops the backup (exit 2, one clear line on stderr) and
leaves it exactly as it was: nothing published, `check` passes, and once
space is freed the next backup succeeds. A source file that cannot be read
is a warning (exit 1): it is named and counted, and the snapshot is
published with everything else.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from index.model.repository import Repository
from index.store.packs import list_packs
from tests.conftest import backup_json, histfs, reap, unmount
from tests.trees import snapshot_state, source_state

MIB = 1024 * 1024
FAULTFS = Path(__file__).with_name("faultfs.py")
State = dict[bytes, tuple[object, ...]]


# -- fixtures -------------------------------------------------------------

@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str, str], Path]]:
    """`tmpfs(name, size)` mounts a tmpfs of `size` (e.g. "8m") at
    tmp_path/name; every one is unmounted at teardown, lazily if busy."""
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


class FaultFs:
    """A running tests/faultfs.py; see the `faultfs` fixture."""

    def __init__(self, source: Path, mountpoint: Path, control: Path) -> None:
        self.source = source
        self.path = mountpoint
        self.control = control
        self.log = mountpoint.parent / f"{mountpoint.name}.log"
        mountpoint.mkdir()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(FAULTFS), str(source), str(mountpoint),
                 "--control", str(control)], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            while not os.path.ismount(mountpoint):
                if self.proc.poll() is not None:
                    raise AssertionError(f"faultfs exited: {self.log.read_text()}")
                if time.monotonic() > deadline:
                    raise AssertionError("faultfs did not come up")
                time.sleep(0.05)
        except BaseException:
            self.stop()  # the fixture never saw this one
            raise

    def fail_reads(self, *names: str) -> None:
        """Make reads of these files fail from now on (`NAME[@BYTES]`)."""
        self.control.write_text("".join(f"{n}\n" for n in names))

    def stop(self) -> None:
        """Unmount (lazily if busy), then reap the process, killing it if need be."""
        unmount(self.path)
        reap(self.proc)


@pytest.fixture
def faultfs(tmp_path: Path) -> Iterator[Callable[[Path], FaultFs]]:
    """`faultfs(source)` serves `source` at tmp_path/"faultfs"; it is
    unmounted and its process reaped at teardown, whatever happened."""
    started: list[FaultFs] = []

    def start(source: Path) -> FaultFs:
        fs = FaultFs(source, tmp_path / "faultfs", tmp_path / "faultfs.control")
        started.append(fs)
        return fs

    yield start
    for fs in started:
        fs.stop()


# -- helpers --------------------------------------------------------------

def _snapshot_names(repo_path: Path) -> list[str]:
    """The snapshots of mx1, asked both of the command and of the library."""
    listed = json.loads(histfs("snapshots", "--repo", str(repo_path), "--json",
                               check=0).stdout)
    repo = Repository.open(repo_path)
    try:
        names = [r.name for r in repo.snapshots("mx1")]
    finally:
        repo.close()
    assert [r["name"] for r in listed] == names
    return names


def _read_back(repo_path: Path, expected: dict[str, State]) -> None:
    """Exactly these snapshots are listed and each reads back as expected."""
    repo = Repository.open(repo_path)
    try:
        refs = {r.name: r for r in repo.snapshots("mx1")}
        assert sorted(refs) == sorted(expected)
        for name, state in expected.items():
            with repo.open_snapshot(refs[name]) as snap:
                assert snapshot_state(snap, "data") == state, name
    finally:
        repo.close()


def _packs(repo_path: Path) -> set[bytes]:
    repo = Repository.open(repo_path)
    try:
        return set(list_packs(repo.storage))
    finally:
        repo.close()


def _mail(root: Path, rng: random.Random, boxes: int, per_box: int,
          size: tuple[int, int]) -> None:
    for b in range(boxes):
        cur = root / f"user{b:02d}" / "cur"
        cur.mkdir(parents=True)
        for i in range(per_box):
            (cur / f"{1700000000 + i}.M{i}P{b}.mx1:2,S").write_bytes(
                rng.randbytes(rng.randint(*size)))


def _assert_failed_cleanly(proc: subprocess.CompletedProcess[str], repo_path: Path,
                           phase: str) -> None:
    """Exit 2 with one line naming the cause; no file left behind in tmp/."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("histfs: error: no space left on the repository"), lines
    assert str(repo_path) in lines[0] and phase in lines[0], lines
    assert proc.stdout == ""
    assert os.listdir(repo_path / "tmp") == []
    histfs("check", "--repo", str(repo_path), check=0)


# -- a full repository ----------------------------------------------------

@pytest.mark.timeout(60)
def test_no_space_while_writing_packs(tmp_path: Path, tmpfs: Callable[[str, str], Path],
                                      figures: Callable[[str], None]) -> None:
    """The repository fills up while a large file's chunks are packed."""
    fs = tmpfs("fs", "8m")
    repo_path = fs / "repo"
    histfs("init", "--encryption", "none", str(repo_path), check=0)
    rng = random.Random(1)
    src = tmp_path / "src"
    _mail(src, rng, boxes=3, per_box=20, size=(200, 5000))
    first = backup_json(repo_path, f"data={src}")
    expected = {str(first["snapshot"]): source_state(src)}
    (src / "dump.sql").write_bytes(rng.randbytes(12 * MIB))  # does not compress

    proc = histfs("backup", "--repo", str(repo_path), "--host", "mx1", f"data={src}")
    _assert_failed_cleanly(proc, repo_path, "writing a pack")
    assert _snapshot_names(repo_path) == list(expected)
    _read_back(repo_path, expected)

    subprocess.run(["mount", "-o", "remount,size=64m", str(fs)], check=True)
    after = backup_json(repo_path, f"data={src}")
    assert after["files_failed"] == 0 and after["bytes_added"] >= 12 * MIB
    expected[str(after["snapshot"])] = source_state(src)
    _read_back(repo_path, expected)
    histfs("check", "--repo", str(repo_path), "--read-data", check=0)
    figures("ENOSPC at pack write: exit 2, one-line error, nothing published, "
            "check passes, next backup ok after remount")


@pytest.mark.timeout(60)
def test_no_space_while_writing_the_index(tmp_path: Path,
                                          tmpfs: Callable[[str, str], Path],
                                          figures: Callable[[str], None]) -> None:
    """The repository fills up while the snapshot index is written: the
    second backup of unchanged mail stores no pack data, only an index the
    size of the first one, and half of that is all the space left."""
    fs = tmpfs("fs", "16m")
    repo_path = fs / "repo"
    histfs("init", "--encryption", "none", str(repo_path), check=0)
    src = tmp_path / "src"
    _mail(src, random.Random(2), boxes=20, per_box=100, size=(40, 200))
    first = backup_json(repo_path, f"data={src}")
    state = source_state(src)  # the source does not change in this test
    expected = {str(first["snapshot"]): state}
    index_size = (repo_path / "snapshots" / "mx1" / f"{first['snapshot']}.idx").stat().st_size
    assert index_size > 128 * 1024  # far more than the pages a lock file takes
    packs = _packs(repo_path)

    vfs = os.statvfs(fs)
    free = vfs.f_bavail * vfs.f_frsize
    filler = fs / "filler"
    with open(filler, "wb") as f:
        os.posix_fallocate(f.fileno(), 0, free - index_size // 2)
    proc = histfs("backup", "--repo", str(repo_path), "--host", "mx1", f"data={src}")
    _assert_failed_cleanly(proc, repo_path, "writing the snapshot index")
    assert _packs(repo_path) == packs  # the failure came after the (no) pack data
    assert _snapshot_names(repo_path) == list(expected)
    _read_back(repo_path, expected)

    filler.unlink()
    after = backup_json(repo_path, f"data={src}")
    assert after["bytes_added"] == 0 and after["files_unchanged"] == 2000
    expected[str(after["snapshot"])] = state
    _read_back(repo_path, expected)
    figures(f"ENOSPC at index write ({index_size // 1024} KiB index, "
            f"{index_size // 2048} KiB free): exit 2, one-line error, nothing published, "
            "check passes, next backup ok after freeing space")


# -- a failing source disk ------------------------------------------------

@pytest.mark.timeout(60)
def test_source_read_errors(repo: Repository, tmp_path: Path, faultfs: Callable[[Path], FaultFs],
                            figures: Callable[[str], None]) -> None:
    """Reads of two files fail with EIO (a small one at once, a 12 MiB one
    after 9 MB, when some of its chunks are stored already) while the rest
    of the source reads fine.

    Intended behaviour (writer/backup.py: a file whose read fails is
    reported, counted in `files_failed` and left out): the backup exits 1,
    stderr and the `--json` warnings name each file, and the snapshot is
    published with every other file exact. A failed file is absent from the
    new snapshot, neither a mix of old and new bytes nor its previous
    version carried over; its previous version stays readable in the
    earlier snapshot. Once reads work again, the next backup stores it.
    """
    rng = random.Random(3)
    src = tmp_path / "src"
    _mail(src, rng, boxes=2, per_box=10, size=(200, 5000))
    (src / "big.bin").write_bytes(rng.randbytes(12 * MIB))
    small = src / "user01" / "cur" / "1700000004.M4P1.mx1:2,S"
    fs = faultfs(src)
    part = f"data={fs.path}"
    repo_path = repo.root
    first = backup_json(repo_path, part)
    expected = {str(first["snapshot"]): source_state(src)}

    # New versions of both files (and of one that reads fine), so that the
    # next backup has to read them; then the disk goes bad under two of them.
    (src / "big.bin").write_bytes(rng.randbytes(12 * MIB))
    small.write_bytes(b"a new version of the message\n" * 20)
    (src / "user00" / "cur" / "1700000001.M1P0.mx1:2,S").write_bytes(b"changed, readable\n")
    fs.fail_reads("big.bin@9000000", small.name)
    proc = histfs("backup", "--repo", str(repo_path), "--host", "mx1", "--json", part)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    summary = json.loads(proc.stdout)
    assert summary["exit_status"] == 1
    assert summary["files_failed"] == 2, json.dumps(summary)
    # big.bin failed mid-file: chunks read before the error were stored.
    assert summary["bytes_read"] > 2 * MIB and summary["bytes_added"] > 2 * MIB
    warnings = summary["warnings"]
    assert isinstance(warnings, list) and len(warnings) == 2, warnings
    failed_rel = {b"big.bin", os.fsencode(small.relative_to(src))}
    for rel in failed_rel:
        shown = f"{fs.path}/{os.fsdecode(rel)}: Input/output error"
        assert shown in warnings
        assert f"histfs: warning: {shown}" in proc.stderr.splitlines()
    now = source_state(src)
    expected[str(summary["snapshot"])] = {k: v for k, v in now.items() if k not in failed_rel}
    _read_back(repo_path, expected)  # the earlier snapshot still has the old versions
    histfs("check", "--repo", str(repo_path), check=0)

    fs.fail_reads()
    last = backup_json(repo_path, part)
    assert last["files_failed"] == 0 and last["warnings"] == []
    expected[str(last["snapshot"])] = now
    _read_back(repo_path, expected)
    figures("EIO on 2 source files (one mid-file): exit 1, both named and counted, "
            "snapshot published without them, earlier versions intact")

