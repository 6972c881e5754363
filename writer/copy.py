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

from index.errors import MissingChunk, SnapshotNotFound
from index.format.blob import DEFAULT_LEVEL
from index.format.snapshot_format import SNAPSHOTS_DIR
from index.format.types import ChunkId, ChunkLocation
from index.model.chunk_index import ChunkIndex
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_editor import SnapshotEditor
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
        sink = ChunkSink(target.storage, index, target.config.chunk_id_key, DEFAULT_LEVEL,
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
    with SnapshotEditor(source, ref, target.cache.work_file("index")) as editor:
        ids = _store_chunks(source, editor.locations(), sink, same_ids, result)
        sink.flush()  # every pack durable before the index names it
        editor.replace_locations(_places(set(ids.values()), index))
        editor.rename_chunks({c: t for c, t in ids.items() if c != t})
        target.storage.makedirs(f"{SNAPSHOTS_DIR}/{ref.host}")
        target.indexes.publish(ref.relpath, editor.finish())


def _store_chunks(source: Repository, rows: list[tuple[ChunkId, ChunkLocation]],
                  sink: ChunkSink, same_ids: bool, result: CopyResult) -> dict[ChunkId, ChunkId]:
    """Store the chunks of `rows` in the target; source id -> target id."""
    ids: dict[ChunkId, ChunkId] = {}
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


def _places(ids: set[ChunkId], index: ChunkIndex) -> dict[ChunkId, ChunkLocation]:
    """Where the target holds each of the chunks `ids`."""
    places: dict[ChunkId, ChunkLocation] = {}
    for tid in ids:
        loc = index.get(tid)
        if loc is None:
            raise MissingChunk(f"chunk {tid.hex()} was not stored in the target")
        places[tid] = loc
    return places
