"""Commands that stream one file of a snapshot out: `cat` (to stdout) and
`restore --to-command` (into a command's standard input).

Every chunk is verified before its bytes go out; a damaged one stops the
stream with the path in a one-line error and exit status 2, so a pipe into
`psql` never receives wrong bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess

from histfs.arguments import config_host, file_config, open_repository, repo_location
from histfs.byte_names import typed_paths
from histfs.exit_status import EXIT_OK
from index.errors import ConfigError, HistfsError, PathNotFound
from index.format.names import show_path
from index.format.types import Entry, Kind
from index.model.snapshot_reader import SnapshotReader
from writer.command_output import StderrTail, how_it_ended

STREAM_CACHE = 4 * 1024 * 1024
"""Decoded chunks kept while streaming: each is read once, in order, and
the chunk store's default cache would hold 64 MiB of them for nothing."""


def cmd_cat(args: argparse.Namespace) -> int:
    """`histfs cat SNAPSHOT PATH`: one file of a snapshot to stdout."""
    from index.tools.stream import stream_file

    cfg = file_config(args)
    with open_repository(repo_location(args, cfg)) as repo:
        repo.chunk_store.limit_cache(STREAM_CACHE)
        ref = repo.select(config_host(args, cfg), args.snapshot)
        with repo.open_snapshot(ref) as snap:
            path, entry = regular_file(snap, args.path)
            # File descriptor 1 itself: --quiet silences sys.stdout, which
            # is for summaries, and the bytes asked for are none.
            with open(1, "wb", closefd=False) as out:
                try:
                    stream_file(snap, entry, out.write)
                except (HistfsError, OSError) as exc:
                    if isinstance(exc, BrokenPipeError):
                        raise
                    out.flush()
                    raise HistfsError(f"{show_path(path)}: stopped: {_reason(exc)}") from None
    return EXIT_OK


def regular_file(snap: SnapshotReader, text: str) -> tuple[bytes, Entry]:
    """The path and entry of the regular file that argument `text` names
    in `snap` (as typed, else the name its `\\xNN` form stands for)."""
    candidates = typed_paths(text.strip("/"))
    for path in candidates:
        try:
            entry = snap.resolve(path)
        except PathNotFound:
            continue
        if entry.kind != Kind.REGULAR:
            raise ConfigError(f"{show_path(path)}: not a regular file "
                              f"({entry.kind.name.lower()})")
        return path, entry
    raise PathNotFound(f"{text}: not in snapshot {snap.meta['name']}")


def to_command(snap: SnapshotReader, path: bytes, entry: Entry, command: str) -> int:
    """Stream file `entry` into the standard input of `command` (run by
    /bin/sh -c, its stdout and stderr this process's, a tail of stderr
    kept); raises HistfsError unless all of it was taken and the command
    exited 0. Returns the bytes streamed."""
    from index.tools.stream import file_pieces

    # A process group of its own: what the shell started can be killed with it.
    proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, process_group=0)
    assert proc.stdin is not None and proc.stderr is not None
    stderr = StderrTail(proc.stderr, echo=True)
    sent = 0
    failure = ""
    try:
        for piece in file_pieces(snap, entry):
            proc.stdin.write(piece)
            sent += len(piece)
    except BrokenPipeError:
        failure = f"it stopped reading after {sent} of {entry.size} bytes"
    except (HistfsError, OSError) as exc:
        # Killed before its input ends: EOF would tell it the file was whole.
        _kill(proc, stderr)
        raise HistfsError(f"{show_path(path)}: stopped: {_reason(exc)}") from None
    except BaseException:
        _kill(proc, stderr)
        raise
    finally:
        try:
            proc.stdin.close()
        except BrokenPipeError:
            failure = failure or f"it stopped reading after {sent} of {entry.size} bytes"
    status = proc.wait()
    stderr.join()
    if status != 0:
        failure = how_it_ended(status)
    if failure:
        said = stderr.last_lines()
        raise HistfsError(f"{show_path(path)}: the command {command!r} failed: {failure}"
                          + (f": {said}" if said else ""))
    return sent


def _kill(proc: subprocess.Popen[bytes], stderr: StderrTail) -> None:
    """End the command and all its shell started, then reap them."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    stderr.join()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
