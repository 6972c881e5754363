"""The mount under load while the repository changes underneath it.

Eight reader threads walk and read every snapshot of a mounted repository,
file by file, comparing each file's bytes with what its source held when
that snapshot was taken, while a writer runs backup, prune and gc in a loop
for a fixed number of rounds. The only error a reader may see is ENOENT for
a snapshot the writer pruned; every byte read is right; every writer command
finishes (the mount never holds a writer up); the daemon's memory stays flat.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Mount, backup_json, histfs

HOST = "mx1"
Digests = dict[str, str]


def _digests(root: Path) -> Digests:
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _mail_round(src: Path, rng: random.Random, n: int) -> None:
    for box in range(4):
        cur = src / f"user{box}" / "cur"
        cur.mkdir(parents=True, exist_ok=True)
        existing = sorted(cur.iterdir())
        for victim in rng.sample(existing, len(existing) // 8):
            victim.unlink()
        for i in range(25):
            (cur / f"{n:03}-{i:02}:2,S").write_bytes(rng.randbytes(rng.randrange(500, 60_000)))
    (src / "dump.sql").write_bytes(rng.randbytes(4_000_000))


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Shared:
    """What the writer tells the readers, and what the readers saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.expected: dict[str, Digests] = {}
        self.doomed: set[str] = set()
        self.stop = threading.Event()
        self.errors: list[str] = []
        self.files_read = 0
        self.bytes_read = 0
        self.enoent = 0


def _reader(mnt: Path, shared: Shared, seed: int) -> None:
    rng = random.Random(seed)
    host_dir = mnt / HOST
    while not shared.stop.is_set():
        try:
            names = [n for n in os.listdir(host_dir) if n != "last"]
        except OSError as exc:
            shared.errors.append(f"listing {host_dir}: {exc}")
            return
        with shared.lock:
            names = [n for n in names if n in shared.expected]
        if not names:
            time.sleep(0.05)
            continue
        name = rng.choice(names)
        with shared.lock:
            expected = shared.expected[name]
        part = host_dir / name / "mail"
        stack = [part]
        while stack and not shared.stop.is_set():
            d = stack.pop()
            try:
                with os.scandir(d) as it:
                    entries = list(it)
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
                        continue
                    rel = str(Path(e.path).relative_to(part))
                    data = Path(e.path).read_bytes()
                    if hashlib.sha256(data).hexdigest() != expected.get(rel):
                        shared.errors.append(f"{name}/{rel}: wrong bytes")
                        return
                    with shared.lock:
                        shared.files_read += 1
                        shared.bytes_read += len(data)
            except OSError as exc:
                with shared.lock:
                    pruned = name in shared.doomed
                if exc.errno == errno.ENOENT and pruned:
                    shared.enoent += 1
                    break
                shared.errors.append(f"{name}: {exc!r}")
                return


def _load(tmp_path: Path, mount_repo: Callable[..., Mount], rounds: int, figures) -> None:
    rng = random.Random(rounds)
    repo, src = tmp_path / "repo", tmp_path / "src"
    histfs("init", "--encryption", "none", str(repo), check=0)
    shared = Shared()
    for n in range(3):
        _mail_round(src, rng, n)
        name = str(backup_json(repo, f"mail={src}")["snapshot"])
        shared.expected[name] = _digests(src)
    m = mount_repo(repo)
    assert m.proc is not None
    rss_start = _rss_kib(m.proc.pid)
    readers = [threading.Thread(target=_reader, args=(m.path, shared, i)) for i in range(8)]
    for t in readers:
        t.start()
    slowest: dict[str, float] = {}

    def timed(*args: str) -> None:
        start = time.monotonic()
        histfs(*args, check=0, timeout=300)
        slowest[args[0]] = max(slowest.get(args[0], 0.0), time.monotonic() - start)

    try:
        for n in range(3, 3 + rounds):
            _mail_round(src, rng, n)
            start = time.monotonic()
            name = str(backup_json(repo, f"mail={src}")["snapshot"])
            slowest["backup"] = max(slowest.get("backup", 0.0), time.monotonic() - start)
            with shared.lock:
                shared.expected[name] = _digests(src)
                live = sorted(set(shared.expected) - shared.doomed)
                shared.doomed.update(live[:-3])
            timed("prune", "--repo", str(repo), "--keep-last", "3")
            # More grace than the mount's 2 s index refresh: readers switch
            # to relocated indexes before the old packs go.
            timed("gc", "--repo", str(repo), "--grace", "3", "--max-unused", "5%")
            assert not shared.errors, shared.errors[:5]
    finally:
        shared.stop.set()
        for t in readers:
            t.join(timeout=60)
    assert not any(t.is_alive() for t in readers)
    assert not shared.errors, shared.errors[:5]
    rss_end = _rss_kib(m.proc.pid)
    histfs("check", "--repo", str(repo), "--read-data", check=0)
    assert shared.files_read > 0
    # Loose bound: the decoded-chunk cache (64 MiB) and mapped index pages
    # may fill, but no growth per round.
    assert rss_end < rss_start + 150_000, (rss_start, rss_end)
    figures(f"{rounds} rounds of backup+prune+gc under 8 readers: "
            f"{shared.files_read} files ({shared.bytes_read / 1e6:.0f} MB) read right, "
            f"{shared.enoent} ENOENT of pruned snapshots, no other error; slowest "
            + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(slowest.items()))
            + f"; mount RSS {rss_start // 1024} MiB at start, {rss_end // 1024} MiB at end")


@pytest.mark.timeout(600)
def test_readers_and_writers_together(tmp_path: Path, mount_repo: Callable[..., Mount],
                                      figures) -> None:
    _load(tmp_path, mount_repo, rounds=6, figures=figures)


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_readers_and_writers_together_long(tmp_path: Path,
                                           mount_repo: Callable[..., Mount],
                                           figures) -> None:
    _load(tmp_path, mount_repo, rounds=40, figures=figures)
