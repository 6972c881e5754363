"""One backup run: walk the parts, store what is new, publish a snapshot.

The main thread walks the sources and owns the staging database; worker
threads read, chunk, hash and compress files. Commit order: every pack is
durable, then the snapshot index is published by one rename. Until that
rename nothing of the run is visible; a crash leaves only unreferenced packs,
which the next run reuses through the chunk index.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from index import garbage
from index.chunk_index import ChunkIndex
from index.errors import HistfsError, SnapshotDamaged, SnapshotNotFound, SourceError
from index.names import check_host, check_part, show_path, snapshot_name, snapshot_sort_key
from index.repository import Repository, SnapshotRef
from index.snapshot_reader import SnapshotReader
from index.types import ROOT_ID, ChunkId, ChunkLocation, EntryId, Kind
from writer.excludes import Excludes
from writer.filereader import FileChanged, FileReader
from writer.index_builder import BuildResult, IndexBuilder
from writer.metadata import kind_of, read_xattrs
from writer.packer import ChunkSink
from writer.staging import SEP, StagedEntry, Staging, remove_stale_files
from writer.stats import BackupStats
from writer.testpoints import crash_point, pause_point

VERSION = "0.1.0"
_RESCAN_ROUNDS = 10
# File systems stamp mtimes from a coarse clock (one tick is 1-10 ms): a
# directory changed in the tick in which it was listed keeps its mtime.
_RACY_NS = 50_000_000
# An mtime ahead of our clock may be a file server's clock, and as racy; one
# further ahead than this was set by hand (touch -d 2200-01-01), and any
# change moves it. Treating those as racy too relisted them in each of the
# rescan rounds: 20,000 files in a directory dated 2200 took 3 times as long.
_AHEAD_NS = 24 * 3600 * 1_000_000_000
# System calls refuse paths of PATH_MAX (4096) bytes or more, and trees go
# deeper: paths this long are reached through a descriptor of an ancestor.
_LONG_PATH = 3072


@dataclass(frozen=True)
class Part:
    """A named source directory of a backup."""

    name: str
    path: Path
    exclude: tuple[str, ...] = ()
    enabled: bool = True
    chunk_size: int | None = None
    """Average chunk size for this part's large files; None for the
    repository's. Smaller chunks find more of a file whose changes are
    scattered (a database dump) at the cost of more chunks to index."""


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
class _File:
    key: bytes
    path: bytes
    ino: int
    category: str
    group: tuple[int, int] | None
    reader: FileReader


@dataclass
class _Job:
    files: list[_File]
    future: Future[list[StagedEntry | str]] = field(repr=False)




class BackupRun:
    """The state of one backup; use `run_backup`."""

    def __init__(self, repo: Repository, host: str, parts: list[Part], level: int,
                 stats: BackupStats, threads: int) -> None:
        self.repo = repo
        self.host = host
        self.parts = parts
        self.stats = stats
        self.chunk_index = ChunkIndex(repo.chunk_cache_path())
        self.staging = Staging(repo.cache_dir())
        self.sink = ChunkSink(repo.storage, self.chunk_index, repo.config.chunk_id_key,
                              level, repo.config.pack_size, stats, repo.cipher)
        self.encoders = ThreadPoolExecutor(2, thread_name_prefix="encode")
        self.readers = ThreadPoolExecutor(threads, thread_name_prefix="read")
        self.prefetcher = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        self.small: list[_File] = []
        self.file_readers: dict[int | None, FileReader] = {}
        self.file_reader = self.reader_for(None)
        self.prev: SnapshotReader | None = None
        self.jobs: deque[_Job] = deque()
        self.max_jobs = threads * 4
        self.dirs: list[_Dir] = []
        self.link_owner: dict[tuple[int, int], bytes] = {}
        self.link_count: dict[tuple[int, int], int] = {}
        self.link_category: dict[tuple[int, int], str] = {}
        self.vanished: dict[int, str] = {}
        self.gone: dict[int, bytes] = {}
        self.failed: set[bytes] = set()
        self.rescanned: dict[int, bytes] = {}
        self.rescanning = False
        self.notes: list[str] = []
        self.excludes: list[tuple[Part, Excludes]] = []
        # A repository inside a source tree is not backed up into itself.
        st = repo.root_stat()
        self.repo_dev_ino = (st.st_dev, st.st_ino) if repo.local_root else (-1, -1)

    # -- walking ---------------------------------------------------------

    def reader_for(self, chunk_size: int | None) -> FileReader:
        """The file reader that cuts chunks of `chunk_size` on average."""
        reader = self.file_readers.get(chunk_size)
        if reader is None:
            params = self.repo.config.chunker
            if chunk_size is not None:
                params = replace(params, min_size=chunk_size // 4, avg_size=chunk_size,
                                 max_size=chunk_size * 4)
            reader = self.file_readers[chunk_size] = FileReader(self.sink, params,
                                                                self.encoders)
        return reader

    def walk_part(self, part: Part) -> None:
        """Stage every entry of one part."""
        self.file_reader = self.reader_for(part.chunk_size)
        resolved = part.path.resolve()
        key = part.name.encode()
        excludes = Excludes(list(part.exclude), key, (part.path, resolved))
        path = os.fsencode(resolved)
        st = os.lstat(path)
        prev_id = self.prev.lookup(ROOT_ID, key) if self.prev else None
        self.stage_dir(key, path, st)
        self.walk_dir(_Dir(key, path, 0, prev_id, excludes))
        self.excludes.append((part, excludes))

    def stage_dir(self, key: bytes, path: bytes, st: os.stat_result) -> None:
        entry = StagedEntry.from_stat(Kind.DIRECTORY, st)
        with _reachable(path) as p:
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
            with _reachable(d.path) as p:
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
        if only_new:
            self.find_gone(d, {name for name, _ in listing})
        else:
            self.dirs.append(d)
        subdirs: list[_Dir] = []
        for name, ino in listing:
            key = d.key + SEP + name
            if only_new and (key in self.failed or self.staging.contains(key)):
                continue
            sub = self.visit(key, d.path + b"/" + name, name, ino, d)
            if sub is not None:
                subdirs.append(sub)
        self.read_small()
        return subdirs

    def read_small(self) -> None:
        """Read the small files a directory visit found, while a helper
        thread asks the kernel to fetch the next ones (posix_fadvise
        WILLNEED): on a cold cache the disk then works ahead of this thread
        instead of waiting for it, file by file."""
        items, self.small = self.small, []
        if not items:
            return
        if len(items) > 1:
            self.prefetcher.submit(_fetch_ahead, [f.path for f in items[1:]])
        for item in items:
            self.finish_file(item, self.read_file(item.path, item.group, item.reader))

    def visit(self, key: bytes, path: bytes, name: bytes, ino: int,
              parent: _Dir) -> _Dir | None:
        """Stage one entry; returns a directory still to be walked."""
        if parent.excludes.excluded(key, name, path):
            return None
        try:
            with _reachable(path) as p:
                st = os.lstat(p)
        except FileNotFoundError:
            self.warn_vanished(path, ino)
            return None
        except OSError as exc:
            self.stats.warn(f"{show_path(path)}: {exc.strerror}", failed=True)
            self.failed.add(key)
            return None
        kind = kind_of(st)
        if kind is None:
            what = "socket" if stat.S_ISSOCK(st.st_mode) else "unknown file type"
            self.stats.add(skipped=1)
            self.note(f"{show_path(path)}: {what} skipped")
            return None
        self.vanished.pop(st.st_ino, None)
        if self.rescanning and kind != Kind.DIRECTORY:
            moved_from = self.gone.pop(st.st_ino, None)
            if moved_from is not None:
                # Staged under its old name, now found under a new one: keep one.
                self.staging.delete(moved_from)
            self.rescanned[st.st_ino] = key
        prev_id = None
        if self.prev is not None and parent.prev_id is not None:
            prev_id = self.prev.lookup(parent.prev_id, name)
        try:
            if kind == Kind.DIRECTORY:
                if (st.st_dev, st.st_ino) == self.repo_dev_ino:
                    self.note(f"{show_path(path)}: the repository itself, skipped")
                    return None
                self.stage_dir(key, path, st)
                return _Dir(key, path, st.st_mtime_ns, prev_id, parent.excludes)
            if kind == Kind.REGULAR:
                self.visit_file(key, path, st, prev_id)
                return None
            entry = StagedEntry.from_stat(kind, st)
            with _reachable(path) as p:
                if kind == Kind.SYMLINK:
                    entry.data = os.readlink(p)
                entry.xattrs = read_xattrs(p)
            if st.st_nlink > 1:
                # Symlinks, fifos and device nodes can be hard-linked too:
                # the index gives the links one inode (they share no content).
                link = (st.st_dev, st.st_ino)
                self.link_count[link] = self.link_count.get(link, 0) + 1
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
        if st.st_nlink > 1:
            link = (st.st_dev, st.st_ino)
            self.link_count[link] = self.link_count.get(link, 0) + 1
            owner = self.link_owner.setdefault(link, key)
            if owner != key:
                entry = StagedEntry.from_stat(Kind.REGULAR, st)
                with _reachable(path) as p:
                    entry.xattrs = read_xattrs(p)
                entry.link_group, entry.link_owner = link, owner
                self.staging.put(key, entry)
                self.stats.add(**{self.link_category.get(link, "files_unchanged"): 1})
                return
        prev = self.prev.entry(prev_id) if self.prev is not None and prev_id else None
        if prev is not None and prev.kind == Kind.REGULAR and (
            prev.size, prev.mtime_ns, prev.ctime_ns, prev.source_ino
        ) == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
            assert self.prev is not None
            extents = self.prev.extents(prev)
            cids = [ChunkId(e.chunk_id) for e in extents if e.chunk_id is not None]
            if len(self.chunk_index.get_many(cids)) == len(set(cids)):
                entry = StagedEntry.from_stat(Kind.REGULAR, st)
                entry.extents, entry.stored_bytes = extents, prev.stored_bytes
                entry.xattrs = list(prev.xattrs)
                if st.st_nlink > 1:
                    entry.link_group = (st.st_dev, st.st_ino)
                self.staging.put(key, entry)
                self.stats.add(files_unchanged=1, logical_bytes=st.st_size)
                if st.st_nlink > 1:
                    self.link_category[(st.st_dev, st.st_ino)] = "files_unchanged"
                return
        category = "files_changed" if prev is not None else "files_new"
        group = (st.st_dev, st.st_ino) if st.st_nlink > 1 else None
        if group is not None:
            self.link_category[group] = category
        item = _File(key, path, st.st_ino, category, group, self.file_reader)
        if st.st_size >= self.file_reader.min_size:
            self.submit([item])
        else:
            # Small files are read by this thread once their directory has
            # been visited (see `read_small`): handing each to a thread costs
            # more than reading it, and threads that all need the GIL for
            # short steps slow each other down (30,000 mail files took 5.8 s
            # this way, 7-8 s with one or two helper threads).
            self.small.append(item)

    def submit(self, files: list[_File]) -> None:
        while len(self.jobs) >= self.max_jobs:
            self.finish_job(self.jobs.popleft())
        fut = self.readers.submit(self.read_files, files)
        self.jobs.append(_Job(files, fut))

    def read_files(self, files: list[_File]) -> list[StagedEntry | str]:
        """Read a batch of files in a worker thread."""
        return [self.read_file(f.path, f.group, f.reader) for f in files]

    # -- worker side -----------------------------------------------------

    def read_file(self, path: bytes, group: tuple[int, int] | None,
                  reader: FileReader) -> StagedEntry | str:
        """Read one file in a worker thread: its entry, or "vanished" or
        "failed" (already reported)."""
        def on_bytes(n: int) -> None:
            self.stats.add(bytes_read=n)

        try:
            with _reachable(path) as p:
                try:
                    content = reader.read(p, on_bytes)
                except FileChanged:
                    try:
                        content = reader.read(p, on_bytes)
                    except FileChanged as again:
                        content = again.content
                        self.stats.warn(f"{show_path(path)}: changed while being read; "
                                        "stored as read")
                entry = StagedEntry.from_stat(Kind.REGULAR, content.st)
                entry.size = content.size
                entry.extents = content.extents
                entry.stored_bytes = content.stored_bytes
                entry.xattrs = read_xattrs(p)
        except FileNotFoundError:
            return "vanished"
        except OSError as exc:
            self.stats.warn(f"{show_path(path)}: {exc.strerror}", failed=True)
            return "failed"
        entry.link_group = group
        return entry

    def finish_job(self, job: _Job) -> None:
        """Stage the results of a worker (main thread)."""
        for f, entry in zip(job.files, job.future.result(), strict=True):
            self.finish_file(f, entry)

    def finish_file(self, f: _File, entry: StagedEntry | str) -> None:
        """Stage what reading one file gave."""
        if entry == "vanished":
            self.warn_vanished(f.path, f.ino)
        elif entry == "failed":
            self.failed.add(f.key)
        elif isinstance(entry, StagedEntry):
            self.staging.put(f.key, entry)
            self.stats.add(**{f.category: 1}, logical_bytes=entry.size)

    def drain(self) -> None:
        while self.jobs:
            self.finish_job(self.jobs.popleft())

    # -- commit ----------------------------------------------------------

    def locate(self, cids: list[ChunkId]) -> dict[ChunkId, ChunkLocation]:
        """Where the chunks of the new snapshot are, moving any that live
        only in a pack a garbage collection listed since this backup began
        (gc deletes such a pack once this backup has ended, unless the
        snapshot uses it; see writer/gc.py)."""
        found = self.chunk_index.get_many(cids)
        storage = self.repo.storage
        new_lists = garbage.list_names(storage) - self.chunk_index.garbage_seen
        if not new_lists:
            return found
        doomed = garbage.doomed_packs(storage, new_lists)
        endangered = {cid: loc for cid, loc in found.items() if loc.pack_id in doomed}
        if not endangered:
            return found
        # The sync forgets listed packs and learns gc's copies of their chunks.
        self.chunk_index.sync(storage, self.repo.blob_encryption)
        elsewhere = self.chunk_index.get_many(list(endangered))
        for cid, loc in endangered.items():
            if cid not in elsewhere:
                self.sink.store_again(cid, self.repo.chunk_store.read(cid, loc))
        self.sink.flush()
        self.stats.add(chunks_rescued=len(endangered))
        found.update(self.chunk_index.get_many(list(endangered)))
        return found

    # -- helpers ---------------------------------------------------------

    def warn_vanished(self, path: bytes, ino: int | None) -> None:
        """Report a file that disappeared, unless it turns up under another
        name (same inode) before the backup ends: then it was only moved."""
        message = f"{show_path(path)}: vanished during the backup"
        self.vanished[ino if ino is not None else -len(self.vanished) - 1] = message

    def note(self, message: str) -> None:
        """Something worth saying that is not a problem (a skipped socket)."""
        self.notes.append(message)

    def find_gone(self, d: _Dir, present: set[bytes]) -> None:
        """Remember staged files of `d` that are no longer `present`, by
        inode, so that a rescan finding them under a new name drops the old
        one (or drop them now if that already happened)."""
        prefix = d.key + SEP
        for key, entry in self.staging.children(prefix):
            if entry.kind != Kind.DIRECTORY and key[len(prefix):] not in present:
                if self.rescanned.get(entry.source_ino, key) != key:
                    self.staging.delete(key)
                else:
                    self.gone[entry.source_ino] = key

    def rescan_changed_dirs(self) -> None:
        """Visit names that appeared in directories that changed meanwhile:
        a Maildir message moved from new/ (not yet read) into cur/ (already
        read) is found here instead of dropping out of the snapshot."""
        self.rescanning = True
        for round_no in range(_RESCAN_ROUNDS + 1):
            self.drain()
            if any(d.racy for d in self.dirs):
                # Past the tick: from now on any change moves the mtime.
                time.sleep(_RACY_NS / 1e9)
            changed: list[_Dir] = []
            for d in self.dirs:
                try:
                    with _reachable(d.path) as p:
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
                    with contextlib.suppress(OSError), _reachable(d.path) as p:
                        self.find_gone(d, set(os.listdir(p)))
                break
            for d in changed:
                for sub in self.scan_dir(d, only_new=True):
                    self.walk_dir(sub)
        self.drain()


@contextlib.contextmanager
def _reachable(path: bytes) -> Iterator[bytes]:
    """`path`, or if it is too long for a system call the same file as
    /proc/self/fd/N/REST, N a descriptor of one of its directories (open
    while the caller uses it)."""
    if len(path) < _LONG_PATH:
        yield path
        return
    fd: int | None = None
    rest = path
    try:
        while len(rest) >= _LONG_PATH:
            # Names are at most 255 bytes: the first half holds a separator.
            cut = rest.rfind(b"/", 1, _LONG_PATH // 2)
            head, rest = rest[:cut], rest[cut + 1 :]
            inner = os.open(head, os.O_PATH | os.O_DIRECTORY, dir_fd=fd)
            if fd is not None:
                os.close(fd)
            fd = inner
        yield f"/proc/self/fd/{fd}/".encode() + rest
    finally:
        if fd is not None:
            os.close(fd)


def _fetch_ahead(paths: list[bytes]) -> None:
    """Start reading files into the page cache without waiting for them."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_NOATIME", 0)
    for path in paths:
        try:
            fd = os.open(path, flags)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
        except OSError:
            pass
        finally:
            os.close(fd)


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
        if not part.path.exists():
            raise SourceError(f"part {part.name}: {part.path} does not exist")
        if not part.path.is_dir():
            raise SourceError(f"part {part.name}: {part.path} is not a directory")
    return enabled


def run_backup(
    repo: Repository,
    host: str,
    parts: list[Part],
    level: int = 3,
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
        remove_stale_files(repo.cache_dir())
        run = BackupRun(repo, host, enabled, level, stats,
                        threads or max(2, min(8, 2 * (os.cpu_count() or 1))))
        try:
            if on_start is not None:
                on_start(stats)
            return _run(run, repo, host, enabled, started)
        finally:
            run.readers.shutdown(wait=True, cancel_futures=True)
            run.prefetcher.shutdown(wait=True, cancel_futures=True)
            run.encoders.shutdown(wait=True, cancel_futures=True)
            run.sink.abort()
            run.staging.close()
            if run.prev is not None:
                run.prev.close()
            run.chunk_index.close()
    finally:
        lock.release()


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


def _run(run: BackupRun, repo: Repository, host: str, parts: list[Part],
         started: datetime) -> BackupResult:
    stats = run.stats
    run.chunk_index.sync(repo.storage, repo.blob_encryption)
    # A sealed index is read from a plain copy in the local cache, which may
    # not fit (CacheFull).
    run.prev = _previous(repo, host, stats)
    for part in parts:
        run.walk_part(part)
    run.rescan_changed_dirs()
    for message in run.vanished.values():
        stats.warn(message)
    for part, excludes in run.excludes:
        for pattern, inside in excludes.legacy_hits.items():
            stats.warn(f"part {part.name}: exclude pattern {pattern!r} no longer leaves out "
                       f"{show_path(inside)}: patterns with '/' are matched against the path "
                       "inside the part, not the source's absolute path")
    run.sink.flush()
    crash_point("after-packs")
    base = snapshot_name(started)
    name, n = base, 1
    newest = repo.latest(host)
    if newest is not None and snapshot_sort_key(newest.name)[0] == snapshot_sort_key(base)[0]:
        # The same second as the newest snapshot: follow it, even if the
        # snapshots between were pruned, so that `last` is this one.
        n = max(snapshot_sort_key(newest.name)[1], 1) + 1
        name = snapshot_name(started, n)
    while repo.storage.exists(SnapshotRef(host, name).relpath):
        n += 1
        name = snapshot_name(started, n)
    ref = SnapshotRef(host, name)
    stats.finished = None
    root_st = repo.root_stat()
    root = StagedEntry.from_stat(Kind.DIRECTORY, root_st)
    root.mode, root.uid, root.gid, root.source_ino = 0o755, 0, 0, 0
    ts = int(started.timestamp() * 1e9)
    root.mtime_ns = root.ctime_ns = root.atime_ns = ts
    pause_point("before-index")
    builder = IndexBuilder(repo, run.chunk_index, root, run.link_count, locate=run.locate)
    try:
        meta = {
            "host": host,
            "name": name,
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

        def complete(result: BuildResult) -> dict[str, Any]:
            for orphan in result.orphans:
                stats.warn(f"{show_path(orphan.replace(SEP, b'/'))}: parent directory missing; "
                           "left out")
            for link in result.unreadable_links:
                stats.warn(f"{show_path(link.replace(SEP, b'/'))}: hard link to a file that could "
                           "not be read; left out", failed=True)
            counts = check_part_sizes(parts, result.part_files, run.prev, stats)
            return {
                "parts": [{"name": p.name, "source": str(p.path), "exclude": list(p.exclude),
                           "files": counts[p.name]} for p in parts],
                "files_failed": stats.files_failed,
                "warnings": len(stats.warnings),
            }

        builder.build(run.staging, meta, complete)
        crash_point("before-publish")
        builder.publish(ref)
        crash_point("after-publish")
    finally:
        builder.close()
    stats.finished = stats.started + stats.duration
    return BackupResult(ref, stats)
