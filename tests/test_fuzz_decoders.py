"""Property-based fuzzing of every decoder of on-disk data.

The requirement (reliability issue): random and mutated bytes raise the
project's own error types (`HistfsError` and its subclasses), never another
exception, never a hang (bounded examples plus a per-test timeout), never
unbounded memory (decoders refuse declared sizes above the documented
maximums before allocating; checked with tracemalloc where a small input
could claim a large output).

Each decoder gets random input and mutations (bit flips, truncation,
insertion, overwrites with extreme integers, deletion) of valid encodings,
taken from a fresh repository and from the kept v1 repository
(tests/data/repo-v1). LMDB files themselves are not mutated: LMDB trusts its
page structure (a damaged file can crash the process), which is outside
what histfs can validate; the records stored in them are fuzzed instead.
"""

from __future__ import annotations

import io
import json
import os
import socket
import struct
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest
import zstandard
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from histfs.config import FileConfig, load_config
from index.errors import HistfsError
from index.format import blob, codec, compressed_index
from index.format.compressed_index import compress_index
from index.format.config import RepoConfig
from index.format.names import is_snapshot_name, snapshot_sort_key, snapshot_time
from index.format.pack import PACK_TRAILER, PackedChunk, read_pack_table, read_table
from index.format.snapshot_format import (
    DB_CHUNKS,
    DB_ENTRIES,
    DB_EXTENTS,
    DB_META,
    META_KEY,
    decode_entry,
    decode_extent,
    decode_location,
    decode_meta,
    encode_entry,
    encode_extent,
)
from index.format.types import ChunkId, ChunkLocation, Entry, EntryId, Extent, Kind
from index.model.chunk_index import ChunkIndex
from index.model.repository import Repository
from index.model.snapshot_reader import SnapshotReader
from index.store import garbage, holds
from index.store.local_storage import LocalStorage
from index.store.lock import RepositoryLock, live_locks_since
from index.store.packs import PackWriter

ROOT = Path(__file__).resolve().parents[1]
V1 = ROOT / "tests" / "data" / "repo-v1"
KEY = bytes(range(32))

# No example database: it would be written into the shared checkout, and a
# failure is reproduced from the printed falsifying example anyway.
_BASE = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def fuzz(examples: int) -> settings:
    """Settings of one test: `examples` inputs, no deadline, no database."""
    return settings(_BASE, max_examples=examples)

RUNS: Counter[str] = Counter()
"""Inputs actually fed to each decoder (for the figure at the end)."""


def feed(decoder: str, fn: Any, *args: Any) -> Any:
    """Call a decoder; its value, or None when it raised a project error.
    Any other exception propagates and fails the test."""
    RUNS[decoder] += 1
    try:
        return fn(*args)
    except HistfsError:
        return None


# --- mutations -----------------------------------------------------------

EXTREMES = [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 1 << 32,
            (1 << 63) - 1, (1 << 64) - 1]


@st.composite
def mutated(draw: Any, seeds: list[bytes]) -> bytes:
    """One seed with 1 to 4 random edits."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        # Half of the edits near the end, where trailers and lengths live.
        pos = draw(st.one_of(st.integers(0, n), st.integers(max(0, n - 64), n)))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "extreme",
                                   "delete"]))
        if op == "flip" and n:
            data[min(pos, n - 1)] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos:pos + len(chunk)] = chunk
        elif op == "extreme":
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.sampled_from(EXTREMES)) & ((1 << (8 * width)) - 1)
            order = draw(st.sampled_from(["little", "big"]))
            data[pos:pos + width] = value.to_bytes(width, order)
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
    return bytes(data)


# msgpack-able values of every type, to build well-formed records of the
# wrong shape (random bytes rarely get past the msgpack layer).
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 63), (1 << 64) - 1),
    st.sampled_from([*EXTREMES, -1, -(1 << 63)]), st.floats(), st.text(max_size=8),
    st.binary(max_size=40), st.sampled_from([b"\0" * 32, b""]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.text(max_size=8),
                                                      st.integers(-(1 << 63), (1 << 64) - 1)),
                                            inner, max_size=4)),
    max_leaves=12,
)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from([10**30, -(10**30), 2**62, -1]),
    st.floats(allow_nan=False), st.sampled_from([1e308, -1e308, 1e-300]), st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
# Deep nesting: the C JSON decoder and tomllib recurse once per level.
DEEP_JSON = b"[" * 100_000 + b"]" * 100_000


# --- seeds: valid encodings ----------------------------------------------

class Seeds:
    """Valid encodings of every kind, made once per module."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.blob_chunks: list[tuple[bytes, bytes]] = []  # (chunk id, blob)
        for content in (b"", b"short", b"Subject: hi\n\n" + b"text " * 400,
                        bytes(range(256)) * 3, os.urandom(700)):
            cid = blob.chunk_id(KEY, content)
            self.blob_chunks.append((cid, blob.encode(ChunkId(cid), content, 3)))
        assert any(b[0] == blob.ENCODING_ZSTD for _, b in self.blob_chunks)

        repo = Repository.init(tmp / "repo")
        self.packs: list[bytes] = []
        for n in (1, 3):
            writer = PackWriter(repo.storage)
            for i in range(n):
                c = (b"chunk %d " % i) * (10 + 50 * i)
                writer.add(blob.encode(blob.chunk_id(KEY, c), c, 3))
            pack_id, _ = writer.finish()
            self.packs.append(repo.storage.path(
                f"packs/{pack_id.hex()[:2]}/{pack_id.hex()}").read_bytes())
        repo.close()
        self.packs += [p.read_bytes() for p in sorted(V1.glob("packs/*/*"))
                       if p.stat().st_size < 4096]

        # Records out of the kept v1 snapshots (read-only, no lock file).
        self.entries: list[bytes] = []
        self.metas: list[bytes] = []
        self.extents: list[tuple[bytes, bytes]] = []
        self.locations: list[bytes] = []
        for idx in sorted(V1.glob("snapshots/*/*.idx")):
            env = lmdb.open(str(idx), subdir=False, readonly=True, lock=False, max_dbs=8)
            try:
                with env.begin() as txn:
                    self.metas.append(txn.get(META_KEY, db=env.open_db(DB_META, txn=txn)))
                    self.entries += [bytes(v) for _, v in
                                     txn.cursor(db=env.open_db(DB_ENTRIES, txn=txn))]
                    self.extents += [(bytes(k), bytes(v)) for k, v in
                                     txn.cursor(db=env.open_db(DB_EXTENTS, txn=txn))]
                    self.locations += [bytes(v) for _, v in
                                       txn.cursor(db=env.open_db(DB_CHUNKS, txn=txn))]
            finally:
                env.close()
        self.entries.append(encode_entry(Entry(
            EntryId(9), EntryId(2), b"link", Kind.SYMLINK, 0o777, 1000, 1000, 6, -5, 0, 1,
            1, 0, EntryId(9), 0, b"target", ((b"user.a", b"\0\xff"),), 77)))
        self.extents.append((struct.pack(">QQ", 7, 4096), encode_extent(4096, None)))
        assert self.entries and self.metas and self.extents and self.locations

        self.configs = [(V1 / "config").read_bytes(), RepoConfig.new().to_json()]
        stamp = {"time": "2026-01-01T00:00:00Z", "machine": "mx1", "pid": 123}
        self.holds = [json.dumps({"reason": "legal", **stamp}).encode() + b"\n"]
        self.garbage = [json.dumps({"time": 1.5e9, "machine": "mx1", "pid": 1,
                                    "packs": ["ab" * 32, "cd" * 32]}).encode() + b"\n"]
        self.locks = [json.dumps({"machine": socket.gethostname(), "pid": os.getpid(),
                                  "since": "2026-01-01T00:00:00Z",
                                  "purpose": "backup of mx1"}).encode()]
        self.toml = [
            b'repository = "/srv/repo"\nhost = "mx1"\ncompression = 3\n'
            b'min_interval = "20h"\nmountpoint = "/mnt/h"\n'
            b'[[part]]\nname = "mail"\npath = "/var/mail"\nexclude = ["*.tmp"]\n'
            b'enabled = true\nchunk_size = "64KiB"\n'
            b'[retention]\nkeep_last = 3\nkeep_daily = 7\nkeep_within = "2d"\n'
            b'keep_ages = ["1w", "30d"]\n'
            b'[hooks]\nbefore = "true"\nafter = "true"\ntimeout = "1h"\n',
        ]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> Seeds:
    return Seeds(tmp_path_factory.mktemp("fuzz-seeds"))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for the files one example writes (overwritten each time)."""
    return tmp_path_factory.mktemp("fuzz")


# --- blobs ----------------------------------------------------------------

def check_blob(data: bytes, cid: bytes) -> None:
    out = feed("blob.decode", blob.decode, data, ChunkId(cid), KEY)
    assert out is None or (isinstance(out, bytes) and blob.chunk_id(KEY, out) == cid)


@pytest.mark.timeout(60)
@fuzz(300)
@given(raw=st.binary(max_size=200), cid=st.binary(min_size=32, max_size=32),
       use_header_id=st.booleans())
def test_blob_random_bytes(raw, cid, use_header_id):
    # With the id from the input itself, the header check passes and the
    # rest of the decoder is reached.
    check_blob(raw, raw[12:44] if use_header_id and len(raw) >= 44 else cid)


@pytest.mark.timeout(60)
@fuzz(300)
@given(encoding=st.sampled_from([0, 1, 2, 255]), encryption=st.sampled_from([0, 0, 0, 1, 255]),
       stored=st.one_of(st.integers(0, 300), st.sampled_from(EXTREMES[:8])),
       raw_size=st.one_of(st.integers(0, 3000), st.sampled_from(EXTREMES[:8])),
       payload=st.binary(max_size=300), zstd_magic=st.booleans())
def test_blob_random_headers(encoding, encryption, stored, raw_size, payload, zstd_magic):
    if zstd_magic:
        payload = b"\x28\xb5\x2f\xfd" + payload
    cid = os.urandom(32)
    check_blob(blob.BLOB_HEADER.pack(encoding, encryption, 0, stored & 0xFFFFFFFF,
                                     raw_size & 0xFFFFFFFF, cid) + payload, cid)


@pytest.mark.timeout(60)
@fuzz(400)
@given(data=st.data())
def test_blob_mutated(seeds, data):
    cid, valid = data.draw(st.sampled_from(seeds.blob_chunks))
    check_blob(data.draw(mutated([valid])), cid)


@pytest.mark.timeout(60)
@fuzz(150)
@given(content=st.binary(min_size=256, max_size=2000),
       claim=st.one_of(st.sampled_from([1 << 32, (1 << 32) - 1, 1 << 40, (1 << 64) - 1,
                                        blob.MAX_RAW_SIZE, blob.MAX_RAW_SIZE + 1]),
                       st.integers(0, (1 << 64) - 1)),
       raw_size=st.sampled_from([None, 0, (1 << 32) - 1, blob.MAX_RAW_SIZE,
                                 blob.MAX_RAW_SIZE + 1]))
@example(content=b"a" * 1000, claim=4_000_000_000, raw_size=None)
@example(content=b"a" * 1000, claim=4_000_000_000, raw_size=4_000_000_000)
def test_blob_zstd_size_claims_are_bounded(content, claim, raw_size):
    """A zstd frame may declare any decompressed size (8 bytes in its header),
    and the blob header any raw size: neither may make decode allocate more
    than the largest chunk a repository can hold."""
    frame = zstandard.ZstdCompressor(write_checksum=False).compress(content)
    assert frame[4] == 0x60  # single segment, 2-byte content size
    frame = frame[:4] + b"\xe0" + struct.pack("<Q", claim) + frame[7:]
    size = (claim & 0xFFFFFFFF) if raw_size is None else raw_size
    cid = blob.chunk_id(KEY, content)
    data = blob.BLOB_HEADER.pack(blob.ENCODING_ZSTD, 0, 0, len(frame), size, cid) + frame
    tracemalloc.start()
    try:
        check_blob(data, cid)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= blob.MAX_RAW_SIZE + (1 << 20)


# --- packs ----------------------------------------------------------------

def check_pack(path: Path, content: bytes, lie: int = 0) -> None:
    path.write_bytes(content)
    rows = feed("pack.read_pack_table", read_pack_table, path)
    if rows is not None:
        assert isinstance(rows, list) and all(isinstance(r, PackedChunk) for r in rows)
        table_offset = len(content) - PACK_TRAILER.size - 48 * len(rows)
        assert all(r.offset + r.stored_size <= table_offset for r in rows)
    if lie:
        # A size that does not match the file (it changed under the reader).
        with open(path, "rb") as f:
            rows = feed("pack.read_table", read_table, f.fileno(),
                        max(0, len(content) + lie), "fuzz")
        assert rows is None or isinstance(rows, list)


@pytest.mark.timeout(60)
@fuzz(200)
@given(content=st.binary(max_size=400), lie=st.sampled_from([0, 0, -1, 1, 100]))
def test_pack_random_bytes(scratch, content, lie):
    check_pack(scratch / "random.pack", content, lie)


@st.composite
def plausible_packs(draw: Any) -> bytes:
    """Header and trailer mostly right, table rows anything."""
    magic = draw(st.sampled_from([b"HISTFSPK"] * 4 + [b"HISTFSPX"]))
    version = draw(st.sampled_from([0, 1, 1, 1, 2, 0xFFFF]))
    body = draw(st.binary(max_size=200))
    rows = draw(st.lists(st.tuples(st.binary(min_size=32, max_size=32),
                                   st.one_of(st.integers(0, 300), st.sampled_from(EXTREMES)),
                                   st.one_of(st.integers(0, 300),
                                             st.sampled_from(EXTREMES[:8])),
                                   st.sampled_from(EXTREMES[:8])), max_size=5))
    table_offset = 16 + len(body)
    table = b"".join(struct.pack("<32sQII", c, o, s, r) for c, o, s, r in rows)
    count = len(rows)
    if draw(st.booleans()):
        table_offset = draw(st.sampled_from(EXTREMES))
    if draw(st.booleans()):
        count = draw(st.sampled_from(EXTREMES[:8]))
    end = draw(st.sampled_from([b"HISTFSPE"] * 4 + [b"HISTFSPX"]))
    return (struct.pack("<8sHHI", magic, version, 0, 0) + body + table
            + struct.pack("<QII32s8s", table_offset, count, 0, b"\0" * 32, end))


@pytest.mark.timeout(60)
@fuzz(200)
@given(content=plausible_packs(), lie=st.sampled_from([0, 0, -1, 1, -57]))
def test_pack_plausible_tables(scratch, content, lie):
    check_pack(scratch / "plausible.pack", content, lie)


@pytest.mark.timeout(60)
@fuzz(300)
@given(data=st.data(), lie=st.sampled_from([0, 0, 0, -1, 1]))
def test_pack_mutated(seeds, scratch, data, lie):
    check_pack(scratch / "mutated.pack", data.draw(mutated(seeds.packs)), lie)


# --- msgpack --------------------------------------------------------------

MSGPACK_TYPES = (type(None), bool, int, float, str, bytes, list, dict, msgpack.ExtType,
                 msgpack.Timestamp)


def check_unpack(data: bytes) -> None:
    out = feed("codec.unpack", codec.unpack, data, "fuzz record")
    assert out is None or isinstance(out, MSGPACK_TYPES)


@pytest.mark.timeout(60)
@fuzz(400)
@given(data=st.binary(max_size=200))
@example(data=b"\x81\x90\x00")  # a map whose key is an array (unhashable)
@example(data=b"\x91" * 5000)  # nesting deeper than the unpacker's stack
def test_msgpack_random_bytes(data):
    check_unpack(data)


@pytest.mark.timeout(60)
@fuzz(300)
@given(data=st.data())
def test_msgpack_mutated(seeds, data):
    check_unpack(data.draw(mutated(seeds.entries + seeds.metas)))


@pytest.mark.timeout(60)
@fuzz(200)
@given(head=st.sampled_from([0xDC, 0xDD, 0xDE, 0xDF, 0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6,
                             0xC7, 0xC8, 0xC9]),
       length=st.one_of(st.sampled_from(EXTREMES[:8]), st.integers(0, (1 << 32) - 1)),
       tail=st.binary(max_size=64))
def test_msgpack_declared_lengths_are_bounded(head, length, tail):
    """An array, map, str, bin or ext header claims up to 2**32 items or
    bytes in 5 bytes of input: no allocation may follow the claim."""
    width = {0xDC: 2, 0xDE: 2, 0xDA: 2, 0xC5: 2, 0xC8: 2, 0xD9: 1, 0xC4: 1, 0xC7: 1}.get(head, 4)
    length &= (1 << (8 * width)) - 1
    data = bytes([head]) + length.to_bytes(width, "big") + (b"\x01" if head in (0xC7, 0xC8, 0xC9)
                                                             else b"") + tail
    tracemalloc.start()
    try:
        check_unpack(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


# --- snapshot index records ----------------------------------------------

INT_FIELDS = ("parent_id", "kind", "mode", "uid", "gid", "size", "mtime_ns", "ctime_ns",
              "atime_ns", "nlink", "rdev", "inode_id", "stored_bytes", "source_ino")


def check_entry(raw: bytes) -> None:
    e = feed("snapshot_format.decode_entry", decode_entry, 5, raw)
    if e is None:
        return
    assert isinstance(e, Entry) and isinstance(e.kind, Kind) and isinstance(e.name, bytes)
    for f in INT_FIELDS:
        value = getattr(e, f)
        assert isinstance(value, int) and not isinstance(value, bool), (f, value)
    assert 0 <= e.mode <= 0o7777
    assert all(getattr(e, f) >= 0 for f in INT_FIELDS if not f.endswith("time_ns"))
    assert e.data is None or isinstance(e.data, bytes | int)
    if e.kind == Kind.REGULAR and isinstance(e.data, bytes):
        assert len(e.data) == 32
    assert all(isinstance(k, bytes) and isinstance(v, bytes) for k, v in e.xattrs)


@pytest.mark.timeout(60)
@fuzz(200)
@given(raw=st.binary(max_size=120))
def test_entry_random_bytes(raw):
    check_entry(raw)


@pytest.mark.timeout(60)
@fuzz(300)
@given(data=st.data())
def test_entry_mutated(seeds, data):
    check_entry(data.draw(mutated(seeds.entries)))


@pytest.mark.timeout(60)
@fuzz(400)
@given(data=st.data())
def test_entry_wrong_shapes(seeds, data):
    """Well-formed msgpack of the wrong shape: a valid record with some
    fields replaced by values of any type, or any value at all."""
    rec = codec.unpack(data.draw(st.sampled_from(seeds.entries)))
    if data.draw(st.booleans()):
        rec = data.draw(VALUES)
    else:
        for _ in range(data.draw(st.integers(1, 3))):
            i = data.draw(st.integers(0, len(rec) + 1))
            value = data.draw(VALUES)
            if i < len(rec):
                rec[i] = value
            else:
                rec.append(value)
        if data.draw(st.booleans()):
            del rec[data.draw(st.integers(0, len(rec))):]
    check_entry(codec.pack(rec))


def check_meta(raw: bytes) -> None:
    meta = feed("snapshot_format.decode_meta", decode_meta, raw, "fuzz.idx")
    if meta is None:
        return
    assert isinstance(meta, dict) and isinstance(meta["name"], str)
    assert all(isinstance(p, dict) and isinstance(p["name"], str)
               for p in meta.get("parts", []))
    for key in ("files", "logical_bytes", "bytes_added"):
        assert isinstance(meta.get(key, 0), int)


@pytest.mark.timeout(60)
@fuzz(300)
@given(data=st.data())
def test_meta_random_and_mutated(seeds, data):
    choice = data.draw(st.sampled_from(["bytes", "mutated", "shape"]))
    if choice == "bytes":
        raw = data.draw(st.binary(max_size=200))
    elif choice == "mutated":
        raw = data.draw(mutated(seeds.metas))
    else:
        meta = codec.unpack(data.draw(st.sampled_from(seeds.metas)))
        for _ in range(data.draw(st.integers(1, 3))):
            key = data.draw(st.sampled_from([*sorted(meta), "parts", "version", "x"]))
            meta[key] = data.draw(VALUES)
        raw = codec.pack(meta)
    check_meta(raw)


def check_extent(key: bytes, value: bytes) -> None:
    ext = feed("snapshot_format.decode_extent", decode_extent, key, value)
    assert ext is None or (isinstance(ext, Extent) and (ext.chunk_id is None
                                                        or len(ext.chunk_id) == 32))


def check_location(value: bytes) -> None:
    loc = feed("snapshot_format.decode_location", decode_location, value)
    assert loc is None or (isinstance(loc, ChunkLocation) and len(loc.pack_id) == 32)


@pytest.mark.timeout(60)
@fuzz(300)
@given(key=st.binary(max_size=20), value=st.binary(max_size=60))
def test_extent_and_location_random_bytes(key, value):
    check_extent(key, value)
    check_location(value)


@pytest.mark.timeout(60)
@fuzz(300)
@given(data=st.data())
def test_extent_and_location_mutated(seeds, data):
    key, value = data.draw(st.sampled_from(seeds.extents))
    if data.draw(st.booleans()):
        key = data.draw(mutated([key]))
    else:
        value = data.draw(mutated([value]))
    check_extent(key, value)
    check_location(data.draw(mutated(seeds.locations)))


@pytest.mark.timeout(60)
def test_snapshot_index_of_random_bytes(tmp_path):
    """A snapshot file that is not LMDB at all (LMDB checks its meta pages'
    magic, so random bytes are refused before any page is followed)."""
    for i in range(20):
        path = tmp_path / f"{i}.idx"
        path.write_bytes(os.urandom(i * 409))
        reader = feed("SnapshotReader", SnapshotReader, path)
        assert reader is None


# --- compressed snapshot indexes --------------------------------------------

class _Counted:
    """A sink that only counts what a decoder writes."""

    def __init__(self) -> None:
        self.n = 0

    def write(self, data: bytes) -> int:
        self.n += len(data)
        return len(data)


@pytest.fixture(scope="module")
def compressed_seeds(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, int]]:
    """The kept v1 indexes compressed, each with its plain size."""
    found = []
    for idx in sorted(V1.glob("snapshots/*/*.idx")):
        out = io.BytesIO()
        with open(idx, "rb") as f:
            compress_index(f, out)
        found.append((out.getvalue(), idx.stat().st_size))
    return found


def check_compressed(data: bytes, plain_size: int | None = None) -> None:
    """Decode `data` as a stored index; what comes out is bounded by what the
    input can hold, and a whole (compressed) decode gives `plain_size`."""
    sink = _Counted()
    decoder = compressed_index.IndexDecoder(sink, "snapshot index fuzz.idx")

    def decode() -> bool:
        decoder.write(data)
        decoder.finish()
        return True

    if feed("compressed_index.IndexDecoder", decode) and decoder.compressed \
            and plain_size is not None:
        assert sink.n == plain_size
    assert sink.n <= max(len(data), len(data) * compressed_index.MAX_RATIO)


@pytest.mark.timeout(60)
@fuzz(300)
@given(raw=st.binary(max_size=300), magic=st.booleans())
def test_compressed_index_random_bytes(raw, magic):
    check_compressed(compressed_index.MAGIC + raw if magic else raw)


@pytest.mark.timeout(120)
@fuzz(300)
@given(data=st.data())
def test_compressed_index_mutated(compressed_seeds, data):
    valid, plain_size = data.draw(st.sampled_from(compressed_seeds))
    mutant = data.draw(mutated([valid]))
    check_compressed(mutant, plain_size if mutant == valid else None)


@pytest.mark.timeout(60)
@fuzz(100)
@given(claim=st.one_of(st.sampled_from(EXTREMES), st.integers(0, (1 << 64) - 1)),
       frame_claim=st.one_of(st.sampled_from(EXTREMES), st.integers(0, (1 << 64) - 1)))
def test_compressed_index_size_claims_are_bounded(compressed_seeds, claim, frame_claim):
    """Any declared sizes, in the header or the zstd frame: memory stays
    within the decoder's window and nothing is written past the claim."""
    valid, _ = compressed_seeds[0]
    header = bytearray(valid[: compressed_index.HEADER.size])
    header[16:32] = struct.pack("<QQ", claim, frame_claim)
    tracemalloc.start()
    try:
        check_compressed(bytes(header) + valid[compressed_index.HEADER.size :])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= compressed_index.MAX_WINDOW + (4 << 20)


# --- repository config ----------------------------------------------------

def check_repo_config(data: bytes) -> None:
    cfg = feed("RepoConfig.from_json", RepoConfig.from_json, data)
    if cfg is None:
        return
    assert isinstance(cfg, RepoConfig) and len(cfg.chunk_id_key) == 32
    c = cfg.chunker
    assert 0 < c.min_size <= c.avg_size <= c.max_size <= blob.MAX_RAW_SIZE
    assert 0 <= c.seed < 1 << 62 and cfg.pack_size > 0 and isinstance(cfg.repo_id, str)


@pytest.mark.timeout(60)
@fuzz(400)
@given(data=st.data())
@example(data=None)
def test_repo_config(seeds, data):
    if data is None:
        check_repo_config(DEEP_JSON)
        return
    choice = data.draw(st.sampled_from(["bytes", "mutated", "shape", "any"]))
    if choice == "bytes":
        raw = data.draw(st.binary(max_size=200))
    elif choice == "mutated":
        raw = data.draw(mutated(seeds.configs))
    elif choice == "any":
        raw = json.dumps(data.draw(JSON_VALUES)).encode()
    else:
        doc = json.loads(data.draw(st.sampled_from(seeds.configs)))
        for _ in range(data.draw(st.integers(1, 3))):
            where = doc
            if data.draw(st.booleans()):
                where = doc["chunker"] if isinstance(doc.get("chunker"), dict) else doc
            key = data.draw(st.sampled_from([*sorted(where), "x"]))
            where[key] = data.draw(JSON_VALUES)
        raw = json.dumps(doc).encode()
    check_repo_config(raw)


# --- the TOML user configuration -----------------------------------------

def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v) if v == v and abs(v) != float("inf") else ("nan" if v != v else
                                                                  "inf" if v > 0 else "-inf")
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"


TOML_SCALARS = st.one_of(
    st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1), st.sampled_from(EXTREMES[:10]),
    st.floats(), st.text(max_size=10),
    st.sampled_from(["1d", "36h", "0s", "9" * 30 + "w", "1d12h", "2w x", "8KiB", "1MiB",
                     "²KiB", "٣d", "-5", "", " ", "4MIB", "99999999999999999999999999KIB"]),
)
TOML_VALUES = st.recursive(
    TOML_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8,
)
TOP_KEYS = ["repository", "host", "compression", "min_interval", "mountpoint", "x"]
TABLE_KEYS = {
    "part": ["name", "path", "exclude", "enabled", "chunk_size", "y"],
    "retention": ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
                  "keep_yearly", "keep_within", "keep_ages", "y"],
    "hooks": ["before", "after", "after_success", "timeout", "y"],
}


@st.composite
def toml_documents(draw: Any) -> bytes:
    """Documents with the right keys and values of any type."""
    lines = [f"{k} = {toml_value(draw(TOML_VALUES))}"
             for k in draw(st.lists(st.sampled_from(TOP_KEYS), unique=True, max_size=4))]
    for table in draw(st.lists(st.sampled_from(sorted(TABLE_KEYS)), unique=True, max_size=3)):
        lines.append(f"[[{table}]]" if table == "part" and draw(st.booleans()) else f"[{table}]")
        keys = draw(st.lists(st.sampled_from(TABLE_KEYS[table]), unique=True, max_size=5))
        lines += [f"{k} = {toml_value(draw(TOML_VALUES))}" for k in keys]
    return "\n".join(lines).encode() + b"\n"


def check_toml(path: Path, content: bytes) -> None:
    path.write_bytes(content)
    cfg = feed("histfs.config.load_config", load_config, path)
    assert cfg is None or isinstance(cfg, FileConfig)


@pytest.mark.timeout(60)
@fuzz(400)
@given(data=st.data())
@example(data=None)
def test_toml_config(seeds, scratch, data):
    path = scratch / "histfs.toml"
    if data is None:
        for content in (b"a = " + b"[" * 100_000, b"\xff\xfe", b"x = 1" + b"0" * 5000,
                        b'min_interval = "' + b"9" * 40 + b'w"', b'[[part]]\nname = "a"\n'
                        b'path = "/"\nchunk_size = "\xc2\xb2KiB"\n'):
            check_toml(path, content)
        return
    choice = data.draw(st.sampled_from(["bytes", "mutated", "shape", "shape"]))
    if choice == "bytes":
        content = data.draw(st.binary(max_size=200))
    elif choice == "mutated":
        content = data.draw(mutated(seeds.toml))
    else:
        content = data.draw(toml_documents())
    check_toml(path, content)


# --- holds, garbage lists, locks -----------------------------------------

def json_file_content(data: Any, valid: list[bytes], fields: dict[str, Any]) -> bytes:
    choice = data.draw(st.sampled_from(["bytes", "mutated", "shape", "any"]))
    if choice == "bytes":
        return data.draw(st.binary(max_size=120))
    if choice == "mutated":
        return data.draw(mutated(valid))
    if choice == "any":
        return json.dumps(data.draw(JSON_VALUES)).encode()
    doc = json.loads(valid[0])
    for key, strategy in fields.items():
        if data.draw(st.booleans()):
            doc[key] = data.draw(strategy)
    return json.dumps(doc).encode()


@pytest.mark.timeout(60)
@fuzz(250)
@given(data=st.data())
@example(data=None)
def test_holds(seeds, scratch, data):
    storage = LocalStorage(scratch / "holds-repo")
    where = storage.path(holds.holds_dir("mx1", "2026-01-01T000000Z"))
    where.mkdir(parents=True, exist_ok=True)
    content = DEEP_JSON if data is None else json_file_content(
        data, seeds.holds, {"reason": JSON_VALUES, "time": JSON_VALUES, "machine": JSON_VALUES})
    (where / "20260101T000000.000000000Z-00000000.hold").write_bytes(content)
    found = feed("holds.active_holds", holds.active_holds, storage, "mx1", "2026-01-01T000000Z")
    assert found is None or all(isinstance(h, holds.Hold) and isinstance(h.reason, str)
                                for h in found)


@pytest.mark.timeout(60)
@fuzz(250)
@given(data=st.data())
@example(data=None)
def test_garbage_lists(seeds, scratch, data):
    storage = LocalStorage(scratch / "garbage-repo")
    storage.path(garbage.GARBAGE_DIR).mkdir(parents=True, exist_ok=True)
    packs = st.one_of(JSON_VALUES, st.lists(st.one_of(st.text(alphabet="0123456789abcdef",
                                                              max_size=70), JSON_SCALARS),
                                            max_size=3))
    content = DEEP_JSON if data is None else json_file_content(
        data, seeds.garbage, {"time": JSON_VALUES, "packs": packs})
    storage.path(f"{garbage.GARBAGE_DIR}/20260101T000000Z-00000000.json").write_bytes(content)
    found = feed("garbage.read_lists", garbage.read_lists, storage)
    if found is not None:
        assert all(isinstance(g.time, float) and all(len(p) == 32 for p in g.packs)
                   for g in found)


@pytest.mark.timeout(60)
@fuzz(200)
@given(data=st.data(), age=st.sampled_from([0, 0, 3600]))
@example(data=None, age=0)
def test_lock_files(seeds, scratch, data, age):
    """A lock file with any content: stale or not, described, dated, and
    taken over or refused with `Locked`."""
    locks = scratch / "locks"
    locks.mkdir(exist_ok=True)
    here = socket.gethostname()
    content = DEEP_JSON if data is None else json_file_content(
        data, seeds.locks,
        {"machine": st.one_of(st.just(here), JSON_VALUES),
         "pid": st.one_of(st.sampled_from([0, -1, -(10**30), 10**30, 1 << 31, 1 << 63, True]),
                          JSON_VALUES),
         "since": st.one_of(st.text(max_size=25), JSON_VALUES)})
    path = locks / "backup-mx1.lock"
    path.write_bytes(content)
    then = time.time() - age
    os.utime(path, (then, then))
    storage = LocalStorage(scratch)
    lock = RepositoryLock(storage, "backup-mx1", "fuzz")
    RUNS["lock files"] += 1
    assert isinstance(lock._is_stale(), bool)
    assert isinstance(lock._describe(), str)
    since = live_locks_since(storage, "backup-")
    assert all(isinstance(s, float) for s in since)
    if feed("RepositoryLock.acquire", lock.acquire, 0.0) is None and path.exists() \
            and path.read_bytes() == content:
        return  # refused with Locked
    lock.release()


# --- chunk index records (local cache) -----------------------------------

@pytest.mark.timeout(60)
@fuzz(60)
@given(rows=st.lists(st.tuples(st.binary(min_size=1, max_size=40),
                               st.one_of(st.binary(max_size=60),
                                         st.binary(min_size=48, max_size=48))),
                     min_size=1, max_size=6),
       pack_keys=st.lists(st.binary(min_size=1, max_size=40), max_size=3))
def test_chunk_index_records(scratch, rows, pack_keys):
    """Damaged rows of the local chunk index: lookups and a sync that has
    packs to forget (which decodes every row)."""
    path = scratch / "chunks.lmdb"
    for p in (path, scratch / "chunks.lmdb-lock"):
        p.unlink(missing_ok=True)
    repo_dir = scratch / "ci-repo"
    if not (repo_dir / "config").exists():
        Repository.init(repo_dir).close()
    storage = LocalStorage(repo_dir)
    index = ChunkIndex(path)
    try:
        env = index._env
        with env.begin(write=True) as txn:
            for k, v in rows:
                txn.put(k, v, db=index._chunks)
            for k in [*pack_keys, b"\xee" * 32]:
                txn.put(k, b"1", db=index._packs)
        for k, _ in rows:
            loc = feed("ChunkIndex.get", index.get, ChunkId(k))
            assert loc is None or isinstance(loc, ChunkLocation)
        found = feed("ChunkIndex.get_many", index.get_many, [ChunkId(k) for k, _ in rows])
        assert found is None or all(isinstance(v, ChunkLocation) for v in found.values())
        assert feed("ChunkIndex.sync", index.sync, storage) == (0, 1 + len(
            {k for k in pack_keys if k != b"\xee" * 32}))
        assert index.known_packs() == set()
    finally:
        index.close()


# --- snapshot names in directory listings --------------------------------

@pytest.mark.timeout(60)
@fuzz(300)
@given(name=st.one_of(
    st.from_regex(r"\A\d{4}-\d{2}-\d{2}T\d{6}Z(-\d{1,30})?\Z"),
    st.text(max_size=30)))
@example(name="2026-13-45T256199Z")
@example(name="0000-01-01T000000Z")
def test_snapshot_names(name):
    """Names found in `snapshots/<host>/`: whatever `is_snapshot_name`
    accepts, the time and order of it can be computed."""
    RUNS["snapshot names"] += 1
    if is_snapshot_name(name):
        snapshot_time(name)
        snapshot_sort_key(name)


# --- the figure -----------------------------------------------------------

def test_report_figures(figures):
    """Runs last in this module: the number of inputs the tests above fed."""
    total = sum(RUNS.values())
    figures(f"{total} random and mutated inputs fed to {len(RUNS)} decoders, "
            "all raised project errors or decoded")
