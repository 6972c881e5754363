"""Two backups of one host never run at once; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from index.model.repository import Repository
from tests.conftest import backup_json, histfs


def _source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(8):
        (src / f"f{i}").write_bytes(os.urandom(10 * 1024 * 1024))
    return src


def test_second_backup_fails_clearly_while_one_runs(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    held = repo.lock("backup-mx1", "backup of mx1")
    held.acquire()
    try:
        proc = histfs("backup", "--repo", str(repo.root), "--host", "mx1", f"d={src}")
    finally:
        held.release()
    assert proc.returncode == 2
    assert proc.stderr.startswith("histfs: error: repository is locked: backup of mx1 by pid "
                                  f"{os.getpid()} on {socket.gethostname()}")
    assert repo.snapshots() == []
    # Another host is not held up by it.
    held.acquire()
    try:
        backup_json(repo.root, f"d={src}", host="mx2")
    finally:
        held.release()


def test_lock_wait_lets_the_second_backup_follow(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    held = repo.lock("backup-mx1", "backup of mx1")
    held.acquire()
    timer = threading.Timer(1.5, held.release)
    timer.start()
    try:
        summary = backup_json(repo.root, f"d={src}", extra=("--lock-wait", "30"))
    finally:
        timer.join()
    assert summary["exit_status"] == 0


def test_two_real_backups_at_once(repo: Repository, tmp_path: Path) -> None:
    src = _source(tmp_path)
    cmd = [sys.executable, "-m", "histfs", "backup", "--repo", str(repo.root), "--host", "mx1",
           "--json", f"d={src}"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[2] == 2)
    assert "repository is locked: backup of mx1" in loser[1]
    winner = next(r for r in results if r[2] == 0)
    (ref,) = repo.snapshots("mx1")
    assert json.loads(winner[0])["snapshot"] == ref.name
    with repo.open_snapshot(ref) as snap:
        for i in range(8):
            e = snap.resolve(f"d/f{i}")
            assert snap.read(e, 0, e.size) == (src / f"f{i}").read_bytes()


def test_lock_of_a_dead_process_is_taken_over(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (repo.root / "locks" / "backup-mx1.lock").write_text(json.dumps({
        "machine": socket.gethostname(), "pid": dead.pid, "since": "2026-01-01T00:00:00Z",
        "purpose": "backup of mx1"}))
    summary = backup_json(repo.root, f"d={src}")
    assert summary["exit_status"] == 0
    assert not (repo.root / "locks" / "backup-mx1.lock").exists()


def test_lock_of_another_machine_is_respected_until_stale(repo: Repository,
                                                           tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_text("x")
    lock = repo.root / "locks" / "backup-mx1.lock"
    lock.write_text(json.dumps({"machine": "elsewhere", "pid": 1, "since": "x",
                                "purpose": "backup of mx1"}))
    proc = histfs("backup", "--repo", str(repo.root), "--host", "mx1", f"d={src}")
    assert proc.returncode == 2 and "pid 1 on elsewhere" in proc.stderr
    # Not refreshed for an hour: its holder is gone.
    old = time.time() - 3600
    os.utime(lock, (old, old))
    backup_json(repo.root, f"d={src}")


def test_two_hosts_back_up_at_once(repo: Repository, tmp_path: Path, figures) -> None:
    """Backups of different hosts do not wait for each other; both snapshots
    are whole and the repository is sound. Chunks both store at the same
    moment may be stored twice; gc keeps either copy, data stays right."""
    src = _source(tmp_path)
    own = tmp_path / "own"
    own.mkdir()
    (own / "mx2-only").write_bytes(os.urandom(5 * 1024 * 1024))
    procs = [subprocess.Popen([sys.executable, "-m", "histfs", "backup", "--repo",
                               str(repo.root), "--host", host, "--json", f"d={src}",
                               f"o={own}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for host in ("mx1", "mx2")]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    assert [r[2] for r in results] == [0, 0], results
    for host in ("mx1", "mx2"):
        (ref,) = repo.snapshots(host)
        with repo.open_snapshot(ref) as snap:
            for i in range(8):
                e = snap.resolve(f"d/f{i}")
                assert snap.read(e, 0, e.size) == (src / f"f{i}").read_bytes()
            e = snap.resolve("o/mx2-only")
            assert snap.read(e, 0, e.size) == (own / "mx2-only").read_bytes()
    histfs("check", "--repo", str(repo.root), "--read-data", check=0)
    added = [json.loads(r[0])["bytes_added"] for r in results]
    figures(f"two hosts at once: both snapshots whole; bytes stored {added} "
            "for 85 MB each")
