"""A part of `kind = "command"`: a command's standard output stored as one
file, `<part>/<file>` (mode 0600), streamed from the pipe into chunks
without a copy on disk.

The command runs through /bin/sh -c with this process's environment (where
credentials belong: never on its command line). Its exit status decides:
a command that fails or is killed has given a stream that may end early,
and such a file is never published.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from index.errors import SourceError
from index.format.types import Kind
from writer.command_output import StderrTail, how_it_ended
from writer.file_reading import FileReading
from writer.parts import Part
from writer.staging import SEP, StagedEntry, Staging
from writer.stats import BackupStats

FILE_MODE = 0o600


def stage_command_part(part: Part, staging: Staging, files: FileReading,
                       stats: BackupStats) -> None:
    """Run the command of `part`, store its output and stage the part's
    directory and its one file; raises SourceError (naming the part, with
    the last lines of the command's stderr) when the command fails."""
    assert part.command is not None
    files.use_chunk_size(part.chunk_size)
    started_ns = time.time_ns()
    proc = subprocess.Popen(["/bin/sh", "-c", part.command], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            process_group=0)
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
        said = stderr.last_lines()
        raise SourceError(f"part {part.name}: the command {part.command!r} "
                          f"{how_it_ended(status)}"
                          + (f": {said}" if said else ""))
    uid, gid = os.geteuid(), os.getegid()
    key = part.name.encode()
    staging.put(key, _entry(Kind.DIRECTORY, 0o700, uid, gid, started_ns))
    entry = _entry(Kind.REGULAR, FILE_MODE, uid, gid, started_ns)
    entry.size, entry.extents, entry.stored_bytes = size, extents, size
    staging.put(key + SEP + part.file.encode(), entry)
    stats.add(dirs=1, files_new=1, logical_bytes=size)


def _entry(kind: Kind, mode: int, uid: int, gid: int, when_ns: int) -> StagedEntry:
    """A staged record of the part's own making, dated when the command
    started."""
    return StagedEntry(kind=kind, mode=mode, uid=uid, gid=gid, size=0, mtime_ns=when_ns,
                       ctime_ns=when_ns, atime_ns=when_ns, rdev=0, stored_bytes=0, data=None,
                       extents=[], xattrs=[], source_ino=0)
