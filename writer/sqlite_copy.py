"""`python -m writer.sqlite_copy DATABASE WORK_DIR`: an online copy of an
SQLite database, made with the SQLite backup API and written to standard
output; what a part of kind "sqlite" runs for each database (see
writer/sqlite_dumps.py), so that its copy is streamed, checked and failed
like any dump.

The copy is made in a file of WORK_DIR (the local cache, not the
database's directory) created 0600 and unlinked as soon as SQLite has it
open: nothing of it is left, whether the copy succeeds, fails or is
killed.

The copy is consistent whatever the database's writers do. In WAL mode it
is made inside one read transaction: writers go on all along. In
rollback-journal mode a read transaction would stop every writer for the
whole copy, so it is made in steps between which writers commit; each
commit makes SQLite start the copy again, and after a few such restarts
it is made inside one read transaction, writers waiting until it ends.
A failure is one line on standard error and exit status 2.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import sys
import tempfile
import time
from pathlib import Path

from writer.testpoints import pause_point

STEP_PAGES = 1024
"""Pages copied per step (4 MiB of 4 KiB pages): between steps, writers
of a rollback-journal database may commit."""
STEP_PAUSE = 0.005
"""Seconds between steps in which a waiting writer gets its lock."""
MAX_RESTARTS = 3
"""Copies started again because a writer committed, before the copy is
made inside one read transaction."""
BUSY_TIMEOUT = 60.0
"""How long the copy waits for a writer's lock."""


class _Restarted(Exception):
    """A writer committed during a copy made in steps, once too often."""


def copy_database(source: Path, work_dir: Path) -> int:
    """A descriptor of an unnamed copy of the database `source`, at its
    start."""
    if not stat.S_ISREG(os.stat(source).st_mode):
        raise sqlite3.DatabaseError("not a regular file")
    # Read only: a copy never writes to the database (nor checkpoints its
    # WAL as the last connection to close it would).
    src = sqlite3.connect(source.absolute().as_uri() + "?mode=ro", uri=True,
                          timeout=BUSY_TIMEOUT, isolation_level=None)
    try:
        # Reads the header: "file is not a database" here, not mid-copy.
        wal = src.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        if not wal:
            try:
                return _copy_into_new_file(src, work_dir, hold=False)
            except _Restarted:
                pass
        return _copy_into_new_file(src, work_dir, hold=True)
    finally:
        src.close()


def _copy_into_new_file(src: sqlite3.Connection, work_dir: Path, hold: bool) -> int:
    """A copy of `src` (see `_copy`) in a new unnamed file of `work_dir`;
    its descriptor."""
    fd, name = tempfile.mkstemp(prefix="sqlite-copy-", suffix=".db", dir=work_dir)
    try:
        try:
            dst = sqlite3.connect(name, isolation_level=None)
        finally:
            os.unlink(name)
        try:
            # Without a journal, a copy stopped midway is no database: it
            # is thrown away, never used.
            dst.execute("PRAGMA journal_mode = OFF")
            dst.execute("PRAGMA synchronous = OFF")
            _copy(src, dst, hold)
        finally:
            dst.close()
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def main(argv: list[str]) -> int:
    """Copy the database argv[0] to standard output, working in argv[1]."""
    source, work_dir = Path(argv[0]), Path(argv[1])
    try:
        fd = copy_database(source, work_dir)
    except (OSError, sqlite3.Error) as exc:
        said = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(said, file=sys.stderr)
        return 2
    with open(fd, "rb") as copy:
        shutil.copyfileobj(copy, sys.stdout.buffer, 1 << 20)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
