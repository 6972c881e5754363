"""The parts of a backup: named source directories, checked before the
backup and counted after it."""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from pathlib import Path

from index.errors import HistfsError, SourceError
from index.format.names import check_part
from index.format.types import ROOT_ID, Kind
from index.model.snapshot_reader import SnapshotReader
from writer.dumps import DumpSource
from writer.stats import BackupStats


@dataclass(frozen=True)
class Part:
    """A named source directory of a backup, or the dumps of a part of
    another kind (`dump_source`)."""

    name: str
    path: Path
    exclude: tuple[str, ...] = ()
    enabled: bool = True
    chunk_size: int | None = None
    """Average chunk size for this part's large files; None for the
    repository's. Smaller chunks find more of a file whose changes are
    scattered (a database dump) at the cost of more chunks to index."""
    exclude_caches: bool = False
    """Leave out directories holding a valid CACHEDIR.TAG."""
    exclude_if_present: tuple[str, ...] = ()
    """Leave out directories holding a file (of any type) of one of these names."""
    one_file_system: bool = False
    """Enter no directory on another file system than the part's own (a
    mount point is kept, empty)."""
    dump_source: DumpSource | None = None
    """For a part of a dump kind ("command", "postgresql", ...): its files,
    each the standard output of a process; `path` is unused."""
    on_error: str = "fail"
    """What a failing dump does to the backup: "fail" it (nothing is
    published), or "warn" and publish the snapshot without this part."""

    @property
    def source(self) -> str:
        """What the part is read from, as the snapshot records it."""
        return self.dump_source.describe() if self.dump_source is not None \
            else str(self.path)


def check_part_sizes(parts: list[Part], found: dict[bytes, int],
                     prev: SnapshotReader | None, stats: BackupStats) -> dict[str, int]:
    """Files (entries other than directories) of each part in the new
    snapshot; a warning for a part that has none, or fewer than half of what
    it had in the previous snapshot (a wrong path or exclude pattern empties
    a part without any file failing)."""
    before = _part_files(prev) if prev is not None else {}
    counts: dict[str, int] = {}
    for part in parts:
        files = counts[part.name] = found.get(part.name.encode(), 0)
        had = before.get(part.name)
        if files == 0:
            stats.warn(f"part {part.name}: no files at all in {part.path}"
                       + (f" (the previous snapshot had {had})" if had else "")
                       + (f"; check its exclude patterns {list(part.exclude)}"
                          if part.exclude else ""))
        elif had is not None and files < had / 2:
            stats.warn(f"part {part.name}: {files} files, fewer than half of the {had} "
                       f"in the previous snapshot {prev.meta.get('name') if prev else ''}"
                       + (f"; check its exclude patterns {list(part.exclude)}"
                          if part.exclude else ""))
    stats.part_files = dict(counts)
    return counts


def _part_files(snap: SnapshotReader) -> dict[str, int]:
    """Files of each part of an earlier snapshot: recorded in its meta, or
    (snapshots of earlier versions) counted."""
    parts = snap.meta.get("parts")
    recorded: dict[str, int] = {}
    if isinstance(parts, list):
        for p in parts:
            if isinstance(p, dict) and isinstance(p.get("name"), str) \
                    and isinstance(p.get("files"), int):
                recorded[p["name"]] = p["files"]
    if isinstance(parts, list) and len(recorded) == len(parts):
        return recorded
    # Entry ids are given depth first: a part's entries follow its own id,
    # up to the next part's.
    try:
        tops = sorted((entry_id, os.fsdecode(name))
                      for name, entry_id in snap.children(ROOT_ID))
        ids = [entry_id for entry_id, _ in tops]
        counted = dict.fromkeys((name for _, name in tops), 0)
        for entry in snap.entries():
            at = bisect.bisect_right(ids, entry.entry_id) - 1
            if at >= 0 and entry.kind != Kind.DIRECTORY and entry.parent_id != ROOT_ID:
                counted[tops[at][1]] += 1
    except HistfsError:
        # A damaged earlier index is `check`'s to report; nothing to compare.
        return {}
    return counted


def check_parts(parts: list[Part]) -> list[Part]:
    """The enabled parts, checked: valid unique names, existing directories."""
    seen: set[str] = set()
    enabled = [p for p in parts if p.enabled]
    if not enabled:
        raise SourceError("nothing to back up: no enabled parts")
    for part in enabled:
        check_part(part.name)
        if part.name in seen:
            raise SourceError(f"part {part.name!r} is given twice")
        seen.add(part.name)
        if part.dump_source is not None:
            continue
        if not part.path.exists():
            raise SourceError(f"part {part.name}: {part.path} does not exist")
        if not part.path.is_dir():
            raise SourceError(f"part {part.name}: {part.path} is not a directory")
    return enabled
