"""Keeping a backup's memory from growing with the LMDB files it reads.

The staging database, the chunk index, the previous snapshot's index and
the index being built are read through LMDB's memory maps. Every page a
lookup, an insert or the final compacting copy touched stayed mapped and
counted in the process's RSS: a first backup of a million small files
showed hundreds of MB that were only page cache. While a backup runs, a
thread hands the mapped pages of those files back to the page cache
(index.store.mapped_pages) as soon as there are more than a few MB of them.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from types import TracebackType

from index.store.mapped_pages import drop_pages, mapped_ranges

_PERIOD = 0.01
"""Seconds between looks at the mapped pages: the compacting copy of an
index maps a few hundred MB a second."""
_BOUND = 8 << 20
"""Bytes of mapped file pages above the program's own at which the pages
of the watched files are handed back (at 32 MB they were a quarter of
the first backup's peak RSS on the benchmark corpus; 8 MB took 15 MB off
it, at no CPU cost told apart from the machine's noise)."""


def _mapped_file_bytes() -> int:
    """Bytes of file pages mapped into this process (RssFile)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"RssFile:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class MappedMemory:
    """A thread that hands the mapped pages of watched files back to the
    page cache. Use with `with`; a file is watched inside `watching`, which
    must be left before the file's mapping is closed."""

    def __init__(self) -> None:
        self._paths: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # The program's own mapped files (libraries) stay mapped.
        self._base = _mapped_file_bytes()
        self._thread = threading.Thread(target=self._run, name="mapped-memory", daemon=True)

    def __enter__(self) -> MappedMemory:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, path: str | os.PathLike[str]) -> None:
        """Hand back the mapped pages of the file `path` from now on, until
        the end (its mapping must outlive this object's `with`)."""
        with self._lock:
            self._paths.append(os.fspath(path))

    @contextlib.contextmanager
    def watching(self, path: str | os.PathLike[str]) -> Iterator[None]:
        """Hand back the mapped pages of the file `path` inside."""
        self.watch(path)
        try:
            yield
        finally:
            # Under the lock: no drop is under way once the caller may unmap.
            with self._lock:
                self._paths.remove(os.fspath(path))

    def _run(self) -> None:
        while not self._stop.wait(_PERIOD):
            if _mapped_file_bytes() - self._base > _BOUND:
                with self._lock:
                    drop_pages(mapped_ranges(self._paths))
