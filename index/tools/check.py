"""Checking a repository: structure always, data on request.

Structure: every pack's table reads; every snapshot index opens and decodes;
every chunk a snapshot names is listed in the pack its index points to, at
that offset. Data (`read_data`): every pack hashes to its name and every blob
decodes and hashes to its chunk id. Damage is reported by snapshot and path.

The outcome of the last check is remembered in this machine's cache
(`last-check.json`, only ever read and written here) for `histfs report`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from index.errors import HistfsError, RepositoryCorrupt, SnapshotDamaged
from index.format import blob
from index.format.names import json_path, show_path
from index.format.pack import PackedChunk, pack_relpath, verify_fd_hash
from index.format.types import ChunkId, Kind, PackId
from index.model.chunk_index import ChunkIndex
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_reader import SnapshotReader
from index.store.packs import list_packs, read_stored_table
from index.store.private import write_private


@dataclass
class CheckReport:
    """What `check` found."""

    packs: int = 0
    packs_read: int = 0
    snapshots: int = 0
    chunks: int = 0
    bytes_read: int = 0
    problems: list[str] = field(default_factory=list)
    damaged: dict[str, list[str]] = field(default_factory=dict)
    """Per snapshot, its damaged paths as text shows them."""
    damaged_paths: dict[str, list[bytes]] = field(default_factory=dict)
    """The same paths as stored; none for a snapshot whose index is damaged."""
    cache: str = ""

    @property
    def sound(self) -> bool:
        """No problem found."""
        return not self.problems and not self.damaged

    def as_dict(self) -> dict[str, object]:
        """For `--json`."""
        return {"sound": self.sound, "packs": self.packs, "packs_read": self.packs_read,
                "snapshots": self.snapshots, "chunks": self.chunks,
                "bytes_read": self.bytes_read, "problems": self.problems,
                "damaged": self.damaged,
                "damaged_paths": {label: [json_path(p) for p in paths]
                                  for label, paths in self.damaged_paths.items()},
                "cache": self.cache}


_PROBLEMS_KEPT = 20


@dataclass(frozen=True, slots=True)
class LastCheck:
    """The last check run on this machine, as `record_result` kept it."""

    time: str
    sound: bool
    read_data: bool
    problems: tuple[str, ...]


def record_result(repo: Repository, report: CheckReport, read_data: bool) -> None:
    """Remember `report` in this machine's cache; a cache that cannot be
    written loses only that memory."""
    doc = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "sound": report.sound,
           "read_data": read_data, "problems": report.problems[:_PROBLEMS_KEPT],
           "snapshots": report.snapshots, "packs": report.packs}
    with contextlib.suppress(OSError):
        write_private(repo.cache.last_check_file, json.dumps(doc).encode())


def last_result(repo: Repository) -> LastCheck | None:
    """The last check run on this machine, or None if there was none (or
    its record cannot be read)."""
    try:
        doc = json.loads((repo.cache.last_check_file).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    problems = doc.get("problems", [])
    return LastCheck(str(doc.get("time")), bool(doc.get("sound")), bool(doc.get("read_data")),
                     tuple(map(str, problems)) if isinstance(problems, list) else ())


def _in_subset(pack_id: PackId, subset: tuple[int, int] | None) -> bool:
    if subset is None:
        return True
    k, n = subset
    return int.from_bytes(pack_id[:8], "little") % n == k - 1


def _read_pack(repo: Repository, pack_id: PackId, rows: list[PackedChunk]
               ) -> tuple[bool, set[ChunkId]]:
    """Whether a pack still hashes to its name, and which of its chunks do
    not decode to their ids (worker thread)."""
    relpath = pack_relpath(pack_id)
    fd = repo.storage.open_local(relpath)
    copy = repo.cache.pack_copy(pack_id.hex())
    try:
        if fd is None:  # a bucket: one GET of the whole pack
            repo.storage.download(relpath, copy)
            fd = os.open(copy, os.O_RDONLY | os.O_CLOEXEC)
        bad: set[ChunkId] = set()
        intact = verify_fd_hash(fd, pack_id.hex())
        for row in rows:
            raw = os.pread(fd, row.stored_size, row.offset)
            try:
                blob.decode(raw, row.chunk_id, repo.config.chunk_id_key, repo.cipher)
            except HistfsError:
                bad.add(row.chunk_id)
        return intact, bad
    finally:
        if fd is not None:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()


def check(repo: Repository, read_data: bool = False, subset: tuple[int, int] | None = None,
          say: Callable[[str], None] = lambda s: None) -> CheckReport:
    """Check `repo`; see the module docstring."""
    report = CheckReport()
    tables: dict[PackId, dict[ChunkId, PackedChunk]] = {}
    bad: set[ChunkId] = set()
    for pack_id in sorted(list_packs(repo.storage)):
        report.packs += 1
        try:
            rows = read_stored_table(repo.storage, pack_id)
        except (RepositoryCorrupt, OSError) as exc:
            report.problems.append(f"pack {pack_id.hex()}: {exc}")
            tables[pack_id] = {}
            continue
        tables[pack_id] = {r.chunk_id: r for r in rows}
    if read_data:
        chosen = [p for p in tables if _in_subset(p, subset) and tables[p]]
        say(f"reading {len(chosen)} of {len(tables)} packs")
        with ThreadPoolExecutor(2) as pool:
            results = pool.map(lambda p: (p, _read_pack(repo, p, list(tables[p].values()))),
                               chosen)
            for pack_id, (intact, pack_bad) in results:
                report.packs_read += 1
                report.bytes_read += repo.storage.size(pack_relpath(pack_id))
                if not intact and not pack_bad:
                    report.problems.append(f"pack {pack_id.hex()}: content does not match "
                                           "its name (damage outside the chunks)")
                if pack_bad:
                    report.problems.append(
                        f"pack {pack_id.hex()}: {len(pack_bad)} damaged chunk(s)")
                    bad |= pack_bad
    for ref in repo.snapshots():
        report.snapshots += 1
        _check_snapshot(repo, ref, tables, bad, report)
    report.cache = _sync_cache(repo)
    return report


def _check_snapshot(repo: Repository, ref: SnapshotRef,
                    tables: dict[PackId, dict[ChunkId, PackedChunk]],
                    bad: set[ChunkId], report: CheckReport) -> None:
    label = f"{ref.host}/{ref.name}"
    try:
        # Opened anew: every byte as stored now, whatever the cache holds.
        snap = repo.open_snapshot(ref, fresh=True)
    except HistfsError as exc:
        why = exc.reason if isinstance(exc, SnapshotDamaged) else str(exc)
        report.problems.append(f"snapshot {label}: index unreadable: {why}")
        report.damaged[label] = ["(the whole snapshot: its index is damaged)"]
        report.damaged_paths[label] = []
        return
    with snap:
        unusable: set[ChunkId] = set()
        for cid, loc in snap.chunk_ids():
            report.chunks += 1
            table = tables.get(loc.pack_id)
            row = table.get(cid) if table is not None else None
            if (row is None or row.offset != loc.offset or row.stored_size != loc.stored_size
                    or cid in bad):
                unusable.add(cid)
        if unusable:
            report.problems.append(f"snapshot {label}: {len(unusable)} chunk(s) missing "
                                   "or damaged")
        try:
            paths = _affected_paths(snap, unusable)
        except HistfsError as exc:
            report.problems.append(f"snapshot {label}: index damaged: {exc}")
            report.damaged[label] = ["(the whole snapshot: its index is damaged)"]
            report.damaged_paths[label] = []
            return
        if paths:
            report.damaged[label] = [show_path(p) for p in paths]
            report.damaged_paths[label] = paths


def _affected_paths(snap: SnapshotReader, unusable: set[ChunkId]) -> list[bytes]:
    """Decode every entry (a structure check) and name the files that use
    an unusable chunk."""
    found: list[bytes] = []
    for entry in snap.entries():
        if entry.kind != Kind.REGULAR or not unusable:
            continue
        if any(x.chunk_id in unusable for x in snap.extents(entry)):
            found.append(snap.path_of(entry.entry_id))
    return found


def _sync_cache(repo: Repository) -> str:
    path = repo.chunk_cache_path()
    existed = path.exists()
    index = ChunkIndex(path)
    try:
        added, removed = index.sync(repo.storage, repo.blob_encryption)
    finally:
        index.close()
    if not existed:
        return f"deduplication cache rebuilt from {added} packs"
    if added or removed:
        return f"deduplication cache updated: {added} packs added, {removed} forgotten"
    return "deduplication cache up to date"

