"""The format's building blocks: chunk boundaries, blobs, packs, versions."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

from index.errors import CorruptChunk, FormatTooNew, RepositoryCorrupt
from index.format import blob
from index.format.config import FORMAT_VERSION, ChunkerParams
from index.format.pack import pack_relpath, read_pack_table, verify_pack_hash
from index.format.types import ChunkId
from index.model.chunk_index import ChunkIndex
from index.model.repository import Repository
from index.store.packs import PackWriter, list_packs
from tests.conftest import read_through_filereader

# Golden chunk boundaries: if these change, every existing repository stops
# deduplicating against new backups. Never update them to make a test pass.
GOLDEN_SEED = 0x2545F4914F6CDD1D & ((1 << 62) - 1)
GOLDEN_OFFSETS = [0, 670233, 2086845, 2637154, 3614137, 3876999, 5224033, 5627939,
                  6955604, 8008651, 9307685, 10602498]
GOLDEN_OFFSETS_SEED0 = [0, 1591559, 2352191, 3552817, 5079856, 6218870, 8169809, 10887427]


@pytest.mark.parametrize(("seed", "golden"), [(GOLDEN_SEED, GOLDEN_OFFSETS),
                                              (0, GOLDEN_OFFSETS_SEED0)])
def test_chunk_boundaries_are_frozen(repo: Repository, tmp_path: Path, seed: int,
                                     golden: list[int]) -> None:
    data = random.Random(20261122).randbytes(12 * 1024 * 1024)
    path = tmp_path / "input"
    path.write_bytes(data)
    params = ChunkerParams(min_size=256 * 1024, avg_size=1024 * 1024,
                           max_size=4 * 1024 * 1024, normalized_chunking=1, seed=seed)
    content, _ = read_through_filereader(repo, tmp_path, path, params)
    assert [e.offset for e in content.extents] == golden
    assert sum(e.length for e in content.extents) == len(data)


def test_blob_round_trip_and_damage() -> None:
    key = bytes(range(32))
    text = b"Subject: hello\n\n" + b"text " * 1000
    cid = blob.chunk_id(key, text)
    encoded = blob.encode(cid, text, 3)
    assert encoded[0] == blob.ENCODING_ZSTD and len(encoded) < len(text)
    assert blob.decode(encoded, cid, key) == text
    noise = random.Random(1).randbytes(5000)
    raw = blob.encode(blob.chunk_id(key, noise), noise, 3)
    assert raw[0] == blob.ENCODING_RAW and len(raw) == len(noise) + blob.BLOB_HEADER.size
    damaged = bytearray(encoded)
    damaged[-3] ^= 0x40
    with pytest.raises(CorruptChunk):
        blob.decode(bytes(damaged), cid, key)
    with pytest.raises(CorruptChunk):
        blob.decode(encoded, ChunkId(b"\0" * 32), key)
    with pytest.raises(CorruptChunk):
        blob.decode(encoded[:20], cid, key)
    # A blob claiming to be sealed, in a repository that is not encrypted
    # (or with an encryption no version knows): refused, never decoded.
    for byte in (1, 2):
        claimed = bytearray(encoded)
        claimed[1] = byte
        with pytest.raises(CorruptChunk, match="encryption"):
            blob.decode(bytes(claimed), cid, key)


def test_pack_table_and_name(repo: Repository) -> None:
    key = repo.config.chunk_id_key
    writer = PackWriter(repo.storage)
    chunks = [random.Random(i).randbytes(1000 + i) for i in range(50)]
    rows = [writer.add(blob.encode(blob.chunk_id(key, c), c, 0)) for c in chunks]
    pack_id, written = writer.finish()
    assert written == rows
    path = repo.storage.path(pack_relpath(pack_id))
    assert read_pack_table(path) == rows
    assert verify_pack_hash(path)
    assert list(list_packs(repo.storage)) == [pack_id]
    assert list((repo.root / "tmp").iterdir()) == []
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RepositoryCorrupt):
        read_pack_table(path)
    assert not verify_pack_hash(path)


def test_damaged_pack_is_not_trusted_for_dedup(repo: Repository, tmp_path: Path) -> None:
    writer = PackWriter(repo.storage)
    c = b"some chunk"
    writer.add(blob.encode(blob.chunk_id(repo.config.chunk_id_key, c), c, 0))
    pack_id, _ = writer.finish()
    path = repo.storage.path(pack_relpath(pack_id))
    path.write_bytes(path.read_bytes()[:-5])
    index = ChunkIndex(tmp_path / "c.lmdb")
    assert index.sync(repo.storage) == (0, 0)
    assert index.get(blob.chunk_id(repo.config.chunk_id_key, c)) is None
    index.close()


def test_newer_repository_format_is_refused(repo: Repository) -> None:
    cfg = json.loads((repo.root / "config").read_text())
    cfg["version"] = FORMAT_VERSION + 1
    (repo.root / "config").write_text(json.dumps(cfg))
    with pytest.raises(FormatTooNew, match="newer than this histfs supports"):
        Repository.open(repo.root)


def test_chunk_index_is_rebuilt_from_the_repository(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(random.Random(5).randbytes(3_000_000))
    from writer.backup import run_backup
    from writer.parts import Part

    first = run_backup(repo, "mx1", [Part("d", src)])
    assert first.stats.bytes_added > 0
    cache = repo.cache.path
    for p in cache.iterdir():
        if p.is_dir():
            shutil.rmtree(p)  # copies of snapshot indexes
        else:
            p.unlink()
    second = run_backup(repo, "mx1", [Part("d", src)])
    assert second.stats.bytes_added == 0
    (src / "a").touch()  # same content, read again, deduplicated
    third = run_backup(repo, "mx1", [Part("d", src)])
    assert third.stats.files_changed == 1 and third.stats.bytes_added == 0


def test_cache_on_a_network_file_system_is_refused(repo: Repository, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from index.errors import ConfigError
    from index.model import cache

    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nserver:/export {tmp_path} nfs4 rw 0 0\n")
    assert cache.filesystem_type(tmp_path / "cache", str(mounts)) == "nfs4"
    assert cache.filesystem_type(Path("/usr"), str(mounts)) == "ext4"
    # No NFS server can run here: the mount table is the part we stand in for.
    monkeypatch.setattr(cache, "filesystem_type", lambda path: "nfs4")
    with pytest.raises(ConfigError, match=r"network file system .*HISTFS_CACHE_DIR"):
        Repository.open(repo.root)
