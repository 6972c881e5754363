"""Restoring a snapshot (or some of its paths) into a local directory.

Nothing in a repository, however damaged or hostile, can make a restore
write outside the target: every name is checked to be one path component,
directories are descended through file descriptors opened with O_NOFOLLOW,
and files are created relative to those descriptors, never through a path
that a restored symlink could redirect. Chunks are verified against their
ids as they are read; a file whose data cannot be read is removed, reported
and counted, never left half-written without a word.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.errors import CorruptChunk, HistfsError, PathNotFound, RepositoryCorrupt
from index.format.names import safe_name, show_path
from index.format.types import Entry, EntryId, Extent, Kind
from index.model.snapshot_reader import SnapshotReader

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_MAX_INFLIGHT = 64
_INLINE_MAX = 1024 * 1024
_MAX_LINK_FDS = 4096
_RUN_BYTES = 4 * 1024 * 1024


class RestoreError(HistfsError):
    """A restore cannot start (target, selection)."""


@dataclass
class RestoreStats:
    """What a restore did."""

    files: int = 0
    dirs: int = 0
    other: int = 0
    bytes: int = 0
    skipped: int = 0
    """Entries left as they were because they exist (`skip_existing`)."""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_bytes(self, n: int) -> None:
        """Count restored bytes (from worker threads)."""
        with self._lock:
            self.bytes += n

    @property
    def duration(self) -> float:
        """Seconds taken (so far)."""
        return (self.finished or time.monotonic()) - self.started

    def as_dict(self) -> dict[str, object]:
        """The summary as plain values."""
        return {"files": self.files, "directories": self.dirs, "other": self.other,
                "bytes": self.bytes, "skipped": self.skipped,
                "duration_seconds": round(self.duration, 3),
                "errors": list(self.errors), "warnings": list(self.warnings)}


class Restorer:
    """Restores entries of one snapshot below a target directory."""

    def __init__(self, snap: SnapshotReader, target: Path, overwrite: bool = False,
                 threads: int = 4, on_progress: Callable[[RestoreStats], None] | None = None,
                 skip_existing: bool = False) -> None:
        """`overwrite` replaces existing files; `skip_existing` leaves every
        existing entry as it is (owner, mode, times and content) and restores
        only what is missing, entering existing directories."""
        if overwrite and skip_existing:
            raise RestoreError("--overwrite and --skip-existing exclude each other")
        self.snap = snap
        self.target = target
        self.overwrite = overwrite
        self.skip_existing = skip_existing
        self.stats = RestoreStats()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="restore")
        self._inflight: deque[tuple[Future[int], int, bytes, Entry, bytes]] = deque()
        # First restored link of each hard-linked inode: (dir fd, name, links left).
        self._links: dict[EntryId, list[Any]] = {}
        self._on_progress = on_progress
        self._open_dirs: set[EntryId] = set()
        self._owner_ok = os.geteuid() == 0

    # -- the walk -------------------------------------------------------

    def restore(self, paths: list[bytes]) -> RestoreStats:
        """Restore `paths` (relative to the snapshot root; [] for all)."""
        self.snap.prefetch()
        selections = [self._select(p) for p in paths] if paths else [(b"", self.snap.root())]
        # Directories are restored recursively; PATH_MAX allows ~2048 levels.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 8000))
        self.target.mkdir(parents=True, exist_ok=True)
        root_fd = os.open(self.target, _OPEN_DIR)
        try:
            for rel, entry in selections:
                self._restore_at(root_fd, rel, entry)
        finally:
            self._wait(0)
            for fd, _, _ in self._links.values():
                os.close(fd)
            self._links.clear()
            os.close(root_fd)
            self._pool.shutdown(wait=True)
        self.stats.finished = time.monotonic()
        return self.stats

    def _select(self, path: bytes) -> tuple[bytes, Entry]:
        parts = [p for p in path.split(b"/") if p and p != b"."]
        if any(not safe_name(p) for p in parts):
            raise RestoreError(f"{show_path(path)}: not a path inside the snapshot")
        try:
            return b"/".join(parts), self.snap.resolve(b"/".join(parts))
        except PathNotFound as exc:
            raise RestoreError(str(exc)) from None

    def _restore_at(self, root_fd: int, rel: bytes, entry: Entry) -> None:
        """Create the parents of `rel` as in the snapshot, then restore it."""
        if not rel:
            self._restore_children(root_fd, b"", entry)
            return
        parts = rel.split(b"/")
        fd = os.dup(root_fd)
        try:
            prefix = b""
            for name in parts[:-1]:
                prefix = prefix + b"/" + name if prefix else name
                parent = fd
                created = self._mkdir(parent, name)
                try:
                    fd = self._open_dir(parent, name, create=False)
                except RestoreError as exc:
                    fd = parent
                    self.stats.errors.append(f"{show_path(prefix)}: {exc}")
                    return
                # Parents get their snapshot owner and mode too (not times:
                # more may be restored into them), unless existing ones are
                # to be left as they are.
                if created or not self.skip_existing:
                    self._apply_owner_mode(parent, name, self.snap.resolve(prefix), prefix)
                os.close(parent)
            self._restore_entry(fd, parts[-1], entry, rel)
        finally:
            os.close(fd)

    @staticmethod
    def _mkdir(parent_fd: int, name: bytes) -> bool:
        """Create directory `name` (mode 0700 until its own is set); whether
        it was not there."""
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
        except FileExistsError:
            return False
        return True

    def _open_dir(self, parent_fd: int, name: bytes, create: bool) -> int:
        """Open (creating if asked) a real directory below `parent_fd`; a
        symlink or file in its place is an error, never followed."""
        if create:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=parent_fd)
        try:
            return os.open(name, _OPEN_DIR, dir_fd=parent_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise RestoreError("exists and is not a directory (not followed)") from None
            raise

    def _restore_children(self, dir_fd: int, rel: bytes, entry: Entry) -> None:
        for name, child_id in self.snap.children(entry.entry_id):
            child_rel = rel + b"/" + name if rel else name
            if not safe_name(name):
                self.stats.errors.append(
                    f"{show_path(child_rel)}: unsafe name in the index; skipped")
                continue
            try:
                child = self.snap.entry(child_id)
            except RepositoryCorrupt as exc:
                # One damaged record costs that entry, not the restore.
                self.stats.errors.append(f"{show_path(child_rel)}: {exc}")
                continue
            self._restore_entry(dir_fd, name, child, child_rel)

    def _restore_entry(self, dir_fd: int, name: bytes, entry: Entry, rel: bytes) -> None:
        try:
            if entry.kind == Kind.DIRECTORY:
                self._make_dir(dir_fd, name, entry, rel)
            elif self._make_room(dir_fd, name, rel):
                if entry.kind == Kind.REGULAR:
                    self._make_file(dir_fd, name, entry, rel)
                    return
                if self._link_again(dir_fd, name, entry):
                    self.stats.other += 1
                    return
                if entry.kind == Kind.SYMLINK:
                    target = entry.data if isinstance(entry.data, bytes) else b""
                    os.symlink(target, name, dir_fd=dir_fd)
                else:
                    mode = {Kind.FIFO: stat.S_IFIFO, Kind.CHAR_DEVICE: stat.S_IFCHR,
                            Kind.BLOCK_DEVICE: stat.S_IFBLK}[entry.kind]
                    os.mknod(name, mode | 0o600, entry.rdev, dir_fd=dir_fd)
                self._apply_meta(dir_fd, name, entry, rel)
                self._remember_link(dir_fd, name, entry)
                self.stats.other += 1
        except OSError as exc:
            self.stats.errors.append(f"{show_path(rel)}: {exc.strerror}")
        except RestoreError as exc:
            self.stats.errors.append(f"{show_path(rel)}: {exc}")

    def _make_room(self, dir_fd: int, name: bytes, rel: bytes) -> bool:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        if self.skip_existing:
            self.stats.skipped += 1
            return False
        if not self.overwrite:
            self.stats.errors.append(f"{show_path(rel)}: exists (use --overwrite)")
            return False
        if stat.S_ISDIR(st.st_mode):
            self.stats.errors.append(f"{show_path(rel)}: exists as a directory; not replaced")
            return False
        os.unlink(name, dir_fd=dir_fd)
        return True

    def _make_dir(self, dir_fd: int, name: bytes, entry: Entry, rel: bytes) -> None:
        if entry.entry_id in self._open_dirs:
            self.stats.errors.append(f"{show_path(rel)}: the index lists a directory inside "
                                     "itself; skipped")
            return
        if not self._mkdir(dir_fd, name):
            if self.skip_existing:
                self._complete_dir(dir_fd, name, entry, rel)
                return
            if not self.overwrite:
                self.stats.errors.append(f"{show_path(rel)}: exists (use --overwrite)")
                return
        fd = self._open_dir(dir_fd, name, create=False)
        self.stats.dirs += 1
        self._open_dirs.add(entry.entry_id)
        try:
            self._restore_children(fd, rel, entry)
        finally:
            self._open_dirs.discard(entry.entry_id)
            os.close(fd)
        # Post-order: creating the children changed the directory's times.
        self._apply_meta(dir_fd, name, entry, rel)

    def _complete_dir(self, dir_fd: int, name: bytes, entry: Entry, rel: bytes) -> None:
        """Restore what is missing in the existing `name` (`skip_existing`):
        a directory is entered and keeps its owner, mode and times (those
        that restoring into it changed are put back); anything else there is
        left as it is."""
        try:
            fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            self.stats.skipped += 1
            return
        try:
            st = os.fstat(fd)
            self._open_dirs.add(entry.entry_id)
            try:
                self._restore_children(fd, rel, entry)
            finally:
                self._open_dirs.discard(entry.entry_id)
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)

    def _link_again(self, dir_fd: int, name: bytes, entry: Entry) -> bool:
        """Make `name` a hard link to the restored first link of `entry`'s
        inode, if there is one (symlinks, fifos and devices too)."""
        first = self._links.get(entry.inode_id)
        if first is None:
            return False
        os.link(first[1], name, src_dir_fd=first[0], dst_dir_fd=dir_fd,
                follow_symlinks=False)
        first[2] -= 1
        if first[2] <= 0:
            os.close(first[0])
            del self._links[entry.inode_id]
        return True

    def _remember_link(self, dir_fd: int, name: bytes, entry: Entry) -> None:
        if entry.nlink > 1 and len(self._links) < _MAX_LINK_FDS:
            self._links[entry.inode_id] = [os.dup(dir_fd), name, entry.nlink - 1]

    def _make_file(self, dir_fd: int, name: bytes, entry: Entry, rel: bytes) -> None:
        if self._link_again(dir_fd, name, entry):
            self.stats.files += 1
            return
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600,
                     dir_fd=dir_fd)
        if entry.size < _INLINE_MAX or entry.nlink > 1:
            # Small files are written here: a thread hand-off costs more than
            # the file (threads contending for the GIL made 30,000 mail files
            # take 16 s instead of a few). Hard-linked files too, so that a
            # later link is only made to data that was verified.
            written = 0
            try:
                written = self._write_content(fd, entry)
                self._apply_meta(dir_fd, name, entry, rel)
            except (HistfsError, OSError) as exc:
                self._failed(dir_fd, name, rel, exc, written)
                return
            # Counted once it is whole: a file that failed is not restored.
            self.stats.files += 1
            self._remember_link(dir_fd, name, entry)
            return
        fut = self._pool.submit(self._write_content, fd, entry)
        self._inflight.append((fut, os.dup(dir_fd), name, entry, rel))
        self._wait(_MAX_INFLIGHT)

    def _write_content(self, fd: int, entry: Entry) -> int:
        """Write a file's data (worker thread); holes stay holes. Returns
        the bytes written (counted in the stats as they are written, and
        taken back if the file fails).

        Adjacent extents are written in runs of a few MiB: one read of their
        neighbouring chunks, one write (a dump cut in 16 KiB chunks has
        thousands)."""
        written = 0
        try:
            run: list[Extent] = []
            run_bytes = 0
            for ext in self.snap.extents(entry):
                if ext.chunk_id is None:
                    continue
                if run and (run_bytes >= _RUN_BYTES
                            or run[-1].offset + run[-1].length != ext.offset):
                    written += self._write_run(fd, run)
                    run, run_bytes = [], 0
                run.append(ext)
                run_bytes += ext.length
            if run:
                written += self._write_run(fd, run)
            os.ftruncate(fd, entry.size)
        except BaseException:
            self.stats.add_bytes(-written)
            raise
        finally:
            os.close(fd)
        return written

    def _write_run(self, fd: int, run: list[Extent]) -> int:
        store = self.snap.chunk_store
        assert store is not None
        chunks = [(e.chunk_id, self.snap.location(e.chunk_id))
                  for e in run if e.chunk_id is not None]
        parts = store.read_many(chunks)
        for (cid, _), data, ext in zip(chunks, parts, run, strict=True):
            if len(data) < ext.length:
                raise CorruptChunk(f"chunk {cid.hex()}: shorter than its extent")
        data = b"".join(d[: e.length] for e, d in zip(run, parts, strict=True))
        os.pwrite(fd, data, run[0].offset)
        self.stats.add_bytes(len(data))
        return len(data)

    def _wait(self, keep: int) -> None:
        """Finish files until at most `keep` are being written."""
        while len(self._inflight) > keep:
            fut, dir_fd, name, entry, rel = self._inflight.popleft()
            written = 0
            try:
                written = fut.result()
                self._apply_meta(dir_fd, name, entry, rel)
                self.stats.files += 1
            except (HistfsError, OSError) as exc:
                self._failed(dir_fd, name, rel, exc, written)
            finally:
                os.close(dir_fd)
            if self._on_progress is not None:
                self._on_progress(self.stats)

    def _failed(self, dir_fd: int, name: bytes, rel: bytes, exc: Exception,
                written: int = 0) -> None:
        """A file whose data could not be restored is removed, not left wrong
        (nor counted: `written` bytes of it are taken back)."""
        self.stats.add_bytes(-written)
        self.stats.errors.append(f"{show_path(rel)}: not restored: {exc}")
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=dir_fd)

    # -- metadata -------------------------------------------------------

    def _apply_owner_mode(self, dir_fd: int, name: bytes, entry: Entry, rel: bytes) -> None:
        try:
            if self._owner_ok:
                os.chown(name, entry.uid, entry.gid, dir_fd=dir_fd, follow_symlinks=False)
            if entry.kind != Kind.SYMLINK:
                # chown clears setuid/setgid: the mode comes after it.
                os.chmod(name, entry.mode, dir_fd=dir_fd)
        except PermissionError as exc:
            self.stats.warnings.append(f"{show_path(rel)}: owner or mode not set: {exc.strerror}")

    def _apply_meta(self, dir_fd: int, name: bytes, entry: Entry, rel: bytes) -> None:
        self._apply_owner_mode(dir_fd, name, entry, rel)
        for key, value in entry.xattrs:
            try:
                os.setxattr(_proc_path(dir_fd, name), key, value, follow_symlinks=False)
            except OSError as exc:
                self.stats.warnings.append(
                    f"{show_path(rel)}: xattr {show_path(key)} not set: {exc.strerror}")
        os.utime(name, ns=(entry.atime_ns, entry.mtime_ns), dir_fd=dir_fd,
                 follow_symlinks=False)


def _proc_path(dir_fd: int, name: bytes) -> bytes:
    # setxattr has no dir_fd form; /proc/self/fd/N/name resolves through the
    # already-open directory, so no symlink on the way can redirect it.
    return f"/proc/self/fd/{dir_fd}/".encode() + name
