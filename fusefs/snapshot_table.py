"""Which snapshots exist, refreshed at most every few seconds, and the
readers of those in use (a bounded number of open LMDB files)."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from fusefs.inodes import next_key, snapshot_key
from index.errors import CacheError, HistfsError
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_reader import SnapshotReader
from index.store.mapped_pages import drop_pages, mapped_ranges


@dataclass
class Listing:
    """One reading of the repository's snapshot list."""

    hosts: list[str]
    by_host: dict[str, list[SnapshotRef]]
    keys: dict[SnapshotRef, int]
    refs: dict[int, SnapshotRef]
    taken: float = field(default_factory=time.monotonic)

    def latest(self, host: str) -> SnapshotRef | None:
        """The newest snapshot of `host`."""
        refs = self.by_host.get(host)
        return refs[-1] if refs else None


log = logging.getLogger("histfs.mount")
_WARM_EVERY = 10.0


class SnapshotTable:
    """The snapshot list and open snapshot indexes of one mount."""

    def __init__(self, repo: Repository, host: str | None, ttl: float = 2.0,
                 max_open: int = 32) -> None:
        self._repo = repo
        self._host = host
        self._ttl = ttl
        self._max_open = max_open
        self._lock = threading.Lock()
        self._open: OrderedDict[SnapshotRef, SnapshotReader] = OrderedDict()
        self._warmed: dict[SnapshotRef, float] = {}
        self._checked: dict[SnapshotRef, float] = {}
        self._failed: dict[SnapshotRef, tuple[float, str]] = {}
        self._listing = self._read()

    def _read(self) -> Listing:
        refs = self._repo.snapshots(self._host)
        by_host: dict[str, list[SnapshotRef]] = {}
        for ref in refs:
            by_host.setdefault(ref.host, []).append(ref)
        keys: dict[SnapshotRef, int] = {}
        taken: dict[int, SnapshotRef] = {}
        for ref in sorted(refs):
            key = snapshot_key(ref.host, ref.name)
            while key in taken:
                key = next_key(key)
            keys[ref] = key
            taken[key] = ref
        hosts = [self._host] if self._host else sorted(by_host)
        return Listing(hosts, by_host, keys, taken)

    def listing(self, fresh: bool = False) -> Listing:
        """The current listing, re-read when older than the TTL (or `fresh`)."""
        current = self._listing
        if fresh or time.monotonic() - current.taken > self._ttl:
            current = self._listing = self._read()
        return current

    def _replaced(self, ref: SnapshotRef, snap: SnapshotReader) -> bool:
        """Whether gc has published a relocated copy of `ref` since `snap`
        was opened (checked at most every TTL: gc deletes the packs the old
        copy names only after a grace period well above it). The stored
        file is what is compared, not the local copy `snap` reads: a copy in
        the cache (sealed indexes, buckets) never changes."""
        now = time.monotonic()
        if now - self._checked.get(ref, 0.0) < self._ttl:
            return False
        self._checked[ref] = now
        try:
            return self._repo.indexes.identity(ref.relpath) != snap.stored_id
        except FileNotFoundError:
            return False  # pruned: what is open still reads
        except (OSError, HistfsError) as exc:
            # What is open still reads; the next check asks again.
            log.warning("%s/%s: cannot check whether its index was replaced: %s",
                        ref.host, ref.name, exc)
            return False

    def reader(self, ref: SnapshotRef) -> SnapshotReader:
        """An open reader of `ref` (opened on demand, least used closed).
        A snapshot whose index cannot be copied into the local cache raises
        `CacheError`, logged once and then raised again without a new try
        for a TTL (each try writes up to the whole index)."""
        with self._lock:
            snap = self._open.get(ref)
            if snap is not None:
                self._open.move_to_end(ref)
                if not self._replaced(ref, snap):
                    return snap
                del self._open[ref]
                snap.close()
            failed = self._failed.get(ref)
            if failed is not None and time.monotonic() - failed[0] < self._ttl:
                raise CacheError(failed[1])
        try:
            snap = self._repo.open_snapshot(ref)
        except CacheError as exc:
            log.error("%s/%s: %s", ref.host, ref.name, exc)
            with self._lock:
                self._failed[ref] = (time.monotonic(), str(exc))
            raise
        with self._lock:
            self._failed.pop(ref, None)
            other = self._open.get(ref)
            if other is not None:
                snap.close()
                return other
            self._open[ref] = snap
            while len(self._open) > self._max_open:
                # Readers are only used on the event loop thread; reads in
                # worker threads get chunk locations, never a reader.
                _, old = self._open.popitem(last=False)
                old.close()
        return snap

    def warm(self, ref: SnapshotRef) -> None:
        """Before reading files of `ref`: have its whole index read into the
        page cache, at most every `_WARM_EVERY` seconds (it may have been
        evicted since; chunk lookups go to random pages)."""
        now = time.monotonic()
        if now - self._warmed.get(ref, -_WARM_EVERY) >= _WARM_EVERY:
            self._warmed[ref] = now
            self.reader(ref).prefetch()

    def drop_mapped_pages(self) -> None:
        """Unmap the index pages the open readers have touched: they stay in
        the page cache, but no longer count as this process's memory (a walk
        of a 1M-entry snapshot touches some 300 MB of index)."""
        with self._lock:
            # Under the lock no reader is closed, so no range found here can
            # be unmapped and reused before madvise runs.
            drop_pages(mapped_ranges(snap.path for snap in self._open.values()))

    def close(self) -> None:
        """Close every open snapshot index."""
        with self._lock:
            for snap in self._open.values():
                snap.close()
            self._open.clear()
