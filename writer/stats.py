"""Counters of one backup run, updated from several threads."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class BackupStats:
    """What a backup did; `as_dict` is the `--json` summary."""

    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_failed: int = 0
    dirs: int = 0
    other: int = 0
    skipped: int = 0
    excluded: int = 0
    """Entries left out by the parts' excludes (an excluded directory is one)."""
    bytes_read: int = 0
    logical_bytes: int = 0
    bytes_added: int = 0
    chunks_added: int = 0
    chunks_rescued: int = 0
    """Chunks moved out of packs that a gc running alongside listed."""
    warnings: list[str] = field(default_factory=list)
    part_files: dict[str, int] = field(default_factory=dict)
    """Files (entries other than directories) of each part in the snapshot."""
    expected_files: int | None = None
    """Files (entries other than directories) of the previous snapshot: what
    the progress line measures the share done against."""
    expected_bytes: int | None = None
    """Bytes of the files of the previous snapshot."""
    walked: bool = False
    """Whether the walk is over (the snapshot index is being written)."""
    current: bytes = b""
    """The file being read, or the directory being walked (for the progress line)."""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        """Add to counters atomically."""
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def warn(self, message: str, failed: bool = False) -> None:
        """Record a problem with one file; the backup goes on."""
        with self._lock:
            self.warnings.append(message)
            if failed:
                self.files_failed += 1

    @property
    def files(self) -> int:
        """Regular files and other non-directories seen."""
        return self.files_new + self.files_changed + self.files_unchanged + self.other

    @property
    def duration(self) -> float:
        """Seconds since the start (or of the whole run once finished)."""
        end = self.finished if self.finished is not None else time.monotonic()
        return end - self.started

    def as_dict(self) -> dict[str, object]:
        """The summary as plain values."""
        d = self.duration
        return {
            "files_new": self.files_new,
            "files_changed": self.files_changed,
            "files_unchanged": self.files_unchanged,
            "files_failed": self.files_failed,
            "directories": self.dirs,
            "other_entries": self.other,
            "skipped": self.skipped,
            "excluded": self.excluded,
            "bytes_read": self.bytes_read,
            "logical_bytes": self.logical_bytes,
            "bytes_added": self.bytes_added,
            "chunks_added": self.chunks_added,
            "chunks_rescued": self.chunks_rescued,
            "duration_seconds": round(d, 3),
            "read_rate_bytes_per_second": round(self.bytes_read / d) if d > 0 else 0,
            "part_files": dict(self.part_files),
            "warnings": list(self.warnings),
        }
