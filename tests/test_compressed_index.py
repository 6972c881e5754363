"""Snapshot indexes stored compressed (repository format 3, docs/FORMAT.md §8).

New repositories, clear and encrypted, store every index compressed (and
then sealed); readers decompress it into the local cache. Repositories of
earlier formats keep writing plain indexes and refuse compressed ones. A
damaged compressed index is the damaged snapshot, named, never a crash or
a large allocation. gc's relocated indexes and `copy`'s are compressed too.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from index.errors import RepositoryCorrupt, SnapshotDamaged
from index.format import compressed_index
from index.format.compressed_index import HEADER, MAGIC, compress_index, decode_file
from index.format.config import FORMAT_VERSION
from index.format.crypto import SEALED_INDEX_MAGIC
from index.format.lmdb_file import check_whole
from index.model.repository import Repository, SnapshotRef
from tests.conftest import Mount
from tests.trees import snapshot_state, source_state
from writer.backup import run_backup
from writer.copy import copy_snapshots
from writer.gc import collect
from writer.parts import Part
from writer.prune import prune
from writer.retention import Policy

DATA = Path(__file__).parent / "data"
PASS = "compressed indexes passphrase"
V2_PASSPHRASE = "histfs test repository v2"


def _mail(src: Path, count: int = 300, seed: int = 1) -> Path:
    rng = random.Random(seed)
    for box in ("cur", "new", ".Sent/cur"):
        (src / box).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        box = ("cur", "new", ".Sent/cur")[i % 3]
        body = b"Subject: %d\n\n" % i + rng.randbytes(rng.randrange(200, 3000))
        (src / box / f"{1700000000 + i}.M{i}P1.mx1,S={len(body)}:2,S").write_bytes(body)
    return src


def _new_repo(tmp_path: Path, encryption: str) -> Repository:
    return Repository.init(tmp_path / f"repo-{encryption}", encryption,
                           passphrase=lambda: PASS)


def _stored(repo: Repository, ref: SnapshotRef) -> bytes:
    """The stored index file's bytes, unsealed when sealed."""
    raw = repo.storage.read(ref.relpath)
    if repo.cipher is None:
        return raw
    out = io.BytesIO()
    repo.cipher.open_index(io.BytesIO(raw), out, ref.relpath)
    return out.getvalue()


def _replace_stored(repo: Repository, ref: SnapshotRef, content: bytes) -> None:
    """Put `content` in place of the index, sealed for its place when the
    repository is encrypted (damage behind a valid seal)."""
    if repo.cipher is not None:
        sealed = io.BytesIO()
        plain = Path(repo.cache.path) / "to-seal"
        plain.write_bytes(content)
        with open(plain, "rb") as f:
            repo.cipher.seal_index(f, sealed, ref.relpath)
        plain.unlink()
        content = sealed.getvalue()
    path = Path(repo.root) / ref.relpath
    tmp = path.with_name(f".{path.name}.new")
    tmp.write_bytes(content)
    os.replace(tmp, path)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("encryption", ["none", "repokey"])
def test_new_repository_round_trips_through_compressed_indexes(
        tmp_path: Path, encryption: str) -> None:
    src = _mail(tmp_path / "src")
    repo = _new_repo(tmp_path, encryption)
    assert repo.config.version == FORMAT_VERSION == 3
    run_backup(repo, "mx1", [Part("mail", src)])
    time.sleep(1.05)
    run_backup(repo, "mx1", [Part("mail", src)])  # nothing changed
    refs = repo.snapshots("mx1")
    assert len(refs) == 2
    raw = repo.storage.read(refs[0].relpath)
    assert raw.startswith(SEALED_INDEX_MAGIC if encryption == "repokey" else MAGIC)
    expected = source_state(src)
    for ref in refs:
        stored = _stored(repo, ref)
        assert stored.startswith(MAGIC)
        plain_size, frame_size = struct.unpack_from("<QQ", stored, 16)
        assert len(stored) == HEADER.size + frame_size < plain_size
        with repo.open_snapshot(ref) as snap:
            assert snapshot_state(snap, "mail") == expected
            assert os.path.getsize(snap.path) == plain_size
    repo.close()

    # Another machine (an empty cache) decompresses them anew.
    os.environ["HISTFS_CACHE_DIR"] = str(tmp_path / "other-cache")
    again = Repository.open(repo.root, passphrase=lambda: PASS)
    for ref in refs:
        with again.open_snapshot(ref) as snap:
            assert snapshot_state(snap, "mail") == expected
    assert len(list((tmp_path / "other-cache").rglob("indexes/mx1/*.idx"))) == 2
    again.close()


@pytest.mark.timeout(240)
def test_mount_reads_through_compressed_indexes(
        tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    """The mount opens each snapshot's decompressed copy; a relocated or
    replaced index (a new identity) is decompressed again."""
    src = _mail(tmp_path / "src", count=60)
    repo = _new_repo(tmp_path, "none")
    run_backup(repo, "mx1", [Part("mail", src)])
    (ref,) = repo.snapshots("mx1")
    assert repo.storage.read(ref.relpath).startswith(MAGIC)
    # The writer's own copy is not what the mount reads: an empty cache.
    shutil.rmtree(repo.cache.indexes)
    m = mount_repo(Path(repo.root))
    for path in sorted(src.rglob("*")):
        inside = m.path / "mx1" / ref.name / "mail" / path.relative_to(src)
        if path.is_file():
            assert inside.read_bytes() == path.read_bytes()
        else:
            assert sorted(os.listdir(inside)) == sorted(os.listdir(path))
    assert len(list(repo.cache.indexes.glob("mx1/*.idx"))) == 1
    repo.close()


def _cuts_and_flips(stored: bytes) -> dict[str, bytes]:
    frame = len(stored) - HEADER.size
    cases = {f"cut at {n}": stored[:n] for n in (9, 31, HEADER.size + 3, len(stored) // 2,
                                               len(stored) - 4, len(stored) - 1)}
    for where in (8, 12, 24, HEADER.size + 2, HEADER.size + frame // 2, len(stored) - 1):
        flipped = bytearray(stored)
        flipped[where] ^= 0x10
        cases[f"flip at {where}"] = bytes(flipped)
    cases["data after the end"] = stored + b"\0"
    huge = bytearray(stored)
    huge[16:24] = struct.pack("<Q", 1 << 62)
    cases["huge declared size"] = bytes(huge)
    longer = bytearray(stored)
    longer[24:32] = struct.pack("<Q", 1 << 62)
    cases["huge frame size"] = bytes(longer)
    return cases


@pytest.mark.timeout(240)
@pytest.mark.parametrize("encryption", ["none", "repokey"])
def test_damaged_compressed_index_is_the_named_snapshot_damaged(
        tmp_path: Path, encryption: str) -> None:
    """Truncated, flipped, extended, or declaring an absurd size: each is
    SnapshotDamaged naming the snapshot, at once, and leaves no copy in the
    cache; the other snapshot reads on, and the intact bytes put back read
    again."""
    src = _mail(tmp_path / "src", count=100)
    repo = _new_repo(tmp_path, encryption)
    run_backup(repo, "mx1", [Part("mail", src)])
    time.sleep(1.05)
    run_backup(repo, "mx1", [Part("mail", src)])
    good_ref, bad_ref = repo.snapshots("mx1")
    good = _stored(repo, bad_ref)
    indexes = repo.cache.indexes
    for what, content in _cuts_and_flips(good).items():
        _replace_stored(repo, bad_ref, content)
        started = time.monotonic()
        with pytest.raises(SnapshotDamaged) as failed:
            repo.open_snapshot(bad_ref).close()
        assert time.monotonic() - started < 10, what
        assert (failed.value.host, failed.value.name) == ("mx1", bad_ref.name), what
        assert str(failed.value).startswith(f"snapshot mx1/{bad_ref.name} is damaged: "), what
        # No copy of the damaged file, nor a part of one, stays behind.
        copy = repo.cache.index_copy(bad_ref.relpath, repo.indexes.identity(bad_ref.relpath))
        assert not copy.exists(), what
        assert not [p for p in indexes.rglob(".*")], what
        with repo.open_snapshot(good_ref) as snap:
            assert snapshot_state(snap, "mail") == source_state(src)
    _replace_stored(repo, bad_ref, good)
    with repo.open_snapshot(bad_ref) as snap:
        assert snapshot_state(snap, "mail") == source_state(src)
    repo.close()


def test_decoder_refuses_every_kind_of_damage(tmp_path: Path) -> None:
    """The decoder alone, on a larger index (several zstd blocks): every
    damage raises RepositoryCorrupt naming the file; a huge declared size is
    refused before anything is written."""
    plain = tmp_path / "plain"
    rng = random.Random(3)
    plain.write_bytes(b"".join(rng.randbytes(40) + bytes(300) for _ in range(20_000)))
    packed = io.BytesIO()
    with open(plain, "rb") as f:
        compress_index(f, packed)
    good = packed.getvalue()
    out = io.BytesIO()
    assert decode_file(io.BytesIO(good), out, "snapshot index x.idx", True)
    assert out.getvalue() == plain.read_bytes()
    for what, content in _cuts_and_flips(good).items():
        if what == "cut at 9":
            continue  # no magic: taken for a plain file, which LMDB's check refuses
        out = io.BytesIO()
        with pytest.raises(RepositoryCorrupt, match=r"^snapshot index x\.idx: "):
            decode_file(io.BytesIO(content), out, "snapshot index x.idx", True)
        if what.startswith("huge"):
            assert out.tell() == 0, what
    # A file whose magic was damaged is no LMDB file either.
    out_path = tmp_path / "out"
    with open(out_path, "wb") as out_file:
        assert not decode_file(io.BytesIO(b"X" + good[1:]), out_file, "x", True)
    fd = os.open(out_path, os.O_RDONLY)
    try:
        with pytest.raises(RepositoryCorrupt, match="not an index file"):
            check_whole(fd, "x")
    finally:
        os.close(fd)


@pytest.mark.timeout(120)
def test_repositories_of_earlier_formats_keep_plain_indexes(tmp_path: Path) -> None:
    """Format 1 and 2 repositories take new backups with plain indexes (so
    older histfs versions still read them), and refuse a compressed one."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "new").write_text("a new file")
    shutil.copytree(DATA / "repo-v1", tmp_path / "v1")
    shutil.copytree(DATA / "repo-v2", tmp_path / "v2")
    v1 = Repository.open(tmp_path / "v1")
    v2 = Repository.open(tmp_path / "v2", passphrase=lambda: V2_PASSPHRASE)
    for repo in (v1, v2):
        run_backup(repo, "mx1", [Part("data", src)])
        new = repo.snapshots("mx1")[-1]
        stored = _stored(repo, new)
        assert not stored.startswith(MAGIC)
        assert stored[16:20] == struct.pack("<I", 0xBEEFC0DE)  # LMDB's meta page
        with repo.open_snapshot(new) as snap:
            assert snap.read(snap.resolve("data/new"), 0, 100) == b"a new file"

    # Someone put a compressed index into the format 1 repository.
    old = v1.snapshots("mx2")[0]
    path = tmp_path / "v1" / old.relpath
    packed = io.BytesIO()
    with open(path, "rb") as f:
        compress_index(f, packed)
    path.chmod(0o644)
    path.write_bytes(packed.getvalue())
    with pytest.raises(SnapshotDamaged, match="compressed, but the repository's format"):
        v1.open_snapshot(old)
    v1.close()
    v2.close()


def _two_days(src: Path, repo: Repository) -> None:
    """A day whose packs are mostly deleted the next day: gc rewrites them."""
    rng = random.Random(9)
    src.mkdir()
    (src / "kept").write_bytes(rng.randbytes(300_000))
    (src / "gone").mkdir()
    for i in range(6):
        (src / "gone" / f"m{i}").write_bytes(rng.randbytes(1 << 20))
    run_backup(repo, "mx1", [Part("mail", src)])
    shutil.rmtree(src / "gone")
    time.sleep(1.05)
    run_backup(repo, "mx1", [Part("mail", src)])


@pytest.mark.timeout(180)
@pytest.mark.parametrize("encryption", ["none", "repokey"])
def test_relocated_and_copied_indexes_are_compressed(tmp_path: Path, encryption: str) -> None:
    src = tmp_path / "src"
    repo = _new_repo(tmp_path, encryption)
    _two_days(src, repo)
    prune(repo, Policy(keep_last=1))
    (kept,) = repo.snapshots("mx1")
    before = repo.storage.stat(kept.relpath)[1]
    result = collect(repo, max_unused=0.0, grace=0.0)
    assert result.packs_rewritten >= 1 and result.snapshots_relocated == 1
    assert repo.storage.stat(kept.relpath)[1] != before
    assert _stored(repo, kept).startswith(MAGIC)
    expected = source_state(src)
    with repo.open_snapshot(kept) as snap:
        assert snapshot_state(snap, "mail") == expected

    # Into a new repository: compressed; into a format 1 one: plain.
    target = _new_repo(tmp_path / "target", "none")
    shutil.copytree(DATA / "repo-v1", tmp_path / "v1")
    old = Repository.open(tmp_path / "v1")
    for into, compressed in ((target, True), (old, False)):
        copy_snapshots(repo, into, "mx1")
        (copied,) = into.snapshots("mx1")[-1:]
        assert copied.name == kept.name
        assert _stored(into, copied).startswith(MAGIC) == compressed
        with into.open_snapshot(copied) as snap:
            assert snapshot_state(snap, "mail") == expected
        into.close()
    repo.close()


def test_ratio_bound_holds_for_the_densest_frame(tmp_path: Path) -> None:
    """MAX_RATIO is a true bound: zeros, zstd's best case, stay under it."""
    zeros = tmp_path / "zeros"
    size = 64 << 20
    with open(zeros, "wb") as f:
        f.truncate(size)
    packed = io.BytesIO()
    with open(zeros, "rb") as f:
        compress_index(f, packed)
    frame = len(packed.getvalue()) - HEADER.size
    assert frame * 1000 < size <= frame * compressed_index.MAX_RATIO
