"""Walking a backup's parts and staging what they hold.

The walk goes depth first, names sorted, and stages every entry; regular
files that did not change since the previous snapshot keep its extents,
the others are read (writer.file_reading). Sources change while they are
read (a mail server moves messages between directories): directories that
changed meanwhile are listed again until they hold still (a few rounds at
most), so that a moved file is in the snapshot once, under its new name.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field

from index.format.carried import CarriedFile
from index.format.names import show_path
from index.format.types import ROOT_ID, EntryId, Kind
from writer.excludes import Excludes, part_excludes
from writer.file_reading import FileReading, PendingFile, Read, Unread
from writer.long_paths import lstat, reachable
from writer.metadata import kind_of, read_xattrs
from writer.parts import Part
from writer.previous import Listed, Previous
from writer.staging import SEP, Carried, StagedEntry, Staging
from writer.stats import BackupStats

_RESCAN_ROUNDS = 10
# Unchanged files staged as one record at most (Carried.encode_run).
_RUN_FILES = 1000
# File systems stamp mtimes from a coarse clock (one tick is 1-10 ms): a
# directory changed in the tick in which it was listed keeps its mtime.
_RACY_NS = 50_000_000
# An mtime ahead of our clock may be a file server's clock, and as racy; one
# further ahead than this was set by hand (touch -d 2200-01-01), and any
# change moves it. Treating those as racy too relisted them in each of the
# rescan rounds: 20,000 files in a directory dated 2200 took 3 times as long.
_AHEAD_NS = 24 * 3600 * 1_000_000_000


@dataclass
class _Dir:
    key: bytes
    path: bytes
    mtime_ns: int
    prev_id: EntryId | None
    excludes: Excludes
    racy: bool = False
    """Modified so shortly before it was listed that a later change could
    leave its mtime unchanged (timestamps come from a coarse clock)."""


@dataclass
class _Moves:
    """Files that left their place during the walk, by inode: a file found
    again under another name was moved, not lost."""

    vanished: dict[int, str] = field(default_factory=dict)
    """The warnings of files that disappeared, unless found again."""
    gone: dict[int, tuple[bytes, str, int]] = field(default_factory=dict)
    """Staged keys of files no longer in their directory, with the counter
    and bytes they were counted in (`Walker.counted_as`)."""
    rescanned: dict[int, bytes] = field(default_factory=dict)
    """Keys of files staged by a rescan."""
    rescanning: bool = False


class Walker:
    """Stages the entries of the parts of one backup."""

    def __init__(self, staging: Staging, files: FileReading, stats: BackupStats,
                 prev: Previous, skip_dir: tuple[int, int]) -> None:
        """`skip_dir` is the (device, inode) of a directory left out (the
        repository)."""
        self.staging = staging
        self.files = files
        self.stats = stats
        self.prev = prev
        self.skip_dir = skip_dir
        self.moves = _Moves()
        self.failed: set[bytes] = set()
        self.dirs: list[_Dir] = []
        # Unchanged files carried over: the run being gathered (staged under
        # the key of its first name), and counts added per directory.
        self.run: list[tuple[bytes, CarriedFile]] = []
        self.run_key = b""
        self.carried = 0
        self.carried_bytes = 0

    def walk_part(self, part: Part) -> Excludes:
        """Stage every entry of one part; its exclude patterns, as applied."""
        self.files.use_chunk_size(part.chunk_size)
        resolved = part.path.resolve()
        key = part.name.encode()
        path = os.fsencode(resolved)
        st = os.lstat(path)
        excludes = part_excludes(part, resolved, st)
        prev_id = self.prev.lookup(ROOT_ID, key)
        self.stage_dir(key, path, st)
        self.walk_dir(_Dir(key, path, 0, prev_id, excludes))
        return excludes

    def stage_dir(self, key: bytes, path: bytes, st: os.stat_result) -> None:
        """Stage directory `path` (its entries are staged on their own)."""
        entry = StagedEntry.from_stat(Kind.DIRECTORY, st)
        with reachable(path) as p:
            entry.xattrs = read_xattrs(p)
        self.staging.put(key, entry)
        self.stats.add(dirs=1)

    def walk_dir(self, top: _Dir) -> None:
        """Depth-first walk below `top`, names sorted."""
        stack = [top]
        while stack:
            d = stack.pop()
            subdirs = self.scan_dir(d, only_new=False)
            stack.extend(reversed(subdirs))

    def scan_dir(self, d: _Dir, only_new: bool) -> list[_Dir]:
        """Visit the names in `d`; with `only_new`, those not staged yet."""
        try:
            with reachable(d.path) as p:
                d.mtime_ns = os.lstat(p).st_mtime_ns
                d.racy = -_AHEAD_NS < time.time_ns() - d.mtime_ns < _RACY_NS
                with os.scandir(p) as it:
                    # d_ino comes with the listing: it lets a file that vanishes
                    # before its lstat be recognised if it turns up elsewhere.
                    listing = sorted((de.name, de.inode()) for de in it)
        except FileNotFoundError:
            self.warn_vanished(d.path, None)
            return []
        except OSError as exc:
            if d.key not in self.failed:
                self.failed.add(d.key)
                self.stats.warn(f"{show_path(d.path)}: cannot list directory: {exc.strerror}",
                                failed=True)
            return []
        self.stats.current = d.path
        if only_new:
            self.find_gone(d, {name for name, _ in listing})
        else:
            self.dirs.append(d)
        subdirs: list[_Dir] = []
        # The previous snapshot's names come sorted too: one pass over both.
        before = self.prev.listing(d.prev_id)
        at = next(before, None)
        for name, ino in listing:
            while at is not None and at[0] < name:
                at = next(before, None)
            key = d.key + SEP + name
            if only_new and (key in self.failed or self.staging.contains(key)):
                continue
            sub = self.visit(key, d.path + b"/" + name, name, ino, d,
                             at if at is not None and at[0] == name else None)
            if sub is not None:
                subdirs.append(sub)
        self.end_run()
        self.stage_reads(self.files.read_small())
        self.flush_counts()
        return subdirs

    def visit(self, key: bytes, path: bytes, name: bytes, ino: int,
              parent: _Dir, listed: Listed | None) -> _Dir | None:
        """Stage one entry (`listed`: its name in the previous snapshot);
        returns a directory still to be walked."""
        if parent.excludes.excluded(key, name, path):
            self.stats.add(excluded=1)
            return None
        try:
            # By its whole path: a directory renamed while it is visited
            # loses its files here, and the rescan finds them where it went.
            st = lstat(path)
        except FileNotFoundError:
            self.warn_vanished(path, ino)
            return None
        except OSError as exc:
            self.stats.warn(f"{show_path(path)}: {exc.strerror}", failed=True)
            self.failed.add(key)
            return None
        kind = kind_of(st)
        if kind is None:
            # A socket (or a type unknown here): nothing to store.
            self.stats.add(skipped=1)
            return None
        self.moves.vanished.pop(st.st_ino, None)
        if self.moves.rescanning and kind != Kind.DIRECTORY:
            moved_from = self.moves.gone.pop(st.st_ino, None)
            if moved_from is not None:
                # Staged under its old name, now found under a new one: keep
                # one, counted once.
                self.uncount(moved_from)
            self.moves.rescanned[st.st_ino] = key
        prev_id = listed[1] if listed is not None else None
        if kind == Kind.REGULAR and st.st_nlink == 1 and listed is not None:
            kept = self.prev.carry(name, listed[1], st)
            if kept is not None:
                self.carry(key, name, kept)
                self.carried_bytes += st.st_size
                return None
        # Whatever else is staged here must not fall inside a run.
        self.end_run()
        try:
            if kind == Kind.DIRECTORY:
                if (st.st_dev, st.st_ino) == self.skip_dir:
                    return None
                if parent.excludes.left_out_dir(path):
                    self.stats.add(excluded=1)
                    return None
                self.stage_dir(key, path, st)
                if parent.excludes.stays_out(st):
                    return None
                return _Dir(key, path, st.st_mtime_ns, prev_id, parent.excludes)
            if kind == Kind.REGULAR:
                self.visit_file(key, path, st, prev_id)
                return None
            entry = StagedEntry.from_stat(kind, st)
            with reachable(path) as p:
                if kind == Kind.SYMLINK:
                    entry.data = os.readlink(p)
                entry.xattrs = read_xattrs(p)
            if st.st_nlink > 1:
                # Symlinks, fifos and device nodes can be hard-linked too:
                # the index gives the links one inode (they share no content).
                link = (st.st_dev, st.st_ino)
                self.staging.link_name(link, key)
                entry.link_group = link
        except FileNotFoundError:
            self.warn_vanished(path, st.st_ino)
            return None
        except OSError as exc:
            self.stats.warn(f"{show_path(path)}: {exc.strerror}", failed=True)
            self.failed.add(key)
            return None
        self.staging.put(key, entry)
        self.stats.add(other=1)
        return None

    def visit_file(self, key: bytes, path: bytes, st: os.stat_result,
                   prev_id: EntryId | None) -> None:
        """Stage a regular file: as a further name of a file with hard
        links, unchanged from the previous snapshot, or read."""
        if st.st_nlink > 1:
            link = (st.st_dev, st.st_ino)
            # The hard links met are counted in the staging database: a
            # mail server may have millions.
            owner, owner_category = self.staging.link_name(link, key)
            if owner != key:
                entry = StagedEntry.from_stat(Kind.REGULAR, st)
                with reachable(path) as p:
                    entry.xattrs = read_xattrs(p)
                entry.link_group, entry.link_owner = link, owner
                self.staging.put(key, entry)
                self.stats.add(**{owner_category or "files_unchanged": 1})
                return
        prev = self.prev.entry(prev_id)
        extents = self.prev.unchanged(prev, st) if prev is not None else None
        if prev is not None and extents is not None:
            entry = StagedEntry.from_stat(Kind.REGULAR, st)
            entry.extents, entry.stored_bytes = extents, prev.stored_bytes
            entry.xattrs = list(prev.xattrs)
            if st.st_nlink > 1:
                entry.link_group = (st.st_dev, st.st_ino)
            self.staging.put(key, entry)
            self.stats.add(files_unchanged=1, logical_bytes=st.st_size)
            if st.st_nlink > 1:
                self.staging.link_counted((st.st_dev, st.st_ino), "files_unchanged")
            return
        category = "files_changed" if prev is not None else "files_new"
        group = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
        if group is not None:
            self.staging.link_counted(group, category)
        self.stage_reads(self.files.add(
            PendingFile(key, path, st.st_ino, category, group, st.st_size)))

    def carry(self, key: bytes, name: bytes, kept: CarriedFile) -> None:
        """Stage an unchanged file: in the run being gathered, or alone in
        a directory listed again (whose names must stay apart)."""
        self.carried += 1
        if self.moves.rescanning:
            self.staging.put(key, Carried.encode_one(kept))
            return
        if not self.run:
            self.run_key = key
        self.run.append((name, kept))
        if len(self.run) >= _RUN_FILES:
            self.end_run()

    def end_run(self) -> None:
        """Stage the run of unchanged files gathered so far."""
        if self.run:
            self.staging.put(self.run_key, Carried.encode_run(self.run))
            self.run = []
            # The progress line counts them now, not only when the directory ends.
            self.flush_counts()

    def flush_counts(self) -> None:
        """Add the unchanged files carried over to the run's counters."""
        if self.carried:
            self.stats.add(files_unchanged=self.carried, logical_bytes=self.carried_bytes)
            self.carried = self.carried_bytes = 0

    def stage_reads(self, reads: list[Read]) -> None:
        """Stage what reading files gave."""
        for f, entry in reads:
            if entry is Unread.VANISHED:
                self.warn_vanished(f.path, f.ino)
            elif entry is Unread.FAILED:
                self.failed.add(f.key)
            else:
                self.staging.put(f.key, entry)
                self.stats.add(**{f.category: 1}, logical_bytes=entry.size)

    def warn_vanished(self, path: bytes, ino: int | None) -> None:
        """Report a file that disappeared, unless it turns up under another
        name (same inode) before the backup ends: then it was only moved."""
        message = f"{show_path(path)}: vanished during the backup"
        vanished = self.moves.vanished
        vanished[ino if ino is not None else -len(vanished) - 1] = message

    def find_gone(self, d: _Dir, present: set[bytes]) -> None:
        """Remember staged files of `d` that are no longer `present`, by
        inode, so that a rescan finding them under a new name drops the old
        one (or drop them now if that already happened)."""
        prefix = d.key + SEP
        for key, entry in self.staging.children(prefix):
            if entry.kind != Kind.DIRECTORY and key[len(prefix):] not in present:
                staged = (key, *self.counted_as(d, key[len(prefix):], entry))
                if self.moves.rescanned.get(entry.source_ino, key) != key:
                    self.uncount(staged)
                else:
                    self.moves.gone[entry.source_ino] = staged

    def counted_as(self, d: _Dir, name: bytes, entry: StagedEntry) -> tuple[str, int]:
        """The counter and the bytes the entry staged as `name` in `d` was
        counted in (for a regular file, by the rule `visit_file` applies)."""
        if entry.kind != Kind.REGULAR:
            return "other", 0
        # A further name of a hard-linked file added no bytes.
        size = 0 if entry.link_owner is not None else entry.size
        prev = self.prev.entry(self.prev.lookup(d.prev_id, name))
        if prev is None:
            return "files_new", size
        same = prev.kind == Kind.REGULAR and (
            prev.size, prev.mtime_ns, prev.ctime_ns, prev.source_ino) == (
            entry.size, entry.mtime_ns, entry.ctime_ns, entry.source_ino)
        return ("files_unchanged" if same else "files_changed"), size

    def uncount(self, staged: tuple[bytes, str, int]) -> None:
        """Drop a staged entry that is not in the snapshot after all (moved
        or deleted during the walk), and take it off the counters, so that
        the summary counts what the snapshot holds."""
        key, counter, size = staged
        self.staging.delete(key)
        self.stats.add(**{counter: -1}, logical_bytes=-size)

    def rescan_changed_dirs(self) -> list[str]:
        """Visit names that appeared in directories that changed meanwhile:
        a Maildir message moved from new/ (not yet read) into cur/ (already
        read) is found here instead of dropping out of the snapshot. Returns
        the warnings of files that vanished for good."""
        self.moves.rescanning = True
        for round_no in range(_RESCAN_ROUNDS + 1):
            self.stage_reads(self.files.drain())
            if any(d.racy for d in self.dirs):
                # Past the tick: from now on any change moves the mtime.
                time.sleep(_RACY_NS / 1e9)
            changed: list[_Dir] = []
            for d in self.dirs:
                try:
                    with reachable(d.path) as p:
                        st = os.lstat(p)
                except OSError:
                    continue
                if st.st_mtime_ns != d.mtime_ns or d.racy:
                    self.stage_dir(d.key, d.path, st)
                    self.stats.add(dirs=-1)
                    changed.append(d)
            if not changed:
                break
            if round_no == _RESCAN_ROUNDS:
                for d in changed:
                    self.staging.split_runs(d.key)
                    with contextlib.suppress(OSError), reachable(d.path) as p:
                        self.find_gone(d, set(os.listdir(p)))
                break
            for d in changed:
                self.staging.split_runs(d.key)
                for sub in self.scan_dir(d, only_new=True):
                    self.walk_dir(sub)
        self.stage_reads(self.files.drain())
        return list(self.moves.vanished.values())
