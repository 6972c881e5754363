"""Filling the page cache ahead of a reader walking a directory.

`tar`, `cp -a` and `rsync` open the files of a directory one after the
other and read each to the end. Once a reader opens a file of a directory,
the next small files of that directory (in listing order, those not opened
yet) are decoded in a worker and handed to the kernel with
`pyfuse3.notify_store`, so that their reads are answered from the page cache
and never reach the daemon. The files of a directory are neighbours in the
packs: one read of a pack serves many of them.

Bounded: at most `BUDGET` bytes and `MAX_FILES` files pushed and not yet
opened per directory, for `MAX_DIRS` directories at a time; only files of
at most `SMALL` bytes. Every byte is verified like any read's. Under `last`
a file's content is only pushed while it is the one the kernel may keep
(see `fusefs.last`): the store happens on the event loop, after checking
that the content has not changed since it was decoded.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from index.format.types import ChunkId, ChunkLocation
from index.model.snapshot_reader import Piece, assemble

log = logging.getLogger("histfs.mount")

SMALL = 1024 * 1024
"""Largest file pushed (larger ones are read with the kernel's read-ahead)."""
BUDGET = 4 * 1024 * 1024
"""Bytes pushed ahead of the reader, per directory."""
MAX_FILES = 128
"""Files pushed ahead of the reader, per directory."""
BATCH = 512 * 1024
"""Bytes decoded by one worker task (one pass over neighbouring chunks)."""
MAX_DIRS = 16
"""Directories followed at once."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A file that may be pushed: its inode, size and what it is made of."""

    ino: int
    size: int
    pieces: Callable[[], list[Piece] | None]
    """What the file is made of, None if it is not to be pushed after all
    (on the event loop: reads the index)."""
    still: Callable[[], bool]
    """Whether its content is still the one to push (on the event loop)."""


@dataclass
class _Dir:
    files: Iterator[Candidate]
    done: bool = False
    opened: set[int] = field(default_factory=set)
    ahead: dict[int, int] = field(default_factory=dict)
    """Pushed (or being pushed) and not opened yet: inode -> size."""
    ahead_bytes: int = 0


Store = Callable[[int, int, bytes], None]


class Prefill:
    """Pushes the next files of walked directories into the page cache."""

    def __init__(self, read_many: Callable[[list[tuple[ChunkId, ChunkLocation]]], list[bytes]],
                 store: Store, call_soon: Callable[[Callable[[], None]], None]) -> None:
        """`read_many` decodes chunks (in a worker), `store` hands a file's
        bytes to the kernel and `call_soon` runs a function on the event
        loop (from a worker)."""
        self._read_many = read_many
        self._store = store
        self._call_soon = call_soon
        self._dirs: OrderedDict[object, _Dir] = OrderedDict()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="prefill")
        self.pushed = 0
        """Files handed to the kernel (for benchmarks and tests)."""

    def opened(self, ino: int, directory: object,
               listing: Callable[[], Iterator[Candidate]]) -> None:
        """The reader opened file `ino` of `directory` (a hashable key);
        `listing` gives the directory's small files, in listing order, if
        it is not followed yet. On the event loop."""
        d = self._dirs.get(directory)
        if d is None:
            d = _Dir(listing())
            self._dirs[directory] = d
            while len(self._dirs) > MAX_DIRS:
                self._dirs.popitem(last=False)
        else:
            self._dirs.move_to_end(directory)
        d.opened.add(ino)
        d.ahead_bytes -= d.ahead.pop(ino, 0)
        if d.ahead_bytes > BUDGET // 2 or len(d.ahead) > MAX_FILES // 2:
            # Refilled in large batches, not a file at each open: every
            # batch costs a worker's wake-up and the event loop's.
            return
        batch: list[Candidate] = []
        size = 0
        while not d.done and d.ahead_bytes < BUDGET and len(d.ahead) < MAX_FILES:
            c = next(d.files, None)
            if c is None:
                d.done = True
                break
            if c.ino in d.opened or c.ino in d.ahead:
                continue
            d.ahead[c.ino] = c.size
            d.ahead_bytes += c.size
            batch.append(c)
            size += c.size
            if size >= BATCH:
                self._submit(batch)
                batch, size = [], 0
        if batch:
            self._submit(batch)
        if d.done and not d.ahead:
            del self._dirs[directory]

    def _submit(self, batch: list[Candidate]) -> None:
        plans = []
        for c in batch:
            try:
                pieces = c.pieces()
            except Exception:  # a read of the file will report it
                log.debug("prefill: planning failed", exc_info=True)
                continue
            if pieces is not None:
                plans.append((c, pieces))
        if not plans:
            return
        fut = self._pool.submit(self._decode, plans)
        fut.add_done_callback(self._decoded)

    def _decode(self, plans: list[tuple[Candidate, list[Piece]]]
                ) -> list[tuple[Candidate, bytes]]:
        chunks = [p.chunk for _, pieces in plans for p in pieces if p.chunk is not None]
        # All at once: neighbouring chunks are read with one system call.
        decoded = iter(self._read_many(chunks))
        out = []
        for c, pieces in plans:
            data = assemble(pieces, lambda cid, loc: next(decoded))
            assert data is not None
            out.append((c, data))
        return out

    def _decoded(self, fut: Future[list[tuple[Candidate, bytes]]]) -> None:
        if fut.cancelled() or fut.exception() is not None:
            return  # damaged data is reported by the read that meets it

        def push() -> None:
            stored = skipped = 0
            for c, data in fut.result():
                if not c.still():
                    skipped += 1
                    continue
                try:
                    self._store(c.ino, 0, data)
                    self.pushed += 1
                    stored += 1
                except OSError as exc:  # the kernel forgot the inode, or cannot
                    log.debug("prefill: inode %d not stored: %s", c.ino, exc)
                    skipped += 1
            # The --debug log says when a batch is in the page cache.
            log.debug("prefill: stored %d files, %d skipped", stored, skipped)

        try:
            self._call_soon(push)
        except Exception:  # the mount is going away
            return

    def close(self) -> None:
        """Stop the worker."""
        self._dirs.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)
