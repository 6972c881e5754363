"""Incremental backups and deduplication."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from index.model.repository import Repository
from tests.conftest import backup_json


def _mail_tree(root: Path, users: int = 5, messages: int = 40) -> None:
    rng = random.Random(7)
    for u in range(users):
        for box in ("cur", "new", "tmp"):
            (root / f"user{u}" / "Maildir" / box).mkdir(parents=True)
        for m in range(messages):
            body = "".join(rng.choice("abcdefghij klmnop\n") for _ in range(rng.randint(500, 5000)))
            name = f"17000{u:02d}{m:03d}.M{m}P1.mx1:2,S"
            (root / f"user{u}" / "Maildir" / "cur" / name).write_text(body)


def test_unchanged_tree_adds_almost_nothing(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _mail_tree(src)
    first = backup_json(repo.root, f"mail={src}")
    assert first["files_new"] == 200 and first["bytes_added"] > 0
    second = backup_json(repo.root, f"mail={src}")
    assert second["files_unchanged"] == 200
    assert second["files_new"] == second["files_changed"] == 0
    assert second["bytes_read"] == 0 and second["bytes_added"] == 0


def test_renamed_and_moved_files_add_nothing(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    _mail_tree(src)
    backup_json(repo.root, f"mail={src}")
    cur = src / "user1" / "Maildir" / "cur"
    moved = 0
    for p in sorted(cur.iterdir())[:10]:
        # What an IMAP server does on a flag change, and a move to another box.
        p.rename(p.with_name(p.name.replace(":2,S", ":2,RS")))
        moved += 1
    other = sorted((src / "user2" / "Maildir" / "cur").iterdir())[0]
    other.rename(src / "user3" / "Maildir" / "cur" / other.name)
    second = backup_json(repo.root, f"mail={src}")
    # Renamed files change ctime, so they are read again, but store nothing.
    assert second["files_changed"] + second["files_new"] == moved + 1
    assert second["bytes_read"] > 0
    assert second["bytes_added"] == 0


def test_insert_in_the_middle_of_a_large_file(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    rng = random.Random(1)
    size = 200 * 1024 * 1024
    data = bytearray(rng.randbytes(size))
    (src / "dump.bin").write_bytes(data)
    first = backup_json(repo.root, f"pgsql={src}", extra=("--compression", "1"))
    assert first["bytes_added"] > size * 0.9
    data[size // 2 : size // 2] = b"a few inserted bytes"
    (src / "dump.bin").write_bytes(data)
    second = backup_json(repo.root, f"pgsql={src}", extra=("--compression", "1"))
    assert second["files_changed"] == 1
    # One or two chunks around the insertion (at most 4 MiB each) are new.
    assert 0 < second["chunks_added"] <= 3  # type: ignore[operator]
    assert second["bytes_added"] < 9 * 1024 * 1024  # type: ignore[operator]
    with repo.open_snapshot(repo.snapshots()[-1]) as snap:
        e = snap.resolve("pgsql/dump.bin")
        assert snap.read(e, size // 2 - 5, 30) == bytes(data[size // 2 - 5 : size // 2 + 25])


def test_part_chunk_size_finds_scattered_changes(repo: Repository, tmp_path: Path) -> None:
    """A dump whose rows change in scattered places: with `chunk_size =
    "8KiB"` only the small chunks around each change are new; with the
    repository's 1 MiB chunks nearly every chunk is."""
    rng = random.Random(7)
    rows = [f"{i}\t{rng.randbytes(40).hex()}\tuser{i % 97}@example.org\n".encode()
            for i in range(60_000)]  # about 8 MiB of text
    added: dict[str, int] = {}
    for part, size in (("fine", '"8KiB"'), ("coarse", None)):
        src = tmp_path / part
        src.mkdir()
        cfg = tmp_path / f"{part}.toml"
        cfg.write_text(f'[[part]]\nname = "pgsql"\npath = "{src}"\n'
                       + (f"chunk_size = {size}\n" if size else ""))
        dump = list(rows)
        (src / "mail.sql").write_bytes(b"".join(dump))
        backup_json(repo.root, host=part, extra=("--config", str(cfg)))
        for i in range(0, len(dump), 3000):  # 20 rows changed, 400 KiB apart
            dump[i] = dump[i].replace(b"@example.org", b"@example.net")
        (src / "mail.sql").write_bytes(b"".join(dump))
        second = backup_json(repo.root, host=part, extra=("--config", str(cfg)))
        assert second["files_changed"] == 1
        added[part] = int(second["bytes_added"])  # type: ignore[call-overload]
        with repo.open_snapshot(repo.select(part, "last")) as snap:
            e = snap.resolve("pgsql/mail.sql")
            assert snap.read(e, 0, e.size) == b"".join(dump)
    total = sum(map(len, rows))
    # 20 changes: at most 20 chunks of up to 32 KiB each (compressed, less).
    assert added["fine"] < 20 * 32 * 1024
    assert added["coarse"] > total // 4
    assert added["fine"] * 5 < added["coarse"]


def test_identical_content_in_two_parts_is_stored_once(repo: Repository, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _mail_tree(a, users=2, messages=10)
    shutil.copytree(a, b)
    summary = backup_json(repo.root, f"one={a}", f"two={b}")
    assert summary["files_new"] == 40
    assert summary["chunks_added"] == 20


def test_incompressible_chunks_are_stored_raw(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "random").write_bytes(os.urandom(1_000_000))
    (src / "text").write_bytes(b"the same line again\n" * 50_000)
    summary = backup_json(repo.root, f"x={src}")
    # Random data is not inflated by compression; text shrinks a lot.
    assert summary["bytes_added"] < 1_000_000 + 1_000_000 // 10


def test_changed_file_is_read_again(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"one")
    backup_json(repo.root, f"x={src}")
    (src / "f").write_bytes(b"two")
    second = backup_json(repo.root, f"x={src}")
    assert second["files_changed"] == 1
    with repo.open_snapshot(repo.snapshots()[-1]) as snap:
        e = snap.resolve("x/f")
        assert snap.read(e, 0, 10) == b"two"
    with repo.open_snapshot(repo.snapshots()[0]) as snap:
        e = snap.resolve("x/f")
        assert snap.read(e, 0, 10) == b"one"
