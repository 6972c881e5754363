"""Backing up a source that changes while it is read (no downtime)."""

from __future__ import annotations

import os
import random
import threading
from pathlib import Path

import pytest

from index.format.types import Kind
from index.model.repository import Repository
from writer.backup import run_backup
from writer.parts import Part
from writer.walk import Walker


def _maildirs(root: Path, users: int, per_box: int) -> dict[bytes, str]:
    """Maildirs whose messages each hold a unique id; returns id -> box."""
    ids: dict[bytes, str] = {}
    for u in range(users):
        for box in ("cur", "new", "tmp"):
            (root / f"u{u:03d}" / box).mkdir(parents=True)
        for m in range(per_box):
            mid = f"<{u}.{m}@mx1>".encode()
            (root / f"u{u:03d}" / "new" / f"{u}{m:05d}.M{m}.mx1").write_bytes(
                b"Message-ID: " + mid + b"\n\n" + b"body " * 200)
            ids[mid] = f"u{u:03d}"
    return ids


def _message_ids(repo: Repository, part: str) -> list[bytes]:
    (ref,) = repo.snapshots()[-1:]
    found = []
    with repo.open_snapshot(ref) as snap:
        for _, entry in snap.walk(snap.resolve(part).entry_id):
            if entry.kind == Kind.REGULAR:
                head = snap.read(entry, 0, 100)
                found.append(head.split(b"\n")[0].removeprefix(b"Message-ID: "))
    return found


def test_message_moved_into_an_already_read_directory_is_kept(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    ids = _maildirs(src, users=1, per_box=3)
    moved: list[Path] = []
    original = Walker.scan_dir

    def scan_then_deliver(self: Walker, d, only_new):  # type: ignore[no-untyped-def]
        result = original(self, d, only_new)
        if d.path.endswith(b"/cur") and not moved:
            # The IMAP server moves a message new/ -> cur/ right after the
            # backup listed cur/ and before it lists new/.
            victim = sorted((src / "u000" / "new").iterdir())[0]
            target = src / "u000" / "cur" / (victim.name + ":2,S")
            victim.rename(target)
            moved.append(target)
        return result

    monkeypatch.setattr(Walker, "scan_dir", scan_then_deliver)
    result = run_backup(repo, "mx1", [Part("mail", src)])
    assert moved, "the move did not happen during the walk"
    assert result.exit_status == 0, result.stats.warnings
    assert sorted(_message_ids(repo, "mail")) == sorted(ids)
    with repo.open_snapshot(repo.snapshots()[-1]) as snap:
        snap.resolve(f"mail/u000/cur/{moved[0].name}")


def test_maildir_renamed_by_a_thread_during_the_backup(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    ids = _maildirs(src, users=40, per_box=60)
    stop = threading.Event()
    renames = [0]

    def imap_server() -> None:
        rng = random.Random(3)
        pending = sorted((src / f"u{u:03d}" / "new" / n)
                         for u in range(40) for n in os.listdir(src / f"u{u:03d}" / "new"))
        rng.shuffle(pending)
        for path in pending:
            if stop.is_set():
                return
            path.rename(path.parent.parent / "cur" / (path.name + ":2,S"))
            renames[0] += 1
            if renames[0] % 10 == 0:
                stop.wait(0.001)

    t = threading.Thread(target=imap_server)
    t.start()
    try:
        result = run_backup(repo, "mx1", [Part("mail", src)])
    finally:
        stop.set()
        t.join()
    assert renames[0] > 50, "the renames did not overlap the backup"
    found = _message_ids(repo, "mail")
    # Every message is in the snapshot exactly once: a restored Maildir must
    # neither lose a message nor show it twice.
    assert sorted(found) == sorted(ids)
    assert result.snapshot is not None
    print(f"\n{renames[0]} renames during the backup; {len(found) - len(ids)} duplicates; "
          f"{len(result.stats.warnings)} warnings")


def test_file_growing_while_read_is_reported_and_stored_as_a_real_state(
        repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    log = src / "growing.log"
    log.write_bytes(b"line\n" * 2_000_000)
    stop = threading.Event()

    def appender() -> None:
        with open(log, "ab") as f:
            n = 0
            while not stop.is_set():
                f.write(b"more %d\n" % n)
                f.flush()
                n += 1

    t = threading.Thread(target=appender)
    t.start()
    try:
        result = run_backup(repo, "mx1", [Part("logs", src)], level=1)
    finally:
        stop.set()
        t.join()
    assert result.exit_status == 1
    assert any("growing.log" in w and "changed while being read" in w
               for w in result.stats.warnings)
    with repo.open_snapshot(repo.snapshots()[-1]) as snap:
        e = snap.resolve("logs/growing.log")
        stored = snap.read(e, 0, e.size)
    final = log.read_bytes()
    # Append-only: what was stored is a prefix the file really had.
    assert len(stored) >= 10_000_000 and final.startswith(stored)


def test_vanished_file_is_reported_and_the_backup_goes_on(
        repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a", "b", "c"):
        (src / name).write_bytes(name.encode() * 100)
    original = Walker.visit_file

    def delete_before_read(self, key, path, st, prev_id):  # type: ignore[no-untyped-def]
        if path.endswith(b"/b"):
            os.unlink(path)
        return original(self, key, path, st, prev_id)

    monkeypatch.setattr(Walker, "visit_file", delete_before_read)
    result = run_backup(repo, "mx1", [Part("x", src)])
    assert result.exit_status == 1
    assert [w for w in result.stats.warnings if "vanished" in w and w.endswith(
        "vanished during the backup")] == [f"{src}/b: vanished during the backup"]
    with repo.open_snapshot(repo.snapshots()[-1]) as snap:
        names = [n for n, _ in snap.children(snap.resolve("x").entry_id)]
    assert names == [b"a", b"c"]
