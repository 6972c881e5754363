"""Garbage collection on real repositories, through the command line:
space comes back after prune (also from packs that are only partly unused),
every kept snapshot still restores byte for byte, `check --read-data`
passes; gc killed with SIGKILL at each step loses nothing; a backup running
alongside gc (paused at the exact moment that matters, or just started
together) finds every chunk it deduplicated against; and a file being read
through a mount keeps reading correct bytes while prune and gc run."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Mount, backup_json, histfs

Contents = dict[str, str]


def _contents(root: Path) -> Contents:
    """Relative path -> SHA-256 of every regular file below `root`."""
    found = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _restored(repo: Path, name: str, tmp_path: Path, host: str = "mx1") -> Contents:
    target = tmp_path / f"restore-{name}-{random.randrange(1 << 30)}"
    histfs("restore", "--repo", str(repo), "--host", host, name, "--target", str(target),
           check=0)
    got = _contents(target / "mail")
    shutil.rmtree(target)
    return got


def _names(repo: Path, host: str = "mx1") -> list[str]:
    proc = histfs("snapshots", "--repo", str(repo), "--host", host, "--json", check=0)
    return [row["name"] for row in json.loads(proc.stdout)]


def _packs_bytes(repo: Path) -> int:
    return sum(p.stat().st_size for p in (repo / "packs").rglob("*") if p.is_file())


def _mail_day(src: Path, rng: random.Random, day: int) -> None:
    """One day of a mailbox: 40 new messages, 5% of the old ones deleted at
    random (scattered through the packs), and a dump rewritten."""
    cur = src / "cur"
    cur.mkdir(parents=True, exist_ok=True)
    existing = sorted(cur.iterdir())
    for victim in rng.sample(existing, len(existing) // 20):
        victim.unlink()
    for i in range(40):
        (cur / f"{day:02}-{i:03}:2,S").write_bytes(rng.randbytes(rng.randrange(2_000, 30_000)))
    (src / "dump.sql").write_bytes(rng.randbytes(600_000))


def _history(tmp_path: Path, days: int, seed: int = 1) -> tuple[Path, Path, dict[str, Contents]]:
    """A repository with one snapshot a day; the source's contents at each."""
    repo, src = tmp_path / "repo", tmp_path / "src"
    histfs("init", "--encryption", "none", str(repo), check=0)
    rng = random.Random(seed)
    states: dict[str, Contents] = {}
    for day in range(days):
        _mail_day(src, rng, day)
        name = str(backup_json(repo, f"mail={src}")["snapshot"])
        states[name] = _contents(src)
    return repo, src, states


@pytest.mark.timeout(300)
def test_prune_and_gc_give_space_back_and_keep_every_kept_snapshot(tmp_path: Path) -> None:
    repo, _, states = _history(tmp_path, 10)
    before = _packs_bytes(repo)
    histfs("prune", "--repo", str(repo), "--keep-last", "3", check=0)
    kept = _names(repo)
    assert kept == list(states)[-3:]
    proc = histfs("gc", "--repo", str(repo), "--json", check=0)
    result = json.loads(proc.stdout)
    after = _packs_bytes(repo)
    assert result["packs_deleted"] > 0 and result["packs_rewritten"] > 0
    assert result["bytes_freed"] == before - after
    assert not list((repo / "garbage").iterdir())

    # A fresh repository holding only the kept states is the lower bound.
    fresh = tmp_path / "fresh"
    histfs("init", "--encryption", "none", str(fresh), check=0)
    for name in kept:
        state_dir = tmp_path / f"state-{name}"
        histfs("restore", "--repo", str(repo), "--host", "mx1", name, "--target",
               str(state_dir), check=0)
        backup_json(fresh, f"mail={state_dir / 'mail'}")
    lower = _packs_bytes(fresh)
    print(f"\npacks: {before} bytes before, {after} after gc, {lower} in a fresh repository")
    assert after <= lower * 1.12  # at most --max-unused 10% left, plus pack overhead
    assert after < before * 0.6

    histfs("check", "--repo", str(repo), "--read-data", check=0)
    for name in kept:
        assert _restored(repo, name, tmp_path) == states[name]
    # A second gc finds nothing more to do.
    again = json.loads(histfs("gc", "--repo", str(repo), "--json", check=0).stdout)
    assert again["packs_deleted"] == 0 and again["packs_written"] == 0


@pytest.mark.timeout(600)
@pytest.mark.parametrize("point", ["gc-copied", "gc-listed", "gc-relocated-one",
                                   "gc-relocated", "gc-deleted-one"])
def test_gc_killed_at_each_step_loses_nothing(tmp_path: Path, point: str) -> None:
    repo, src, states = _history(tmp_path, 6, seed=2)
    histfs("prune", "--repo", str(repo), "--keep-last", "3", check=0)
    kept = _names(repo)
    proc = histfs("gc", "--repo", str(repo), "--grace", "0",
                  env={"HISTFS_TEST_CRASH_AT": point})
    assert proc.returncode == -9, (proc.returncode, proc.stderr)
    histfs("check", "--repo", str(repo), check=0)
    for name in kept:
        assert _restored(repo, name, tmp_path) == states[name]
    # The gc lock of the killed run is stale (its pid is gone): the next runs.
    histfs("gc", "--repo", str(repo), "--grace", "0", check=0)
    histfs("check", "--repo", str(repo), "--read-data", check=0)
    for name in kept:
        assert _restored(repo, name, tmp_path) == states[name]
    # And the next backup still works and reads back.
    _mail_day(src, random.Random(9), 99)
    name = str(backup_json(repo, f"mail={src}")["snapshot"])
    assert _restored(repo, name, tmp_path) == _contents(src)


def _wait_for(path: Path, proc: subprocess.Popen[bytes] | None = None,
              timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {path.name}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "histfs", *args],
                            env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("share", ["whole", "part"])
def test_backup_keeps_what_it_deduplicated_against_while_gc_runs(
        tmp_path: Path, share: str) -> None:
    """The backup deduplicates against chunks no snapshot uses any more,
    then pauses just before it builds its index; gc lists their packs and
    waits for it; the backup moves the chunks (its own copy when gc deleted
    the whole pack, gc's copy when gc rewrote it) and publishes."""
    repo, src = tmp_path / "repo", tmp_path / "src"
    histfs("init", "--encryption", "none", str(repo), check=0)
    rng = random.Random(3)
    (src / "cur").mkdir(parents=True)
    returning = {f"back-{i}": rng.randbytes(20_000) for i in range(30)}
    for name, data in returning.items():
        (src / "cur" / name).write_bytes(data)
    if share == "part":
        # Messages that stay keep the pack in use: gc rewrites it instead.
        for i in range(30):
            (src / "cur" / f"stays-{i}").write_bytes(rng.randbytes(20_000))
    first = str(backup_json(repo, f"mail={src}")["snapshot"])
    for name in returning:
        (src / "cur" / name).unlink()
    time.sleep(1.1)
    # A part left with no files is a warning.
    backup_json(repo, f"mail={src}", check=1 if share == "whole" else 0)
    histfs("prune", "--repo", str(repo), "--keep-last", "1", check=0)
    assert first not in _names(repo)
    # The messages come back (restored by a user, say): the next backup finds
    # their chunks in the repository and stores nothing for them.
    for name, data in returning.items():
        (src / "cur" / name).write_bytes(data)
    expected = _contents(src)

    pause = tmp_path / "pause"
    pause.mkdir()
    backup = _start("backup", "--repo", str(repo), "--host", "mx1", "--json", f"mail={src}",
                    env={"HISTFS_TEST_PAUSE_AT": f"before-index:{pause}"})
    _wait_for(pause / "before-index.reached", backup)
    gc = _start("gc", "--repo", str(repo), "--grace", "0", "--json")
    lists = repo / "garbage"
    deadline = time.monotonic() + 60
    while not (lists.is_dir() and any(lists.iterdir())):
        assert gc.poll() is None, gc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    assert gc.poll() is None  # gc waits for the backup that started before it
    (pause / "before-index.go").touch()
    out, err = backup.communicate(timeout=120)
    assert backup.returncode == 0, err
    summary = json.loads(out)
    # The 30 messages that came back are stored again (nothing else has
    # them); with share == "part" the 30 unchanged ones are found in gc's copy.
    assert summary["chunks_rescued"] == (30 if share == "whole" else 60)
    assert summary["chunks_added"] == 30
    gc_out, gc_err = gc.communicate(timeout=120)
    assert gc.returncode == 0, gc_err
    result = json.loads(gc_out)
    assert result["packs_deleted"] >= 1
    if share == "part":
        assert result["packs_rewritten"] >= 1
    histfs("check", "--repo", str(repo), "--read-data", check=0)
    assert _restored(repo, str(summary["snapshot"]), tmp_path) == expected


@pytest.mark.timeout(300)
def test_backup_and_gc_started_together(tmp_path: Path) -> None:
    repo, src, states = _history(tmp_path, 5, seed=4)
    histfs("prune", "--repo", str(repo), "--keep-last", "2", check=0)
    _mail_day(src, random.Random(5), 50)
    expected = _contents(src)
    backup = _start("backup", "--repo", str(repo), "--host", "mx1", "--json", f"mail={src}")
    gc = _start("gc", "--repo", str(repo), "--grace", "0", "--json")
    out, err = backup.communicate(timeout=120)
    assert backup.returncode == 0, err
    _, gc_err = gc.communicate(timeout=120)
    assert gc.returncode == 0, gc_err
    histfs("check", "--repo", str(repo), "--read-data", check=0)
    assert _restored(repo, json.loads(out)["snapshot"], tmp_path) == expected
    for name in _names(repo):
        if name in states:
            assert _restored(repo, name, tmp_path) == states[name]


def _deleted_fds(pid: int) -> list[str]:
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.endswith("(deleted)") and "/packs/" in target:
            found.append(target)
    return found


@pytest.mark.timeout(300)
def test_file_read_through_the_mount_stays_correct_through_prune_and_gc(
        tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    repo, src = tmp_path / "repo", tmp_path / "src"
    histfs("init", "--encryption", "none", str(repo), check=0)
    rng = random.Random(6)
    src.mkdir()
    big = rng.randbytes(12 << 20)
    (src / "big.dump").write_bytes(big)
    # 20 MiB of messages in the same packs as the dump, deleted tomorrow:
    # the packs the dump lives in become mostly unused and gc rewrites them.
    (src / "cur").mkdir()
    for i in range(20):
        (src / "cur" / f"m{i}").write_bytes(rng.randbytes(1 << 20))
    backup_json(repo, f"mail={src}")
    shutil.rmtree(src / "cur")
    time.sleep(1.1)
    # 1 file of 21 is a warning: the part shrank by more than half.
    kept = str(backup_json(repo, f"mail={src}", check=1)["snapshot"])

    mnt = mount_repo(repo)
    assert mnt.proc is not None
    path = mnt.path / "mx1" / kept / "mail" / "big.dump"
    half = len(big) // 2
    with open(path, "rb", buffering=0) as f:
        got = bytearray()
        while len(got) < half:
            got += f.read(128 << 10)
        histfs("prune", "--repo", str(repo), "--keep-last", "1", check=0)
        assert _names(repo) == [kept]
        result = json.loads(histfs("gc", "--repo", str(repo), "--grace", "5", "--json",
                                   check=0).stdout)
        assert result["packs_rewritten"] >= 1 and result["snapshots_relocated"] == 1
        # The mount lets go of the deleted packs, so their space comes back;
        # from then on only the relocated index can serve the rest.
        deadline = time.monotonic() + 30
        while _deleted_fds(mnt.proc.pid):
            assert time.monotonic() < deadline, _deleted_fds(mnt.proc.pid)
            time.sleep(0.5)
        while chunk := f.read(128 << 10):
            got += chunk
    assert bytes(got) == big
    assert path.read_bytes() == big


@pytest.mark.timeout(120)
def test_gc_deletes_leftover_temporary_files_older_than_a_day(tmp_path: Path) -> None:
    """What a killed writer left in tmp/ goes; what a running one is writing
    (fresh) stays."""
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    old = repo / "tmp" / ".0123456789abcdef01234567.tmp"
    old.write_bytes(b"x" * 5000)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    fresh = repo / "tmp" / ".fedcba9876543210fedcba98.tmp"
    fresh.write_bytes(b"y" * 300)
    proc = histfs("gc", "--repo", str(repo), "--grace", "0", "--json", check=0)
    result = json.loads(proc.stdout)
    assert (result["tmp_deleted"], result["tmp_bytes_deleted"]) == (1, 5000)
    assert not old.exists() and fresh.read_bytes() == b"y" * 300
    histfs("check", "--repo", str(repo), check=0)
