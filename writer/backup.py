"""One backup run: walk the parts, store what is new, publish a snapshot.

The main thread walks the sources and owns the staging database; worker
threads read, chunk, hash and compress files. Commit order: every pack is
durable, then the snapshot index is published by one rename. Until that
rename nothing of the run is visible; a crash leaves only unreferenced packs,
which the next run reuses through the chunk index.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from index.errors import SnapshotDamaged, SnapshotNotFound, SourceError
from index.format import carried
from index.format.blob import DEFAULT_LEVEL
from index.format.names import check_host, show_path, snapshot_name, snapshot_sort_key
from index.format.snapshot_format import decode_location
from index.format.types import ChunkId, Kind, PackId
from index.model.chunk_index import ChunkIndex
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_reader import SnapshotReader
from index.model.snapshot_writer import SnapshotWriter
from index.store import garbage
from writer.dump_part import stage_dumps
from writer.file_reading import FileReading
from writer.index_builder import BuildResult, IndexBuilder, publish
from writer.mapped_memory import MappedMemory
from writer.packer import ChunkSink
from writer.parts import Part, check_part_sizes, check_parts
from writer.previous import Previous
from writer.staging import SEP, StagedEntry, Staging
from writer.stats import BackupStats
from writer.testpoints import crash_point, pause_point
from writer.walk import Walker

VERSION = "0.1.0"


@dataclass
class BackupResult:
    """What `run_backup` did: the snapshot (None if failed) and counts."""

    snapshot: SnapshotRef | None
    stats: BackupStats

    @property
    def exit_status(self) -> int:
        """0 clean, 1 finished with warnings, 2 failed."""
        if self.snapshot is None:
            return 2
        return 1 if self.stats.warnings else 0


class BackupRun:
    """One backup of `parts` as a new snapshot of `host`; use `run_backup`.
    Use with `with`: leaving it stops the threads and closes what the run
    opened, whether or not it got to its end."""

    def __init__(self, repo: Repository, host: str, parts: list[Part], level: int,
                 stats: BackupStats, threads: int) -> None:
        self.repo = repo
        self.host = host
        self.parts = list(parts)
        self.stats = stats
        with contextlib.ExitStack() as opened:
            self.chunk_index = opened.enter_context(
                contextlib.closing(ChunkIndex(repo.chunk_cache_path())))
            self.staging = opened.enter_context(
                contextlib.closing(Staging(repo.cache.work_file("staging"))))
            self.sink = ChunkSink(repo.storage, self.chunk_index, repo.config.chunk_id_key,
                                  level, repo.config.pack_size, stats, repo.cipher)
            opened.callback(self.sink.abort)
            self.files = opened.enter_context(
                FileReading(self.sink, repo.config.chunker, stats, threads))
            self._opened = opened.pop_all()
        self._doomed: set[PackId] | None = None

    def __enter__(self) -> BackupRun:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._opened.close()

    def run(self, started: datetime) -> BackupResult:
        """Walk the parts, store their new content and publish the snapshot."""
        repo = self.repo
        self.chunk_index.sync(repo.storage, repo.blob_encryption)
        # A sealed index is read from a plain copy in the local cache, which may
        # not fit (CacheFull).
        prev = _previous(repo, self.host, self.stats)
        if prev is not None:
            self._opened.callback(prev.close)
            files, size = prev.meta.get("files"), prev.meta.get("logical_bytes")
            if isinstance(files, int) and isinstance(size, int):
                self.stats.expected_files, self.stats.expected_bytes = files, size
        with MappedMemory() as mapped:
            for path in (self.staging.path, self.chunk_index.path):
                mapped.watch(path)
            if prev is not None:
                mapped.watch(prev.mapped_file)
            self._walk(prev)
            return self._publish(started, prev, mapped)

    def _walk(self, prev: SnapshotReader | None) -> None:
        """Stage every entry of the parts and store their new content."""
        stats = self.stats
        root_st = self.repo.root_stat()
        # A repository inside a source tree is not backed up into itself.
        walker = Walker(self.staging, self.files, stats, Previous(prev, self.chunk_index),
                        (root_st.st_dev, root_st.st_ino) if self.repo.local_root else (-1, -1))
        applied = []
        for part in list(self.parts):
            if part.dump_source is None:
                applied.append((part, walker.walk_part(part)))
                continue
            try:
                stage_dumps(part, part.dump_source.dumps(), self.staging, self.files, stats)
            except SourceError as exc:
                if part.on_error != "warn":
                    raise
                stats.warn(f"{exc}; the snapshot is published without it")
                self.parts.remove(part)
        for message in walker.rescan_changed_dirs():
            stats.warn(message)
        for part, excludes in applied:
            for pattern, inside in excludes.legacy_hits.items():
                stats.warn(f"part {part.name}: exclude pattern {pattern!r} no longer leaves "
                           f"out {show_path(inside)}: patterns with '/' are matched against "
                           "the path inside the part, not the source's absolute path")
        self.sink.flush()
        stats.walked = True
        crash_point("after-packs")

    def _publish(self, started: datetime, prev: SnapshotReader | None,
                 mapped: MappedMemory) -> BackupResult:
        """Build the snapshot index from the staging area and publish it."""
        repo, stats = self.repo, self.stats
        ref = self._free_name(started)
        stats.finished = None
        root = StagedEntry.from_stat(Kind.DIRECTORY, repo.root_stat())
        root.mode, root.uid, root.gid, root.source_ino = 0o755, 0, 0, 0
        root.mtime_ns = root.ctime_ns = root.atime_ns = int(started.timestamp() * 1e9)
        pause_point("before-index")
        with SnapshotWriter(repo.cache.work_file("index"), self.staging.used_bytes()) as writer, \
                mapped.watching(writer.path):
            builder = IndexBuilder(writer, root)
            write = builder.build(self.staging, self.locate, self._meta(ref, started),
                                  lambda result: self._complete(result, prev))
            crash_point("before-publish")
            publish(repo, ref, write)
            crash_point("after-publish")
        stats.finished = stats.started + stats.duration
        return BackupResult(ref, stats)

    def _free_name(self, started: datetime) -> SnapshotRef:
        """The name of the new snapshot: its time, and a suffix if needed."""
        host, base = self.host, snapshot_name(started)
        name, n = base, 1
        newest = self.repo.latest(host)
        if newest is not None and \
                snapshot_sort_key(newest.name)[0] == snapshot_sort_key(base)[0]:
            # The same second as the newest snapshot: follow it, even if the
            # snapshots between were pruned, so that `last` is this one.
            n = max(snapshot_sort_key(newest.name)[1], 1) + 1
            name = snapshot_name(started, n)
        while self.repo.storage.exists(SnapshotRef(host, name).relpath):
            n += 1
            name = snapshot_name(started, n)
        return SnapshotRef(host, name)

    def _meta(self, ref: SnapshotRef, started: datetime) -> dict[str, Any]:
        stats = self.stats
        return {
            "host": ref.host,
            "name": ref.name,
            "time": started.isoformat(),
            "histfs_version": VERSION,
            "machine": os.uname().nodename,
            "files": stats.files,
            "directories": stats.dirs,
            "bytes_read": stats.bytes_read,
            "bytes_added": stats.bytes_added,
            "chunks_added": stats.chunks_added,
            "files_new": stats.files_new,
            "files_changed": stats.files_changed,
            "files_unchanged": stats.files_unchanged,
            "duration_seconds": round(stats.duration, 3),
        }

    def _complete(self, result: BuildResult, prev: SnapshotReader | None) -> dict[str, Any]:
        """Warn of what the index left out; the metadata known only now."""
        stats = self.stats
        for orphan in result.orphans:
            stats.warn(f"{show_path(orphan.replace(SEP, b'/'))}: parent directory missing; "
                       "left out")
        for link in result.unreadable_links:
            stats.warn(f"{show_path(link.replace(SEP, b'/'))}: hard link to a file that could "
                       "not be read; left out", failed=True)
        counts = check_part_sizes(self.parts, result.part_files, prev, stats)
        return {
            "parts": [{"name": p.name, "source": p.source, "exclude": list(p.exclude),
                       "files": counts[p.name]} for p in self.parts],
            "files_failed": stats.files_failed,
            "warnings": len(stats.warnings),
        }

    def locate(self, cids: list[ChunkId]) -> dict[ChunkId, bytes]:
        """Where the chunks of the new snapshot are (as the chunk index
        holds their places), moving any that live only in a pack a garbage
        collection listed since this backup began (gc deletes such a pack
        once this backup has ended, unless the snapshot uses it; see
        writer/gc.py)."""
        found = self.chunk_index.get_many_raw(cids)
        doomed = self._doomed_packs()
        if not doomed:
            return found
        endangered = {cid: decode_location(raw) for cid, raw in found.items()
                      if carried.location_pack(raw) in doomed}
        if not endangered:
            return found
        # The sync forgets listed packs and learns gc's copies of their chunks.
        self.chunk_index.sync(self.repo.storage, self.repo.blob_encryption)
        elsewhere = self.chunk_index.get_many(list(endangered))
        for cid, loc in endangered.items():
            if cid not in elsewhere:
                self.sink.store_again(cid, self.repo.chunk_store.read(cid, loc))
        self.sink.flush()
        self.stats.add(chunks_rescued=len(endangered))
        found.update(self.chunk_index.get_many_raw(list(endangered)))
        return found

    def _doomed_packs(self) -> set[PackId]:
        """The packs named by garbage lists that appeared since this backup
        began, looked for once per index build (`locate` is called for a
        few thousand chunks at a time)."""
        if self._doomed is None:
            storage = self.repo.storage
            new_lists = garbage.list_names(storage) - self.chunk_index.garbage_seen
            self._doomed = garbage.doomed_packs(storage, new_lists) if new_lists else set()
        return self._doomed


def _previous(repo: Repository, host: str, stats: BackupStats) -> SnapshotReader | None:
    """The newest readable snapshot of `host`, whose unchanged files are
    not read again; a newer one that cannot be read is a warning, not the
    end of every backup to come."""
    for ref in reversed(repo.snapshots(host)):
        try:
            return repo.open_snapshot(ref)
        except SnapshotNotFound:
            continue  # pruned meanwhile
        except SnapshotDamaged as exc:
            stats.warn(f"{exc}; files are compared with an older snapshot")
    return None


def run_backup(
    repo: Repository,
    host: str,
    parts: list[Part],
    level: int = DEFAULT_LEVEL,
    lock_wait: float = 0.0,
    threads: int | None = None,
    stats: BackupStats | None = None,
    on_start: Callable[[BackupStats], None] | None = None,
) -> BackupResult:
    """Back up `parts` as a new snapshot of `host`.

    Problems with single files are warnings in the result; anything that
    stops the run raises, and then nothing is published.
    """
    check_host(host)
    enabled = check_parts(parts)
    stats = stats or BackupStats()
    started = datetime.now(UTC)
    lock = repo.lock(f"backup-{host}", f"backup of {host}")
    lock.acquire(wait=lock_wait)
    try:
        repo.cache.remove_stale_work_files()
        with BackupRun(repo, host, enabled, level, stats,
                       threads or max(2, min(8, 2 * (os.cpu_count() or 1)))) as run:
            if on_start is not None:
                on_start(stats)
            return run.run(started)
    finally:
        lock.release()
