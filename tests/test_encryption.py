"""Encrypted repositories (`init --encryption repokey`), end to end through
the command line: round trips, passphrases from every source, a wrong one,
a changed one, key export and import, tampering with every kind of file,
and nothing readable left in the repository.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from index.format.blob import BLOB_HEADER
from index.format.config import RepoConfig
from index.format.keys import KEY_FILE
from index.format.pack import read_pack_table
from index.format.snapshot_format import snapshot_relpath
from index.model.repository import Repository
from tests.conftest import Mount, histfs
from tests.trees import source_state, without_ctime

PASS = "correct horse battery staple"
MARKER = b"MARKER-7f3a9c-the-secret-mail-of-the-ceo"
HOST = "mx1"


@pytest.fixture(autouse=True)
def passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command of these tests gets the passphrase from the environment
    unless a test says otherwise."""
    for var in ("HISTFS_PASSPHRASE_FILE", "HISTFS_PASSCOMMAND", "HISTFS_NEW_PASSPHRASE",
                "HISTFS_NEW_PASSPHRASE_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HISTFS_PASSPHRASE", PASS)


def restored(path: Path) -> dict[bytes, tuple[object, ...]]:
    return without_ctime(source_state(path))


def make_source(root: Path) -> Path:
    """Mail with a marker in contents and names, and random attachments of
    equal size (whose blobs are then of equal length)."""
    (root / "cur").mkdir(parents=True)
    for i in range(20):
        (root / "cur" / f"{i}.eml").write_bytes(b"Subject: hi\n\n" + MARKER + b" %d\n" % i * 50)
    (root / f"{MARKER.decode()}.txt").write_bytes(MARKER * 1000)
    for i in range(2):
        (root / f"attachment-{i}.bin").write_bytes(os.urandom(100_000))
    return root


def init_encrypted(repo: Path) -> None:
    histfs("init", "--encryption", "repokey", str(repo), check=0)


def backup(repo: Path, src: Path, check: int = 0,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return histfs("backup", "--repo", str(repo), "--host", HOST, f"mail={src}",
                  check=check, env=env)


def snapshot_names(repo: Path) -> list[str]:
    proc = histfs("snapshots", "--repo", str(repo), "--json", check=0)
    return [s["name"] for s in json.loads(proc.stdout)]


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    for w in words:
        assert w in proc.stderr, proc.stderr
    assert PASS not in proc.stderr + proc.stdout


@pytest.fixture
def encrypted(tmp_path: Path) -> tuple[Path, Path]:
    """An encrypted repository with one backup of `make_source`."""
    src = make_source(tmp_path / "src")
    repo = tmp_path / "repo"
    init_encrypted(repo)
    backup(repo, src)
    return repo, src


@pytest.mark.timeout(120)
def test_round_trip_through_restore_mount_and_check(
        encrypted: tuple[Path, Path], tmp_path: Path,
        mount_repo: Callable[..., Mount]) -> None:
    repo, src = encrypted
    config = json.loads((repo / "config").read_text())
    assert config["encryption"] == "repokey-aes-256-gcm" and config["version"] == 3
    assert "chunk_id_key" not in config and "seed" not in config["chunker"]
    histfs("check", "--repo", str(repo), "--read-data", check=0)
    target = tmp_path / "restored"
    histfs("restore", "--repo", str(repo), "last", "--target", str(target), check=0)
    assert restored(target / "mail") == restored(src)
    m = mount_repo(repo)
    assert source_state(m.path / HOST / "last" / "mail") == source_state(src)
    # A second backup deduplicates against the first (keyed ids are stable).
    proc = histfs("backup", "--repo", str(repo), "--host", HOST, "--json", f"mail={src}",
                  check=0)
    assert json.loads(proc.stdout)["bytes_added"] == 0


@pytest.mark.timeout(120)
def test_nothing_readable_in_the_repository(encrypted: tuple[Path, Path]) -> None:
    repo, _ = encrypted
    scanned = 0
    for path in repo.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert MARKER not in data, path
            assert MARKER[:16] not in data, path
            scanned += 1
        assert MARKER.decode()[:16] not in path.name
    assert scanned >= 4  # config, key, README, a pack, an index
    # The id key and the chunker's seed are not in the clear either.
    secrets_ = Repository.open(repo, passphrase=lambda: PASS)
    try:
        key_hex = secrets_.config.chunk_id_key.hex().encode()
        for path in repo.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert key_hex not in data and secrets_.config.chunk_id_key not in data
    finally:
        secrets_.close()


@pytest.mark.timeout(120)
def test_wrong_and_missing_passphrase(encrypted: tuple[Path, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo, src = encrypted
    proc = backup(repo, src, check=2, env={"HISTFS_PASSPHRASE": "not it"})
    assert_one_line_error(proc, "wrong passphrase")
    assert len(snapshot_names(repo)) == 1
    monkeypatch.delenv("HISTFS_PASSPHRASE")
    proc = histfs("snapshots", "--repo", str(repo))
    assert_one_line_error(proc, "encrypted", "HISTFS_PASSPHRASE_FILE")


@pytest.mark.timeout(120)
def test_passphrase_file_and_command(encrypted: tuple[Path, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo, _ = encrypted
    monkeypatch.delenv("HISTFS_PASSPHRASE")
    pass_file = tmp_path / "pass"
    pass_file.write_text(PASS + "\n")
    assert len(snapshot_names_with(repo, {"HISTFS_PASSPHRASE_FILE": str(pass_file)})) == 1
    command = f"cat {pass_file}"
    assert len(snapshot_names_with(repo, {"HISTFS_PASSCOMMAND": command})) == 1
    proc = histfs("snapshots", "--repo", str(repo), env={"HISTFS_PASSCOMMAND": "false"})
    assert_one_line_error(proc, "HISTFS_PASSCOMMAND failed")


def snapshot_names_with(repo: Path, env: dict[str, str]) -> list[str]:
    proc = histfs("snapshots", "--repo", str(repo), "--json", env=env, check=0)
    return [s["name"] for s in json.loads(proc.stdout)]


@pytest.mark.timeout(180)
def test_change_passphrase_keeps_old_data(encrypted: tuple[Path, Path], tmp_path: Path) -> None:
    repo, src = encrypted
    new = "a much longer passphrase than before"
    histfs("key", "change-passphrase", "--repo", str(repo),
           env={"HISTFS_NEW_PASSPHRASE": new}, check=0)
    assert_one_line_error(histfs("snapshots", "--repo", str(repo)), "wrong passphrase")
    target = tmp_path / "restored"
    histfs("restore", "--repo", str(repo), "last", "--target", str(target),
           env={"HISTFS_PASSPHRASE": new}, check=0)
    assert restored(target / "mail") == restored(src)


@pytest.mark.timeout(180)
def test_key_export_and_import(encrypted: tuple[Path, Path], tmp_path: Path) -> None:
    repo, src = encrypted
    exported = tmp_path / "histfs-key.backup"
    histfs("key", "export", "--repo", str(repo), str(exported), check=0)
    assert exported.stat().st_mode & 0o077 == 0
    assert exported.read_bytes() == (repo / KEY_FILE).read_bytes()
    (repo / KEY_FILE).unlink()
    assert_one_line_error(histfs("snapshots", "--repo", str(repo)), "key import")
    # A key of another repository is refused.
    other = tmp_path / "other"
    init_encrypted(other)
    proc = histfs("key", "import", "--repo", str(repo), str(other / KEY_FILE))
    assert_one_line_error(proc, "belongs to repository")
    histfs("key", "import", "--repo", str(repo), str(exported), check=0)
    target = tmp_path / "restored"
    histfs("restore", "--repo", str(repo), "last", "--target", str(target), check=0)
    assert restored(target / "mail") == restored(src)


# -- tampering ----------------------------------------------------------------


def flip(path: Path, pos: int) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(pos)
        old = f.read(1)
        f.seek(pos)
        f.write(bytes([old[0] ^ 0x01]))


def packs(repo: Path) -> list[Path]:
    return sorted(p for p in (repo / "packs").rglob("*") if p.is_file())


def check_status(repo: Path) -> subprocess.CompletedProcess[str]:
    proc = histfs("check", "--repo", str(repo), "--read-data")
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.timeout(180)
def test_flipped_byte_in_a_blob_is_detected_everywhere(
        encrypted: tuple[Path, Path], tmp_path: Path,
        mount_repo: Callable[..., Mount]) -> None:
    repo, _ = encrypted
    # The one blob of the first message: flip a byte of its ciphertext.
    (pack,) = packs(repo)
    rows = read_pack_table(pack)
    big = max(rows, key=lambda r: r.stored_size)
    flip(pack, big.offset + BLOB_HEADER.size + big.stored_size // 2)
    proc = check_status(repo)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    m = mount_repo(repo)
    errors = 0
    for path in (m.path / HOST / "last" / "mail").rglob("*"):
        if path.is_file():
            try:
                path.read_bytes()
            except OSError as exc:
                assert exc.errno == errno.EIO
                errors += 1
    assert errors >= 1
    target = tmp_path / "restored"
    proc = histfs("restore", "--repo", str(repo), "last", "--target", str(target))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "authentication failed" in proc.stderr or "damaged" in proc.stderr, proc.stderr


@pytest.mark.timeout(180)
def test_flipped_byte_in_a_blob_header_is_detected(encrypted: tuple[Path, Path]) -> None:
    repo, _ = encrypted
    (pack,) = packs(repo)
    row = read_pack_table(pack)[0]
    flip(pack, row.offset + 8)  # the raw size: authenticated, not encrypted
    assert check_status(repo).returncode == 1


@pytest.mark.timeout(180)
def test_two_blobs_of_equal_length_swapped(encrypted: tuple[Path, Path]) -> None:
    repo, _ = encrypted
    (pack,) = packs(repo)
    rows = read_pack_table(pack)
    by_size: dict[int, list[int]] = {}
    for r in rows:
        by_size.setdefault(r.stored_size, []).append(r.offset)
    a, b = next(v for v in by_size.values() if len(v) >= 2)[:2]
    size = next(r.stored_size for r in rows if r.offset == a)
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(a)
        first = f.read(size)
        f.seek(b)
        second = f.read(size)
        f.seek(a)
        f.write(second)
        f.seek(b)
        f.write(first)
    assert check_status(repo).returncode == 1


@pytest.mark.timeout(180)
def test_flipped_byte_in_a_snapshot_index(encrypted: tuple[Path, Path],
                                          mount_repo: Callable[..., Mount]) -> None:
    repo, _ = encrypted
    (name,) = snapshot_names(repo)
    index = repo / snapshot_relpath(HOST, name)
    flip(index, index.stat().st_size // 2)
    proc = check_status(repo)
    assert proc.returncode == 1 and name in proc.stdout + proc.stderr, proc.stdout
    m = mount_repo(repo)
    with pytest.raises(OSError) as info:
        os.listdir(m.path / HOST / name)
    assert info.value.errno == errno.EIO


@pytest.mark.timeout(180)
def test_old_index_replayed_under_a_new_name(encrypted: tuple[Path, Path]) -> None:
    repo, _ = encrypted
    (name,) = snapshot_names(repo)
    forged = "2031-01-01T000000Z"
    shutil.copyfile(repo / snapshot_relpath(HOST, name), repo / snapshot_relpath(HOST, forged))
    proc = check_status(repo)
    assert proc.returncode == 1 and forged in proc.stdout + proc.stderr, proc.stdout
    proc = histfs("restore", "--repo", str(repo), forged, "--target", "/nonexistent-target")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "authentication failed" in proc.stderr and forged in proc.stderr, proc.stderr


@pytest.mark.timeout(120)
def test_changed_config_is_refused(encrypted: tuple[Path, Path]) -> None:
    repo, _ = encrypted
    config = repo / "config"
    doc = json.loads(config.read_text())
    doc["pack_size"] = doc["pack_size"] // 2
    os.chmod(config, 0o644)
    config.write_text(json.dumps(doc, indent=2) + "\n")
    assert_one_line_error(histfs("snapshots", "--repo", str(repo)), "config does not match")


@pytest.mark.timeout(120)
def test_config_swapped_for_an_unencrypted_one_is_refused(
        encrypted: tuple[Path, Path], tmp_path: Path) -> None:
    """An attacker who replaces config and key with an unencrypted config of
    the same id would have the next backup write in the clear: this machine
    remembers that the repository was encrypted."""
    repo, src = encrypted
    doc = json.loads((repo / "config").read_text())
    plain = RepoConfig.new()
    fake = json.loads(plain.to_json())
    fake["id"] = doc["id"]
    os.chmod(repo / "config", 0o644)
    (repo / "config").write_text(json.dumps(fake, indent=2) + "\n")
    (repo / KEY_FILE).unlink()
    proc = backup(repo, src, check=2)
    assert_one_line_error(proc, "was encrypted")


def _rewrite_config_to_none(repo: Path) -> None:
    """What an attacker who can write the repository does to have the next
    backup write in the clear: a valid unencrypted config in place of the
    real one (keeping its id, or not: either way a new machine, or a new
    cache, has no memory of the encryption)."""
    doc = json.loads((repo / "config").read_text())
    fake = json.loads(RepoConfig.new().to_json())
    fake["id"] = doc["id"]
    os.chmod(repo / "config", 0o644)
    (repo / "config").write_text(json.dumps(fake, indent=2) + "\n")


def _files(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in repo.rglob("*")
            if p.is_file() and "locks" not in p.parts}


def _fresh(tmp_path: Path) -> dict[str, str]:
    """The environment of a command run with an empty local cache."""
    fresh = tmp_path / f"fresh-cache-{len(list(tmp_path.glob('fresh-cache-*')))}"
    fresh.mkdir()
    return {"HISTFS_CACHE_DIR": str(fresh)}


@pytest.mark.timeout(300)
def test_a_config_rewritten_to_none_beside_a_key_is_refused_by_every_command(
        encrypted: tuple[Path, Path], tmp_path: Path) -> None:
    """The key file alone gives it away: every command refuses the
    repository, with a fresh cache, and nothing is written."""
    repo, src = encrypted
    (name,) = snapshot_names(repo)
    _rewrite_config_to_none(repo)
    before = _files(repo)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    other = tmp_path / "other"
    histfs("init", "--encryption", "none", str(other), check=0)
    r = str(repo)
    # A new host has no previous index to give the downgrade away.
    for args in (("backup", "--repo", r, "--host", "mx9", f"mail={src}"),
                 ("backup", "--repo", r, "--host", HOST, f"mail={src}"),
                 ("snapshots", "--repo", r),
                 ("restore", "--repo", r, name, "--target", str(tmp_path / "out")),
                 ("check", "--repo", r),
                 ("mount", "--foreground", "--repo", r, str(mnt)),
                 ("hold", "--repo", r, "--host", HOST, name, "--reason", "tape"),
                 ("prune", "--repo", r, "--keep-last", "1"),
                 ("gc", "--repo", r, "--grace", "0"),
                 ("copy", "--from", str(other), "--to", r),
                 ("copy", "--from", r, "--to", str(other))):
        proc = histfs(*args, env=_fresh(tmp_path), timeout=60)
        assert_one_line_error(proc, "has a key file", "not encrypted")
    assert _files(repo) == before
    assert not os.path.ismount(mnt)


@pytest.mark.timeout(300)
def test_without_the_key_sealed_data_still_stops_a_clear_backup(
        encrypted: tuple[Path, Path], tmp_path: Path) -> None:
    """Key file deleted too: the packs are sealed and so is the host's
    previous index; either one makes the backup refuse (each is tried
    alone). Nothing in the clear is ever written."""
    repo, src = encrypted
    _rewrite_config_to_none(repo)
    (repo / KEY_FILE).unlink()
    before = _files(repo)
    for host in ("mx9", HOST):  # a new host has no previous index
        proc = histfs("backup", "--repo", str(repo), "--host", host, f"mail={src}",
                      env=_fresh(tmp_path))
        assert_one_line_error(proc, "encrypted", "refusing")
    assert _files(repo) == before

    # Only the previous index is left sealed (the packs are elsewhere).
    shutil.move(repo / "packs", tmp_path / "packs-aside")
    before = _files(repo)
    proc = backup(repo, src, check=2, env=_fresh(tmp_path))
    assert_one_line_error(proc, "snapshot index", "is encrypted", "config")
    assert _files(repo) == before

    # Only the packs are: every index is gone.
    shutil.move(tmp_path / "packs-aside", repo / "packs")
    for index in (repo / "snapshots").rglob("*.idx"):
        index.unlink()
    before = _files(repo)
    proc = backup(repo, src, check=2, env=_fresh(tmp_path))
    assert_one_line_error(proc, "encryption 1", "refusing to write in the clear")
    assert _files(repo) == before
    # copy into it is a writer too.
    plain = tmp_path / "plain"
    histfs("init", "--encryption", "none", str(plain), check=0)
    histfs("backup", "--repo", str(plain), "--host", "mx2", f"mail={src}", check=0)
    proc = histfs("copy", "--from", str(plain), "--to", str(repo), env=_fresh(tmp_path))
    assert_one_line_error(proc, "refusing to write in the clear")
    assert _files(repo) == before
    assert not any(MARKER in data for data in _files(repo).values())


@pytest.mark.timeout(120)
def test_unencrypted_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HISTFS_PASSPHRASE")
    src = make_source(tmp_path / "src")
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    assert json.loads((repo / "config").read_text())["version"] == 3
    assert not (repo / KEY_FILE).exists()
    histfs("backup", "--repo", str(repo), "--host", HOST, "--compression", "0", f"mail={src}",
           check=0)
    assert any(MARKER in p.read_bytes() for p in packs(repo))


# -- the sealing itself, byte by byte -------------------------------------------


@pytest.mark.timeout(120)
def test_every_damage_to_a_sealed_index_is_refused(tmp_path: Path) -> None:
    """Flips at many offsets (header, every segment, tags), truncation at
    segment boundaries, appended bytes, another identity: each one raises
    RepositoryCorrupt; the intact file opens to the same bytes."""
    import io

    from index.errors import RepositoryCorrupt
    from index.format.crypto import SEGMENT_SIZE, Cipher

    cipher = Cipher.from_master(os.urandom(32))
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(2 * SEGMENT_SIZE + 12345))
    sealed = io.BytesIO()
    with open(plain, "rb") as f:
        cipher.seal_index(f, sealed, "snapshots/mx1/a.idx")
    good = sealed.getvalue()
    out = io.BytesIO()
    cipher.open_index(io.BytesIO(good), out, "snapshots/mx1/a.idx")
    assert out.getvalue() == plain.read_bytes()

    damaged: list[bytes] = []
    for pos in [*range(0, 32), *range(32, len(good), 99_991), len(good) - 1]:
        flipped = bytearray(good)
        flipped[pos] ^= 0x80
        damaged.append(bytes(flipped))
    seg = SEGMENT_SIZE + 16
    for cut in (0, 31, 32, 32 + seg, 32 + 2 * seg, len(good) - 1):
        damaged.append(good[:cut])
    damaged.append(good + b"\0")
    for data in damaged:
        with pytest.raises(RepositoryCorrupt):
            cipher.open_index(io.BytesIO(data), io.BytesIO(), "snapshots/mx1/a.idx")
    with pytest.raises(RepositoryCorrupt):
        cipher.open_index(io.BytesIO(good), io.BytesIO(), "snapshots/mx1/b.idx")
    with pytest.raises(RepositoryCorrupt):
        Cipher.from_master(os.urandom(32)).open_index(io.BytesIO(good), io.BytesIO(),
                                                      "snapshots/mx1/a.idx")


@pytest.mark.timeout(120)
def test_damaged_key_files_are_clear_errors() -> None:
    from index.errors import HistfsError
    from index.format.keys import RepoSecrets, WrongPassphrase, unwrap, wrap

    good = wrap(RepoSecrets.new(b"config"), PASS, "0" * 32)
    assert unwrap(good, PASS, "0" * 32).config_sha256
    with pytest.raises(WrongPassphrase):
        unwrap(good, "wrong", "0" * 32)
    doc = json.loads(good)
    variants = [b"", b"{", b"[]", good[:-40], good.replace(b"argon2id", b"scrypt"),
                json.dumps({**doc, "sealed": doc["sealed"][:-2]}).encode(),
                json.dumps({**doc, "kdf": {**doc["kdf"], "memory_kib": 1 << 40}}).encode(),
                json.dumps({**doc, "kdf": {**doc["kdf"], "time_cost": True}}).encode(),
                json.dumps({**doc, "nonce": "00"}).encode(),
                json.dumps({**doc, "repository": "f" * 32}).encode()]
    for data in variants:
        with pytest.raises(HistfsError):
            unwrap(data, PASS, "0" * 32)


@pytest.mark.timeout(240)
def test_prune_and_gc_relocate_sealed_indexes(tmp_path: Path,
                                             mount_repo: Callable[..., Mount]) -> None:
    """gc rewrites a mostly unused pack and re-seals the indexes that used it;
    everything kept still reads exactly, through check, restore and the mount."""
    src = tmp_path / "src"
    src.mkdir()
    keep = os.urandom(200_000)
    (src / "kept.bin").write_bytes(keep)
    (src / "gone.bin").write_bytes(os.urandom(3_000_000))
    repo = tmp_path / "repo"
    init_encrypted(repo)
    backup(repo, src)
    (src / "gone.bin").unlink()
    (src / "new.txt").write_bytes(MARKER)
    backup(repo, src)
    histfs("prune", "--repo", str(repo), "--keep-last", "1", check=0)
    proc = histfs("gc", "--repo", str(repo), "--grace", "0", "--max-unused", "1%", "--json",
                  check=0)
    result = json.loads(proc.stdout)
    assert result["packs_rewritten"] >= 1 and result["snapshots_relocated"] >= 1, result
    histfs("check", "--repo", str(repo), "--read-data", check=0)
    target = tmp_path / "restored"
    histfs("restore", "--repo", str(repo), "last", "--target", str(target), check=0)
    assert restored(target / "mail") == restored(src)
    # A fresh cache (another machine) opens the re-sealed index too.
    m = mount_repo(repo)
    assert (m.path / HOST / "last" / "mail" / "kept.bin").read_bytes() == keep
    proc = histfs("snapshots", "--repo", str(repo), "--json", check=0,
                  env={"HISTFS_CACHE_DIR": str(tmp_path / "other-cache")})
    assert len(json.loads(proc.stdout)) == 1
    out = tmp_path / "other"
    histfs("restore", "--repo", str(repo), "last", "--target", str(out), check=0,
           env={"HISTFS_CACHE_DIR": str(tmp_path / "other-cache")})
    assert restored(out / "mail") == restored(src)


@pytest.mark.timeout(180)
def test_copy_into_a_repository_with_another_passphrase(encrypted: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    """The target's passphrase comes from HISTFS_TO_PASSPHRASE_FILE; the
    source's from the usual variables."""
    repo, src = encrypted
    other = tmp_path / "other"
    histfs("init", str(other), env={"HISTFS_PASSPHRASE": "the other one"}, check=0)
    pass_file = tmp_path / "other-pass"
    pass_file.write_text("the other one\n")
    proc = histfs("copy", "--from", str(repo), "--to", str(other), "--json",
                  env={"HISTFS_TO_PASSPHRASE_FILE": str(pass_file)}, check=0)
    assert len(json.loads(proc.stdout)["copied"]) == 1
    target = tmp_path / "restored"
    histfs("restore", "--repo", str(other), "last", "--target", str(target),
           env={"HISTFS_PASSPHRASE": "the other one"}, check=0)
    assert restored(target / "mail") == restored(src)
    proc = histfs("copy", "--from", str(repo), "--to", str(other))
    assert_one_line_error(proc, "wrong passphrase")
