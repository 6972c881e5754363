"""What a repository holds, in figures (`histfs info`): its size, its
snapshots and hosts, and how much deduplication and compression save.

The ratios come from the snapshot indexes: every chunk a snapshot uses is
listed there with its size before and after compression, so the unique
chunks of all snapshots are counted once each, without reading any pack.
Chunks that no snapshot uses any more (until gc) count in the size only."""

from __future__ import annotations

from dataclasses import dataclass, field

import lmdb

from index.errors import RepositoryCorrupt, SnapshotNotFound
from index.format.snapshot_format import decode_location
from index.model.repository import Repository


@dataclass
class RepositoryStats:
    """The figures of one repository."""

    size_bytes: int = 0
    """Bytes of all its files (packs, indexes, config, ...)."""
    hosts: dict[str, int] = field(default_factory=dict)
    """Snapshots per host."""
    damaged: list[str] = field(default_factory=list)
    """`host/name` of each snapshot whose index cannot be read (not counted below)."""
    logical_bytes: int = 0
    """The sizes of the files of every snapshot, added up."""
    unique_bytes: int = 0
    """The chunks the snapshots use, each once, before compression."""
    stored_bytes: int = 0
    """The same chunks as stored: compressed (and encrypted)."""
    chunks: int = 0

    @property
    def snapshots(self) -> int:
        """Snapshots in the repository (damaged ones too)."""
        return sum(self.hosts.values())

    @property
    def deduplication_ratio(self) -> float | None:
        """Bytes in the snapshots per byte of unique data; None without data."""
        return self.logical_bytes / self.unique_bytes if self.unique_bytes else None

    @property
    def compression_ratio(self) -> float | None:
        """Unique bytes per byte stored; None without data."""
        return self.unique_bytes / self.stored_bytes if self.stored_bytes else None


def repository_stats(repo: Repository) -> RepositoryStats:
    """Open every snapshot index once and add up its figures."""
    stats = RepositoryStats(size_bytes=repo.storage.usage())
    seen: set[bytes] = set()
    for ref in repo.snapshots():
        try:
            with repo.open_snapshot(ref) as snap:
                stats.logical_bytes += snap.snapshot_meta.logical_bytes or 0
                for cid, raw in snap.chunk_rows():
                    if cid in seen:
                        continue
                    seen.add(cid)
                    where = decode_location(raw)
                    stats.unique_bytes += where.raw_size
                    stats.stored_bytes += where.stored_size
        except SnapshotNotFound:
            continue  # removed meanwhile
        except (RepositoryCorrupt, lmdb.Error):
            # What was added of it stays: a share of a damaged snapshot.
            stats.damaged.append(f"{ref.host}/{ref.name}")
        stats.hosts[ref.host] = stats.hosts.get(ref.host, 0) + 1
    stats.chunks = len(seen)
    return stats
