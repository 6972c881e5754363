"""`backup --dry-run`: what a backup would do, found without doing it.

The parts are walked as a backup walks them (the same excludes, the same
order, the repository left out) and every regular file is compared with
the host's previous snapshot by the backup's rule of change (size, mtime,
ctime and inode); nothing is read and nothing is written, neither in the
repository nor in the local cache (no lock, no staging database, no
deduplication index). A file that is unchanged but whose data the
repository no longer holds would be read again by the backup; only the
backup itself can tell (its deduplication index knows).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from index.format.names import show_path
from index.format.types import ROOT_ID, EntryId, Kind
from index.model.snapshot_reader import SnapshotReader
from writer.excludes import Excludes, part_excludes
from writer.long_paths import lstat, reachable
from writer.metadata import kind_of
from writer.parts import Part, check_parts


class Status(enum.Enum):
    """What the backup would do with an entry; the value is how `--list`
    shows it (borg's letters)."""

    NEW = "A"
    CHANGED = "M"
    UNCHANGED = "U"
    DIRECTORY = "d"
    OTHER = "o"
    EXCLUDED = "x"
    FAILED = "E"


@dataclass
class DryRunCounts:
    """What the dry run found, counted as a backup's summary counts it."""

    files_new: int = 0
    files_changed: int = 0
    files_unchanged: int = 0
    files_failed: int = 0
    dirs: int = 0
    other: int = 0
    excluded: int = 0
    skipped: int = 0
    bytes_new: int = 0
    bytes_changed: int = 0
    bytes_unchanged: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """The counts as plain values (the `--json` keys of a backup's
        summary where they mean the same)."""
        return {
            "files_new": self.files_new,
            "files_changed": self.files_changed,
            "files_unchanged": self.files_unchanged,
            "files_failed": self.files_failed,
            "directories": self.dirs,
            "other_entries": self.other,
            "excluded": self.excluded,
            "skipped": self.skipped,
            "bytes_new": self.bytes_new,
            "bytes_changed": self.bytes_changed,
            "bytes_unchanged": self.bytes_unchanged,
            "warnings": list(self.warnings),
        }


_FILE_STATUS = {"files_new": Status.NEW, "files_changed": Status.CHANGED,
                "files_unchanged": Status.UNCHANGED}

Report = Callable[[Status, bytes], None]
"""Told each entry's status and its path in the snapshot (`part/dir/name`)."""


class DryRun:
    """Walks the parts of a backup against the previous snapshot."""

    def __init__(self, prev: SnapshotReader | None, skip_dir: tuple[int, int],
                 report: Report | None = None) -> None:
        """`skip_dir` is the (device, inode) of a directory left out (the
        repository); `report` is told every entry (for `--list`)."""
        self.prev = prev
        self.skip_dir = skip_dir
        self.report = report
        self.counts = DryRunCounts()
        # Hard-linked files met, by (device, inode): their category. A backup
        # keeps these in its staging database; a dry run keeps them here.
        self.links: dict[tuple[int, int], str] = {}

    def run(self, parts: list[Part]) -> DryRunCounts:
        """Walk every enabled part; the counts."""
        for part in check_parts(parts):
            # A dump part's processes are run by the backup alone: a dump
            # costs too much to take one only to count it.
            if part.dump_source is None:
                self._walk_part(part)
        return self.counts

    def _walk_part(self, part: Part) -> None:
        resolved = part.path.resolve()
        key = part.name.encode()
        path = os.fsencode(resolved)
        st = os.lstat(path)
        excludes = part_excludes(part, resolved, st)
        self._tell(Status.DIRECTORY, key)
        self.counts.dirs += 1
        prev_id = self.prev.lookup(ROOT_ID, key) if self.prev is not None else None
        stack = [(key, path, prev_id)]
        while stack:
            d_key, d_path, d_prev = stack.pop()
            subdirs = self._scan(d_key, d_path, d_prev, excludes)
            stack.extend(reversed(subdirs))

    def _listing(self, dir_id: EntryId | None) -> Iterator[tuple[bytes, EntryId]]:
        if self.prev is None or dir_id is None:
            return iter(())
        return self.prev.listing(dir_id)

    def _scan(self, key: bytes, path: bytes, prev_id: EntryId | None,
              excludes: Excludes) -> list[tuple[bytes, bytes, EntryId | None]]:
        try:
            with reachable(path) as p, os.scandir(p) as it:
                names = sorted(de.name for de in it)
        except OSError as exc:
            self._fail(key, f"{show_path(path)}: cannot list directory: {exc.strerror}")
            return []
        subdirs = []
        before = self._listing(prev_id)
        at = next(before, None)
        for name in names:
            while at is not None and at[0] < name:
                at = next(before, None)
            listed = at[1] if at is not None and at[0] == name else None
            sub = self._visit(key + b"/" + name, path + b"/" + name, name, listed, excludes)
            if sub is not None:
                subdirs.append(sub)
        return subdirs

    def _visit(self, key: bytes, path: bytes, name: bytes, prev_id: EntryId | None,
               excludes: Excludes) -> tuple[bytes, bytes, EntryId | None] | None:
        """Count one entry as the backup's walk (writer.walk) would; a
        directory still to be walked."""
        counts = self.counts
        # Exclude patterns see the key as the backup stages it (NUL-separated).
        if excludes.excluded(key.replace(b"/", b"\0"), name, path):
            counts.excluded += 1
            self._tell(Status.EXCLUDED, key)
            return None
        try:
            st = lstat(path)
        except FileNotFoundError:
            counts.warnings.append(f"{show_path(path)}: vanished during the dry run")
            return None
        except OSError as exc:
            self._fail(key, f"{show_path(path)}: {exc.strerror}")
            return None
        kind = kind_of(st)
        if kind is None:
            counts.skipped += 1
            return None
        if kind == Kind.DIRECTORY:
            if (st.st_dev, st.st_ino) == self.skip_dir:
                return None
            if excludes.left_out_dir(path):
                counts.excluded += 1
                self._tell(Status.EXCLUDED, key)
                return None
            counts.dirs += 1
            self._tell(Status.DIRECTORY, key)
            return None if excludes.stays_out(st) else (key, path, prev_id)
        if kind != Kind.REGULAR:
            counts.other += 1
            self._tell(Status.OTHER, key)
            return None
        category, first = self._category(st, prev_id)
        setattr(counts, category, getattr(counts, category) + 1)
        if first:
            size_key = "bytes_" + category.removeprefix("files_")
            setattr(counts, size_key, getattr(counts, size_key) + st.st_size)
        self._tell(_FILE_STATUS[category], key)
        return None

    def _category(self, st: os.stat_result, prev_id: EntryId | None) -> tuple[str, bool]:
        """files_new, files_changed or files_unchanged, as the backup counts
        the regular file `st` (a further name of a hard-linked file as its
        first), and whether this is the first name met (whose size counts)."""
        if st.st_nlink > 1:
            link = (st.st_dev, st.st_ino)
            seen = self.links.get(link)
            if seen is not None:
                return seen, False
        prev = self.prev.entry(prev_id) if self.prev is not None and prev_id else None
        if prev is None:
            category = "files_new"
        elif prev.kind == Kind.REGULAR and (
                prev.size, prev.mtime_ns, prev.ctime_ns, prev.source_ino) == (
                st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
            category = "files_unchanged"
        else:
            category = "files_changed"
        if st.st_nlink > 1:
            self.links[(st.st_dev, st.st_ino)] = category
        return category, True

    def _fail(self, key: bytes, message: str) -> None:
        self.counts.files_failed += 1
        self.counts.warnings.append(message)
        self._tell(Status.FAILED, key)

    def _tell(self, status: Status, key: bytes) -> None:
        if self.report is not None:
            self.report(status, key)
