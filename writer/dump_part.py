"""Stages a part of a dump kind: `<part>/` (mode 0700) holding one file
per dump (mode 0600, its mtime the time its process started), each the
standard output of a process streamed from the pipe into chunks without a
copy on disk.

Every process's exit status decides: one that fails or is killed has given
a stream that may end early, and then nothing of the part is staged (its
stored chunks stay unreferenced, for gc).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable

from index.errors import SourceError
from index.format.names import safe_name
from index.format.types import Extent, Kind
from writer.command_output import StderrTail, process_failed
from writer.dumps import Dump
from writer.file_reading import FileReading
from writer.parts import Part
from writer.staging import SEP, StagedEntry, Staging
from writer.stats import BackupStats

DIR_MODE = 0o700
FILE_MODE = 0o600


def stage_dumps(part: Part, dumps: Iterable[Dump], staging: Staging, files: FileReading,
                stats: BackupStats) -> None:
    """Run each of `dumps` in turn, store its output and, once all have
    succeeded, stage the part's directory and files; raises SourceError
    (naming the part, with the last lines of a failed process's stderr)
    when one fails or `dumps` cannot be listed."""
    files.use_chunk_size(part.chunk_size)
    started_ns = time.time_ns()
    done: dict[bytes, tuple[int, list[Extent], int]] = {}
    try:
        for dump in dumps:
            name = os.fsencode(dump.file)
            if not safe_name(name) or name in done:
                raise SourceError(f"{dump.file!r} is not a file name of its own")
            done[name] = (time.time_ns(), *_run(dump, files))
    except SourceError as exc:
        raise SourceError(f"part {part.name}: {exc}") from None
    uid, gid = os.geteuid(), os.getegid()
    key = part.name.encode()
    staging.put(key, _entry(Kind.DIRECTORY, DIR_MODE, uid, gid, started_ns))
    for name, (when_ns, extents, size) in done.items():
        entry = _entry(Kind.REGULAR, FILE_MODE, uid, gid, when_ns)
        entry.size, entry.extents, entry.stored_bytes = size, extents, size
        staging.put(key + SEP + name, entry)
    stats.add(dirs=1, files_new=len(done), logical_bytes=sum(d[2] for d in done.values()))


def _run(dump: Dump, files: FileReading) -> tuple[list[Extent], int]:
    """Store what `dump`'s process writes to its standard output; its
    extents and size, or SourceError if the process fails."""
    env = {**os.environ, **dump.env} if dump.env else None
    try:
        proc = subprocess.Popen(dump.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, process_group=0)
    except OSError as exc:
        raise SourceError(f"{dump.describe()} could not be started: "
                          f"{exc.strerror or exc}") from None
    assert proc.stdout is not None and proc.stderr is not None
    stderr = StderrTail(proc.stderr)
    try:
        extents, size = files.read_stream(proc.stdout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        proc.stdout.close()
        status = proc.wait()
        stderr.join()
    if status != 0:
        raise SourceError(process_failed(dump.describe(), status, stderr.last_lines()))
    return extents, size


def _entry(kind: Kind, mode: int, uid: int, gid: int, when_ns: int) -> StagedEntry:
    """A staged record of the part's own making, dated `when_ns`."""
    return StagedEntry(kind=kind, mode=mode, uid=uid, gid=gid, size=0, mtime_ns=when_ns,
                       ctime_ns=when_ns, atime_ns=when_ns, rdev=0, stored_bytes=0, data=None,
                       extents=[], xattrs=[], source_ino=0)
