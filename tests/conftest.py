"""Shared fixtures: a private cache directory, repositories, CLI runners."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lmdb
import pytest

from index.format import codec
from index.format.compressed_index import MAGIC as COMPRESSED_MAGIC
from index.format.compressed_index import compress_index, decode_file, is_compressed
from index.format.config import ChunkerParams
from index.format.snapshot_format import DB_META, META_KEY
from index.model.chunk_index import ChunkIndex
from index.model.repository import Repository
from writer.filereader import FileContent, FileReader
from writer.packer import ChunkSink
from writer.stats import BackupStats

ROOT = Path(__file__).resolve().parents[1]


def read_through_filereader(repo: Repository, work: Path, path: Path,
                            params: ChunkerParams) -> tuple[FileContent, ChunkSink]:
    """`path` read as a backup reads a file, chunked with `params` into
    `repo` (a chunk index of its own under `work`); what the reader gave,
    and the sink it stored into (whose `chunk_id` names chunks)."""
    index = ChunkIndex(work / "chunks.lmdb")
    sink = ChunkSink(repo.storage, index, repo.config.chunk_id_key, 1, 32 << 20, BackupStats())
    with ThreadPoolExecutor(2) as pool:
        content = FileReader(sink, params, pool).read(bytes(path), lambda n: None)
    sink.flush()
    index.close()
    return content, sink


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own local cache directory."""
    path = tmp_path / "cache"
    monkeypatch.setenv("HISTFS_CACHE_DIR", str(path))
    monkeypatch.delenv("HISTFS_REPO", raising=False)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    """A new, empty repository."""
    r = Repository.init(tmp_path / "repo")
    yield r
    r.close()


def histfs(*args: str, env: dict[str, str] | None = None, check: int | None = None,
           timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `histfs` command in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "histfs", *args], capture_output=True, text=True,
        env=full_env, timeout=timeout, cwd=cwd,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def backup_json(repo_path: Path, *parts: str, host: str = "mx1", check: int = 0,
                extra: tuple[str, ...] = ()) -> dict[str, object]:
    """`histfs backup --json` and its decoded summary."""
    proc = histfs("backup", "--repo", str(repo_path), "--host", host, "--json",
                  *extra, *parts, check=check)
    summary: dict[str, object] = json.loads(proc.stdout)
    return summary


def reads_across_gc(location: str, src: Path, mount_repo: Callable[..., Mount]) -> None:
    """The nightly routine under a mount that stays up: backups, prune, and
    a gc that rewrites a pack and publishes a relocated index; files of the
    kept snapshot, read through the mount before and after, stay intact.

    `f1` is not read before gc (its chunks would stay in the daemon's chunk
    cache and hide where the mount looks for them); `f2` is, which opens the
    snapshot's index; a descriptor of `last/data/f1` is open across gc."""
    src.mkdir()
    f1, f2 = os.urandom(4 << 20), os.urandom(4 << 20)
    (src / "f1").write_bytes(f1)
    (src / "f2").write_bytes(os.urandom(4 << 20))
    histfs("backup", "--repo", location, "--host", "mx1", f"data={src}", check=0)
    (src / "f2").write_bytes(f2)
    proc = histfs("backup", "--repo", location, "--host", "mx1", "--json", f"data={src}",
                  check=0)
    second = json.loads(proc.stdout)["snapshot"]
    m = mount_repo(location)
    dated, last = m.path / "mx1" / second / "data", m.path / "mx1" / "last" / "data"
    for d in (dated, last):
        assert os.stat(d / "f1").st_size == len(f1)
        assert (d / "f2").read_bytes() == f2
    fd = os.open(last / "f1", os.O_RDONLY)
    try:
        histfs("prune", "--repo", location, "--keep-last", "1", check=0)
        proc = histfs("gc", "--repo", location, "--max-unused", "0%", "--grace", "3",
                      "--json", check=0)
        result = json.loads(proc.stdout)
        assert result["packs_rewritten"] >= 1 and result["snapshots_relocated"] == 1, result
        assert os.pread(fd, len(f1) + 1, 0) == f1
    finally:
        os.close(fd)
    for d in (dated, last):
        assert (d / "f1").read_bytes() == f1
        assert (d / "f2").read_bytes() == f2
    histfs("check", "--repo", location, "--read-data", check=0)


def copy_snapshot_index(source: Path, target: Path) -> None:
    """Copy an unencrypted snapshot index to `target`, a path
    `REPO/snapshots/<host>/<name>.idx`, with its metadata naming that host
    and name, as a backup at that place would have written it (readers
    refuse an index whose metadata names another place)."""
    shutil.copyfile(source, target)
    set_snapshot_place(target, target.parent.name, target.name.removesuffix(".idx"))


@contextlib.contextmanager
def plain_index(index: Path, write: bool = False) -> Iterator[Path]:
    """The LMDB file of an unencrypted stored index: the file itself when it
    is plain (format 1), else a decompressed copy beside it. `write`: the
    copy is compressed back into the stored file's place when the block
    ends (by a rename, as histfs publishes)."""
    with open(index, "rb") as f:
        if not is_compressed(f.read(len(COMPRESSED_MAGIC))):
            yield index
            return
    plain = index.with_name(f".{index.name}.plain")
    try:
        with open(index, "rb") as stored, open(plain, "wb") as out:
            decode_file(stored, out, str(index), compressed_allowed=True)
        yield plain
        if write:
            packed = index.with_name(f".{index.name}.packed")
            with open(plain, "rb") as f, open(packed, "wb") as out:
                compress_index(f, out)
            os.replace(packed, index)
    finally:
        plain.unlink(missing_ok=True)


def set_snapshot_place(index: Path, host: str, name: str) -> None:
    """Rewrite the host and name in the metadata of an unencrypted index."""
    with plain_index(index, write=True) as plain:
        env = lmdb.open(str(plain), subdir=False, max_dbs=8, lock=False)
        try:
            with env.begin(write=True) as txn:
                db = env.open_db(DB_META, txn=txn, create=False)
                meta = codec.unpack(txn.get(META_KEY, db=db))
                meta["host"], meta["name"] = host, name
                txn.put(META_KEY, codec.pack(meta), db=db)
        finally:
            env.close()


class Mount:
    """A histfs mount run in the foreground by a test; see `mount_repo`."""

    def __init__(self, repo: Path, mountpoint: Path, *options: str) -> None:
        self.repo = repo
        self.path = mountpoint
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = mountpoint.parent / f"{mountpoint.name}.log"

    def start(self) -> Mount:
        self.path.mkdir(exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "histfs", "mount", "--foreground", "--repo",
                 str(self.repo), *self.options, str(self.path)],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None:
                raise AssertionError(f"mount exited: {self.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError("mount did not come up")
            time.sleep(0.05)
        os.stat(self.path)
        return self

    def stop(self) -> None:
        """Unmount (lazily if need be) and reap the daemon."""
        unmount(self.path)
        if self.proc is not None:
            reap(self.proc, timeout=20)
            self.proc = None


def reap(proc: subprocess.Popen[Any], timeout: float = 10, terminate: bool = False) -> None:
    """Wait for a process the test started (after SIGTERM with `terminate`),
    killing it if it does not end within `timeout`: none is left behind."""
    if terminate:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def unmount(path: Path) -> None:
    """fusermount3 -u, falling back to a lazy unmount; quiet if not mounted."""
    if not os.path.ismount(path) and not _is_dead_mount(path):
        return
    if subprocess.run(["fusermount3", "-u", str(path)], capture_output=True).returncode:
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _is_dead_mount(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError:
        return True
    return False


@pytest.fixture
def mount_repo(tmp_path: Path) -> Iterator[Callable[..., Mount]]:
    """`mount_repo(repo_path, *options)` mounts; every mount is undone at teardown."""
    mounts: list[Mount] = []

    def start(repo: Path, *options: str, name: str = "mnt") -> Mount:
        m = Mount(repo, tmp_path / name, *options).start()
        mounts.append(m)
        return m

    yield start
    for m in mounts:
        m.stop()


# Figures that reliability tests report (trial counts, RSS, rates), printed
# together at the end of the run so that the README can quote them.
_FIGURES: list[tuple[str, str]] = []


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """`figures("10 kill -9 trials, 4 after publishing")` records one line,
    printed under the test's name in the run's terminal summary."""
    def record(line: str) -> None:
        _FIGURES.append((request.node.nodeid, line))
    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("reliability figures")
    for nodeid, line in _FIGURES:
        terminalreporter.write_line(f"{nodeid}: {line}")
