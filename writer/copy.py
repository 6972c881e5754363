"""`histfs copy`: replicate snapshots into another repository (an offsite copy).

Each snapshot the target lacks is copied chunk by chunk: a chunk the target
already holds (by content) is not copied again. Source and target may
differ in everything: location (a directory, a bucket), encryption, keys,
chunker settings. Chunks keep their boundaries; their ids are recomputed
with the target's id key, and the snapshot's index is rewritten to name
them and their new places, then published like a backup's (its packs are
durable first). An interrupted copy loses nothing and redoes little: its
published packs are found by the next run's cache sync, and snapshots
already in the target are skipped.

The target's gc lock is held throughout (gc there waits), and the
`backup-<host>` lock of each host while its snapshots are copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import lmdb

from index import codec
from index.chunk_index import ChunkIndex
from index.errors import MissingChunk, SnapshotNotFound
from index.relocate import editable_copy
from index.repository import Repository, SnapshotRef
from index.snapshot_format import (
    DB_CHUNKS,
    DB_ENTRIES,
    DB_EXTENTS,
    EXTENT_LENGTH,
    SNAPSHOTS_DIR,
    decode_location,
    encode_location,
)
from index.types import ChunkId, ChunkLocation, Kind
from writer.gc import GC_LOCK
from writer.packer import ChunkSink
from writer.stats import BackupStats

# Chunks read and stored together: up to this many, of up to this many bytes.
_BATCH = 256
_BATCH_BYTES = 64 * 1024 * 1024


@dataclass
class CopyResult:
    """What a copy did."""

    copied: list[SnapshotRef] = field(default_factory=list)
    skipped: list[SnapshotRef] = field(default_factory=list)
    chunks: int = 0
    chunks_added: int = 0
    bytes_added: int = 0


def copy_snapshots(source: Repository, target: Repository, host: str | None = None,
                   names: list[str] | None = None, wait: float = 600.0,
                   say: Callable[[str], None] = lambda s: None) -> CopyResult:
    """Copy the snapshots of `source` (of `host`, named `names`, or all)
    that `target` lacks; see the module docstring."""
    refs = source.snapshots(host)
    if names:
        wanted = set(names)
        missing = wanted - {r.name for r in refs}
        if missing:
            raise SnapshotNotFound(f"no snapshot {', '.join(sorted(missing))} in "
                                   f"{source.root}")
        refs = [r for r in refs if r.name in wanted]
    result = CopyResult()
    present = set(target.snapshots())
    todo = [r for r in refs if r not in present]
    result.skipped = [r for r in refs if r in present]
    if not todo:
        return result
    gc_lock = target.lock(GC_LOCK, "copy")
    gc_lock.acquire(wait)
    stats = BackupStats()
    index = ChunkIndex(target.chunk_cache_path())
    try:
        index.sync(target.storage, target.blob_encryption)
        sink = ChunkSink(target.storage, index, target.config.chunk_id_key, 3,
                         target.config.pack_size, stats, target.cipher)
        same_ids = source.config.chunk_id_key == target.config.chunk_id_key
        for h in sorted({r.host for r in todo}):
            lock = target.lock(f"backup-{h}", f"copy of {h}")
            lock.acquire(wait)
            try:
                for ref in (r for r in todo if r.host == h):
                    say(f"copying {ref.host}/{ref.name}")
                    _copy_one(source, target, ref, sink, index, same_ids, result)
                    result.copied.append(ref)
            finally:
                lock.release()
    finally:
        index.close()
        gc_lock.release()
    result.chunks_added = stats.chunks_added
    result.bytes_added = stats.bytes_added
    return result


def _copy_one(source: Repository, target: Repository, ref: SnapshotRef, sink: ChunkSink,
              index: ChunkIndex, same_ids: bool, result: CopyResult) -> None:
    with editable_copy(source, ref, target.cache_dir()) as env:
        ids = _store_chunks(source, env, sink, same_ids, result)
        sink.flush()  # every pack durable before the index names it
        _rewrite(env, ids, index)
        target.storage.makedirs(f"{SNAPSHOTS_DIR}/{ref.host}")
        target.indexes.publish(ref.relpath, lambda fd: env.copyfd(fd, compact=True))


def _store_chunks(source: Repository, env: lmdb.Environment, sink: ChunkSink,
                  same_ids: bool, result: CopyResult) -> dict[ChunkId, ChunkId]:
    """Store every chunk of the index in the target; source id -> target id."""
    ids: dict[ChunkId, ChunkId] = {}
    with env.begin() as txn:
        db = env.open_db(DB_CHUNKS, txn=txn, create=False)
        rows = [(ChunkId(bytes(k)), decode_location(bytes(v))) for k, v in txn.cursor(db)]
    # In pack order: neighbouring chunks come in one read.
    rows.sort(key=lambda r: (r[1].pack_id, r[1].offset))
    for batch in _batches(rows):
        datas = source.chunk_store.read_many(batch)
        pairs = []
        for (cid, _), data in zip(batch, datas, strict=True):
            tid = cid if same_ids else sink.chunk_id(data)
            ids[cid] = tid
            pairs.append((tid, data))
        sink.store_many(pairs)
        result.chunks += len(batch)
    return ids


def _batches(rows: list[tuple[ChunkId, ChunkLocation]]
             ) -> list[list[tuple[ChunkId, ChunkLocation]]]:
    out: list[list[tuple[ChunkId, ChunkLocation]]] = [[]]
    size = 0
    for row in rows:
        if out[-1] and (len(out[-1]) >= _BATCH or size + row[1].raw_size > _BATCH_BYTES):
            out.append([])
            size = 0
        out[-1].append(row)
        size += row[1].raw_size
    return [b for b in out if b]


def _rewrite(env: lmdb.Environment, ids: dict[ChunkId, ChunkId], index: ChunkIndex) -> None:
    """Name the target's chunk ids and places in the index."""
    changed = {c: t for c, t in ids.items() if c != t}
    with env.begin(write=True) as txn:
        chunks = env.open_db(DB_CHUNKS, txn=txn, create=False)
        places: dict[ChunkId, ChunkLocation] = {}
        for tid in set(ids.values()):
            loc = index.get(tid)
            if loc is None:
                raise MissingChunk(f"chunk {tid.hex()} was not stored in the target")
            places[tid] = loc
        txn.drop(chunks, delete=False)
        for tid, loc in sorted(places.items()):
            txn.put(tid, encode_location(loc), db=chunks)
        if not changed:
            return
        extents = env.open_db(DB_EXTENTS, txn=txn, create=False)
        updates = []
        for key, value in txn.cursor(extents):
            if len(value) == EXTENT_LENGTH.size + 32:
                new_id = changed.get(ChunkId(bytes(value[EXTENT_LENGTH.size :])))
                if new_id is not None:
                    updates.append((bytes(key), bytes(value[: EXTENT_LENGTH.size]) + new_id))
        for key, new in updates:
            txn.put(key, new, db=extents)
        entries = env.open_db(DB_ENTRIES, txn=txn, create=False)
        # Single-chunk files name their chunk in the entry record itself.
        fixes = []
        for key, value in txn.cursor(entries):
            rec = codec.unpack(bytes(value), "entry record")
            if rec[3] == Kind.REGULAR and isinstance(rec[15], bytes) and len(rec[15]) == 32:
                new_id = changed.get(ChunkId(rec[15]))
                if new_id is not None:
                    rec[15] = new_id
                    fixes.append((bytes(key), codec.pack(rec)))
        for key, new in fixes:
            txn.put(key, new, db=entries)
