"""What a snapshot's metadata says about it, typed: the one description of
a snapshot that listings, reports and metrics show.

The `meta` map of a snapshot index (docs/FORMAT.md) has grown over
versions: a figure that a snapshot of an earlier version did not record is
None here, never made up. A snapshot whose index cannot be read is
described by its name alone, with the reason (`damaged`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from index.errors import SnapshotDamaged, SnapshotNotFound
from index.format.names import snapshot_time

if TYPE_CHECKING:
    from index.model.repository import Repository


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """One snapshot as its metadata describes it."""

    host: str
    name: str
    recorded_time: str | None = None
    """When the backup started, as it recorded it (ISO 8601 with offset)."""
    parts: tuple[str, ...] = ()
    files: int | None = None
    logical_bytes: int | None = None
    bytes_read: int | None = None
    bytes_added: int | None = None
    files_new: int | None = None
    files_changed: int | None = None
    files_unchanged: int | None = None
    files_failed: int | None = None
    warnings: int | None = None
    duration_seconds: float | None = None
    damaged: str | None = None
    """Why the snapshot's index cannot be read; then nothing but its host
    and name is known."""

    @property
    def time(self) -> datetime:
        """When the snapshot was taken, from its name (UTC)."""
        return snapshot_time(self.name)

    @classmethod
    def from_meta(cls, meta: Mapping[str, object]) -> SnapshotMeta:
        """The description in a decoded `meta` map (whose recorded types
        `snapshot_format.decode_meta` has checked)."""
        parts = meta.get("parts")
        duration = meta.get("duration_seconds")
        return cls(
            host=_text(meta, "host") or "",
            name=_text(meta, "name") or "",
            recorded_time=_text(meta, "time"),
            parts=tuple(p["name"] for p in parts if isinstance(p, dict))
            if isinstance(parts, list) else (),
            files=_count(meta, "files"),
            logical_bytes=_count(meta, "logical_bytes"),
            bytes_read=_count(meta, "bytes_read"),
            bytes_added=_count(meta, "bytes_added"),
            files_new=_count(meta, "files_new"),
            files_changed=_count(meta, "files_changed"),
            files_unchanged=_count(meta, "files_unchanged"),
            files_failed=_count(meta, "files_failed"),
            warnings=_count(meta, "warnings"),
            duration_seconds=float(duration) if isinstance(duration, int | float)
            and not isinstance(duration, bool) else None,
        )


def _text(meta: Mapping[str, object], key: str) -> str | None:
    value = meta.get(key)
    return value if isinstance(value, str) else None


def _count(meta: Mapping[str, object], key: str) -> int | None:
    value = meta.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def snapshot_metas(repo: Repository, host: str | None = None) -> list[SnapshotMeta]:
    """Every snapshot of `host` (default: of every host), oldest first per
    host, each index opened; a damaged one is described by its name and
    reason, one pruned meanwhile is left out."""
    found = []
    for ref in repo.snapshots(host):
        try:
            with repo.open_snapshot(ref) as snap:
                found.append(snap.snapshot_meta)
        except SnapshotNotFound:
            continue
        except SnapshotDamaged as exc:
            found.append(SnapshotMeta(ref.host, ref.name, damaged=exc.reason))
    return found
