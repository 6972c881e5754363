"""A part of `kind = "sqlite"`: each database copied online with the
SQLite backup API into a private work file of the local cache, stored as
`<part>/<base name>` (mode 0600), then removed.

The copy is consistent whatever the database's writers do. In WAL mode
it is made inside one read transaction: writers go on all along. In
rollback-journal mode a read transaction would stop every writer for the
whole copy, so it is made in steps between which writers commit; each
commit makes SQLite start the copy again, and after a few such restarts
it is made inside one read transaction, writers waiting until it ends.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from collections.abc import Callable
from pathlib import Path

from index.errors import SourceError
from index.format.types import Kind
from writer.file_reading import FileReading
from writer.parts import Part
from writer.staging import SEP, StagedEntry, Staging
from writer.stats import BackupStats
from writer.testpoints import pause_point

FILE_MODE = 0o600
STEP_PAGES = 1024
"""Pages copied per step (4 MiB of 4 KiB pages): between steps, writers
of a rollback-journal database may commit, and Ctrl-C is heard."""
STEP_PAUSE = 0.005
"""Seconds between steps in which a waiting writer gets its lock."""
MAX_RESTARTS = 3
"""Copies started again because a writer committed, before the copy is
made inside one read transaction."""
BUSY_TIMEOUT = 60.0
"""How long the copy waits for a writer's lock."""


class _Restarted(Exception):
    """A writer committed during a copy made in steps, once too often."""


def stage_sqlite_part(part: Part, staging: Staging, files: FileReading, stats: BackupStats,
                      work_file: Callable[[], Path]) -> None:
    """Copy and store each database of `part`, then stage the part's
    directory and its files; raises SourceError (naming the part and the
    database) when one cannot be copied, and then stages nothing.
    `work_file` names a new private file for a copy."""
    files.use_chunk_size(part.chunk_size)
    uid, gid = os.geteuid(), os.getegid()
    key = part.name.encode()
    started_ns = time.time_ns()
    staged: list[tuple[bytes, StagedEntry]] = []
    for source in part.paths:
        copied_ns = time.time_ns()
        copy = work_file()
        try:
            try:
                _copy_online(source, copy)
            except (OSError, sqlite3.Error) as exc:
                said = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                raise SourceError(f"part {part.name}: cannot copy the database {source}: "
                                  f"{said}") from None
            with open(copy, "rb") as f:
                extents, size = files.read_stream(f)
        finally:
            _remove(copy)
        entry = _entry(Kind.REGULAR, FILE_MODE, uid, gid, copied_ns)
        entry.size, entry.extents, entry.stored_bytes = size, extents, size
        staged.append((key + SEP + os.fsencode(source.name), entry))
    staging.put(key, _entry(Kind.DIRECTORY, 0o700, uid, gid, started_ns))
    for name, entry in staged:
        staging.put(name, entry)
    stats.add(dirs=1, files_new=len(staged), logical_bytes=sum(e.size for _, e in staged))


def _copy_online(source: Path, copy: Path) -> None:
    """Copy the database `source` into the new file `copy` (0600)."""
    if not stat.S_ISREG(os.stat(source).st_mode):
        raise sqlite3.DatabaseError("not a regular file")
    # Read only: a copy never writes to the database (nor checkpoints its
    # WAL as the last connection to close it would).
    src = sqlite3.connect(source.absolute().as_uri() + "?mode=ro", uri=True,
                          timeout=BUSY_TIMEOUT, isolation_level=None)
    try:
        # Reads the header: "file is not a database" here, not mid-copy.
        wal = src.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
        dst = sqlite3.connect(copy, isolation_level=None)
        try:
            if not wal:
                try:
                    _copy(src, dst, hold=False)
                    return
                except _Restarted:
                    pass
            _copy(src, dst, hold=True)
        finally:
            dst.close()
    finally:
        src.close()


def _copy(src: sqlite3.Connection, dst: sqlite3.Connection, hold: bool) -> None:
    """One copy in steps; with `hold`, inside one read transaction of
    `src`, else raising _Restarted after MAX_RESTARTS restarts."""
    copied, restarts = 0, 0

    def progress(status: int, remaining: int, total: int) -> None:
        nonlocal copied, restarts
        pause_point("sqlite-step")
        # A step that was not kept waiting (busy) copies pages: if no more
        # than before are copied, it started again from the first.
        if status == sqlite3.SQLITE_OK and total - remaining <= copied:
            restarts += 1
            if restarts > MAX_RESTARTS:
                raise _Restarted
        copied = total - remaining
        if not hold:
            time.sleep(STEP_PAUSE)

    if hold:
        src.execute("BEGIN")
        # The transaction takes its read lock (its snapshot) at its first read.
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()
    try:
        src.backup(dst, pages=STEP_PAGES, progress=progress, sleep=STEP_PAUSE)
    finally:
        if hold:
            src.execute("ROLLBACK")


def _remove(copy: Path) -> None:
    """Delete a copy and any journal SQLite left beside it."""
    for name in (copy, Path(f"{copy}-journal"), Path(f"{copy}-wal"), Path(f"{copy}-shm")):
        with contextlib.suppress(FileNotFoundError):
            name.unlink()


def _entry(kind: Kind, mode: int, uid: int, gid: int, when_ns: int) -> StagedEntry:
    """A staged record of the part's own making, dated when its copy began."""
    return StagedEntry(kind=kind, mode=mode, uid=uid, gid=gid, size=0, mtime_ns=when_ns,
                       ctime_ns=when_ns, atime_ns=when_ns, rdev=0, stored_bytes=0, data=None,
                       extents=[], xattrs=[], source_ino=0)
