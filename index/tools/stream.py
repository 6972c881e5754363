"""One file of a snapshot as a stream of bytes (`histfs cat`, `restore
--to-command`).

Memory stays bounded whatever the file's size: extents are looked up a
window at a time and chunks read in runs of a few MiB. Every chunk is
verified against its id before any of its bytes are handed on, so a
damaged chunk ends the stream after the last good run, never with wrong
bytes in it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from index.errors import CorruptChunk, HistfsError
from index.format.types import Entry, Extent, Kind
from index.model.snapshot_reader import SnapshotReader

_RUN_BYTES = 4 * 1024 * 1024
_WINDOW = 64 * 1024 * 1024
"""File bytes whose extents are looked up at once."""
_ZEROS = bytes(1024 * 1024)


class StreamError(HistfsError):
    """A path cannot be streamed (not a regular file)."""


def file_pieces(snap: SnapshotReader, entry: Entry) -> Iterator[bytes]:
    """The bytes of regular file `entry`, in order, in pieces of at most a
    few MiB, each verified; holes come as zeros. Raises CorruptChunk or
    MissingChunk when a chunk cannot be read, after the pieces before it."""
    if entry.kind != Kind.REGULAR:
        raise StreamError("not a regular file")
    done = 0
    window = 0
    while window < entry.size:
        run: list[Extent] = []
        run_bytes = 0
        for ext in snap.extents(entry, window, _WINDOW):
            # An extent overlapping the window's start was sent with the
            # window before.
            if ext.offset + ext.length <= done:
                continue
            if ext.chunk_id is None:
                continue
            if run and (run_bytes >= _RUN_BYTES
                        or run[-1].offset + run[-1].length != ext.offset):
                yield from _filled(done, run[0].offset)
                yield _read_run(snap, run)
                done = run[-1].offset + run[-1].length
                run, run_bytes = [], 0
            run.append(ext)
            run_bytes += ext.length
        if run:
            yield from _filled(done, run[0].offset)
            yield _read_run(snap, run)
            done = run[-1].offset + run[-1].length
        window += _WINDOW
    yield from _filled(done, entry.size)


def _filled(start: int, end: int) -> Iterator[bytes]:
    """Zeros for the hole [start, end)."""
    while start < end:
        n = min(len(_ZEROS), end - start)
        yield _ZEROS[:n]
        start += n


def _read_run(snap: SnapshotReader, run: list[Extent]) -> bytes:
    """Adjacent extents' bytes, every chunk verified by the chunk store."""
    store = snap.chunk_store
    assert store is not None
    chunks = [(e.chunk_id, snap.location(e.chunk_id)) for e in run if e.chunk_id is not None]
    parts = store.read_many(chunks)
    for (cid, _), data, ext in zip(chunks, parts, run, strict=True):
        if len(data) < ext.length:
            raise CorruptChunk(f"chunk {cid.hex()}: shorter than its extent")
    return b"".join(d[: e.length] for e, d in zip(run, parts, strict=True))


def stream_file(snap: SnapshotReader, entry: Entry, write: Callable[[bytes], object]) -> int:
    """Hand the bytes of `entry` to `write`, in order; the bytes written."""
    total = 0
    for piece in file_pieces(snap, entry):
        write(piece)
        total += len(piece)
    return total
