"""Garbage collection: give back the space of chunks no snapshot uses.

One run:

1. Reads the `chunks` table of every snapshot: which blobs (pack, offset)
   are in use.
2. Finishes the garbage lists earlier runs left (a run that was killed, or
   one that could not wait for a backup): their packs that nothing uses now
   are deleted.
3. Looks at every other pack: one that holds no used blob is garbage; one
   whose unused share exceeds `max_unused` has its used blobs copied, still
   encoded and verified, into new packs, and is garbage too.
4. Publishes a garbage list naming them, then (holding the prune lock, so no
   snapshot disappears meanwhile) gives every snapshot that used a copied
   pack a new index that names the new packs (writer.relocate).
5. Waits until every backup that started before the list was published has
   finished (`wait` seconds at most), and `grace` seconds more so that
   mounts reopen the new indexes, then reads the snapshots published or
   replaced meanwhile and deletes the listed packs none of them uses.
   What it cannot delete yet stays listed for the next run.

Nothing is deleted before a durable list names it and no snapshot (old,
new, or published by a backup running alongside) can still need it; see
docs/FORMAT.md section 13 for why each crash point is harmless.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from index.errors import CorruptChunk, HistfsError, Locked, RepositoryCorrupt, SnapshotDamaged
from index.format import blob
from index.format.crypto import Cipher
from index.format.pack import PackedChunk, location, pack_relpath
from index.format.types import ChunkId, ChunkLocation, PackId
from index.model.repository import Repository, SnapshotRef
from index.store import garbage
from index.store.local_storage import LocalStorage
from index.store.lock import live_locks_since
from index.store.packs import PackWriter, list_packs, read_stored_table
from index.store.storage import Storage
from writer.prune import PRUNE_LOCK
from writer.relocate import relocate_snapshot
from writer.testpoints import crash_point

GC_LOCK = "gc"
# A lock's start time and a garbage list's time come from the clocks of
# different machines, and a backup reads the lists a moment after it takes
# its lock: a backup that started this close to a list counts as older.
CLOCK_MARGIN = 300.0


@dataclass
class GcResult:
    """What a gc run did."""

    snapshots: int = 0
    packs: int = 0
    packs_deleted: int = 0
    packs_rewritten: int = 0
    packs_written: int = 0
    bytes_deleted: int = 0
    bytes_written: int = 0
    snapshots_relocated: int = 0
    packs_deferred: int = 0
    bytes_deferred: int = 0
    tmp_deleted: int = 0
    tmp_bytes_deleted: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        """Space given back: deleted minus newly written."""
        return self.bytes_deleted - self.bytes_written


@dataclass
class _Usage:
    """What the snapshots use: blobs by pack, and the packs of each snapshot."""

    blobs: dict[PackId, set[int]] = field(default_factory=dict)
    by_snapshot: dict[SnapshotRef, set[PackId]] = field(default_factory=dict)
    identity: dict[SnapshotRef, tuple[int, str, float]] = field(default_factory=dict)

    def used_packs(self) -> set[PackId]:
        packs: set[PackId] = set()
        for used in self.by_snapshot.values():
            packs |= used
        return packs


def _identity(repo: Repository, ref: SnapshotRef) -> tuple[int, str, float] | None:
    try:
        return repo.storage.stat(ref.relpath)
    except FileNotFoundError:
        return None


def _scan(repo: Repository, usage: _Usage, only_changed: bool) -> None:
    """Add what each snapshot uses (with `only_changed`: each one published or
    replaced since it was last scanned)."""
    current = set(repo.snapshots())
    for ref in list(usage.by_snapshot):
        if ref not in current:  # pruned meanwhile
            del usage.by_snapshot[ref]
            usage.identity.pop(ref, None)
    for ref in sorted(current):
        ident = _identity(repo, ref)
        if ident is None or (only_changed and usage.identity.get(ref) == ident):
            continue
        packs: set[PackId] = set()
        try:
            with repo.open_snapshot(ref) as snap:
                for _, loc in snap.chunk_ids():
                    packs.add(loc.pack_id)
                    usage.blobs.setdefault(loc.pack_id, set()).add(loc.offset)
        except RepositoryCorrupt as exc:
            # What it uses is unknown, so any pack may be its: none can go.
            what = str(exc) if isinstance(exc, SnapshotDamaged) else \
                f"snapshot {ref.host}/{ref.name} is damaged: {exc}"
            raise RepositoryCorrupt(f"{what}; gc stops and deletes no pack while a snapshot "
                                    "cannot be read (see histfs check)") from exc
        usage.by_snapshot[ref] = packs
        usage.identity[ref] = ident


def _backups_older_than(repo: Repository, when: float) -> int:
    """How many backups still run that started before `when` (with margin)."""
    return sum(1 for since in live_locks_since(repo.storage, "backup-")
               if since <= when + CLOCK_MARGIN)


def _oldest_backup(repo: Repository) -> float | None:
    started = live_locks_since(repo.storage, "backup-")
    return min(started) if started else None


def _pack_size(repo: Repository, pack_id: PackId) -> int:
    try:
        return repo.storage.size(pack_relpath(pack_id))
    except FileNotFoundError:
        return 0


class _Collector:
    def __init__(self, repo: Repository, max_unused: float, wait: float, grace: float,
                 say: Callable[[str], None]) -> None:
        self.repo = repo
        self.max_unused = max_unused
        self.wait = wait
        self.grace = grace
        self.say = say
        self.result = GcResult()
        self.usage = _Usage()

    def run(self) -> GcResult:
        _scan(self.repo, self.usage, only_changed=False)
        self.result.snapshots = len(self.usage.by_snapshot)
        for old in garbage.read_lists(self.repo.storage):
            self.finish(old, wait=0.0)
        listed = garbage.doomed_packs(self.repo.storage)
        doomed, rewrite = self.choose(listed)
        moves = self.copy_live(rewrite)
        rewrite = {p for p in rewrite if p in self.copied}
        doomed |= rewrite
        if not doomed:
            self.say("nothing to collect")
            return self.result
        g = garbage.write_list(self.repo.storage, doomed)
        crash_point("gc-listed")
        if rewrite:
            self.relocate(rewrite, moves)
        crash_point("gc-relocated")
        self.finish(g, wait=self.wait, grace=self.grace if rewrite else 0.0)
        return self.result

    def choose(self, listed: set[PackId]) -> tuple[set[PackId], set[PackId]]:
        """Packs wholly unused, and packs to rewrite."""
        doomed: set[PackId] = set()
        rewrite: set[PackId] = set()
        self.tables: dict[PackId, list[PackedChunk]] = {}
        oldest = _oldest_backup(self.repo)
        for pack_id in sorted(list_packs(self.repo.storage)):
            self.result.packs += 1
            if pack_id in listed:
                continue
            try:
                mtime = self.repo.storage.stat(pack_relpath(pack_id))[2]
                if oldest is not None and mtime >= oldest:
                    # Likely a running backup's, not in a snapshot yet. Only
                    # a saving: listing it would make that backup store its
                    # chunks again, never lose them.
                    continue
                rows = read_stored_table(self.repo.storage, pack_id)
            except FileNotFoundError:
                continue
            except RepositoryCorrupt as exc:
                self.result.problems.append(f"pack {pack_id.hex()} left alone: {exc}")
                continue
            used = self.usage.blobs.get(pack_id, set())
            total = sum(r.stored_size for r in rows)
            live = sum(r.stored_size for r in rows if r.offset in used)
            if live == 0:
                doomed.add(pack_id)
            elif total and (total - live) / total > self.max_unused:
                rewrite.add(pack_id)
                self.tables[pack_id] = rows
        return doomed, rewrite

    def copy_live(self, rewrite: set[PackId]) -> dict[ChunkId, ChunkLocation]:
        """Copy the used blobs of `rewrite` into new packs; where each went."""
        moves: dict[ChunkId, ChunkLocation] = {}
        self.copied: set[PackId] = set()
        if not rewrite:
            return moves
        storage = self.repo.storage
        key = self.repo.config.chunk_id_key
        writer: PackWriter | None = None
        pending: set[ChunkId] = set()

        def finish(w: PackWriter) -> None:
            pack_id, rows = w.finish()
            self.result.packs_written += 1
            self.result.bytes_written += _pack_size(self.repo, pack_id)
            for row in rows:
                moves[row.chunk_id] = location(pack_id, row)

        try:
            for pack_id in sorted(rewrite):
                used = self.usage.blobs.get(pack_id, set())
                rows = [r for r in self.tables[pack_id] if r.offset in used]
                try:
                    blobs = _read_blobs(storage, pack_relpath(pack_id), rows, key,
                                        self.repo.cipher)
                except (OSError, CorruptChunk) as exc:
                    self.result.problems.append(f"pack {pack_id.hex()} not rewritten: {exc}")
                    continue
                for row, raw in blobs:
                    if row.chunk_id in moves or row.chunk_id in pending:
                        continue  # already copied from another pack
                    if writer is None:
                        writer = PackWriter(storage)
                    writer.add(raw)
                    pending.add(row.chunk_id)
                    if writer.size >= self.repo.config.pack_size:
                        finish(writer)
                        writer, pending = None, set()
                self.copied.add(pack_id)
                self.result.packs_rewritten += 1
            if writer is not None and len(writer):
                finish(writer)
                writer = None
        finally:
            if writer is not None:
                writer.abort()
        crash_point("gc-copied")
        return moves

    def relocate(self, rewrite: set[PackId], moves: dict[ChunkId, ChunkLocation]) -> None:
        """Give each snapshot that used a rewritten pack an index naming the new ones."""
        lock = self.repo.lock(PRUNE_LOCK, "gc")
        lock.acquire(wait=600.0)
        try:
            for ref, packs in sorted(self.usage.by_snapshot.items()):
                if not packs & rewrite or _identity(self.repo, ref) is None:
                    continue
                changed = relocate_snapshot(self.repo, ref, rewrite, moves)
                if changed:
                    self.result.snapshots_relocated += 1
                    crash_point("gc-relocated-one")
                # Scanned afresh before anything is deleted.
                self.usage.identity.pop(ref, None)
        finally:
            lock.release()

    def finish(self, g: garbage.GarbageList, wait: float, grace: float = 0.0) -> None:
        """Delete the packs of garbage list `g` that nothing uses; drop the list."""
        deadline = time.monotonic() + wait
        while (running := _backups_older_than(self.repo, g.time)) and \
                time.monotonic() < deadline:
            self.say(f"waiting for {running} backup(s) that started before this gc")
            time.sleep(min(5.0, max(0.1, deadline - time.monotonic())))
        if running:
            size = sum(_pack_size(self.repo, p) for p in g.packs)
            self.result.packs_deferred += len(g.packs)
            self.result.bytes_deferred += size
            self.say(f"{len(g.packs)} packs stay listed: {running} backup(s) that started "
                     "before them still run; the next gc deletes them")
            return
        if grace > 0:
            time.sleep(grace)
        _scan(self.repo, self.usage, only_changed=True)
        in_use = self.usage.used_packs()
        for pack_id in sorted(g.packs):
            if pack_id in in_use:
                continue  # a snapshot published meanwhile uses it: it stays
            size = _pack_size(self.repo, pack_id)
            with contextlib.suppress(FileNotFoundError):
                self.repo.storage.delete(pack_relpath(pack_id))
                self.result.packs_deleted += 1
                self.result.bytes_deleted += size
            crash_point("gc-deleted-one")
        with contextlib.suppress(FileNotFoundError):
            self.repo.storage.delete(g.relpath)


def _read_blobs(storage: Storage, relpath: str, rows: list[PackedChunk],
                key: bytes, cipher: Cipher | None) -> list[tuple[PackedChunk, bytes]]:
    """The encoded blobs of `rows`, each checked to decode to its chunk id."""
    out = []
    reader = storage.open_ranges(relpath)
    try:
        for row in sorted(rows, key=lambda r: r.offset):
            raw = reader.pread(row.stored_size, row.offset)
            if len(raw) != row.stored_size:
                raise CorruptChunk(f"chunk {row.chunk_id.hex()} is truncated")
            blob.decode(raw, row.chunk_id, key, cipher)
            out.append((row, raw))
    finally:
        reader.close()
    return out


def collect(repo: Repository, max_unused: float = 0.10, wait: float = 600.0,
            grace: float = 10.0, say: Callable[[str], None] = lambda s: None) -> GcResult:
    """Run garbage collection on `repo` (one gc at a time: raises Locked)."""
    if not 0.0 <= max_unused < 1.0:
        raise HistfsError(f"max_unused must be from 0% to 99%, got {max_unused:.0%}")
    lock = repo.lock(GC_LOCK, "gc")
    try:
        lock.acquire(wait=0.0)
    except Locked as exc:
        raise Locked(f"another gc runs: {exc}") from None
    try:
        result = _Collector(repo, max_unused, wait, grace, say).run()
        result.tmp_deleted, result.tmp_bytes_deleted = _clean_tmp(repo)
        return result
    finally:
        lock.release()


TMP_MAX_AGE = 24 * 3600.0
"""A file in tmp/ this old was left by a writer that crashed or was killed:
the slowest pack or index is written in minutes."""


def _clean_tmp(repo: Repository) -> tuple[int, int]:
    """Delete leftover temporary files of a directory repository: (count,
    bytes). A bucket has no tmp/ (objects appear whole)."""
    if not isinstance(repo.storage, LocalStorage):
        return 0, 0
    return repo.storage.remove_stale_temporary(time.time() - TMP_MAX_AGE)
