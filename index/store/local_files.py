"""Files of a directory repository: one being written under a temporary
name in `tmp/` (`PendingFile`), byte ranges of one being read
(`LocalRangeReader`)."""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import TYPE_CHECKING, BinaryIO

from index.format import layout
from index.format.layout import Expect
from index.store.safe_dir import NEW_FILE_FLAGS

if TYPE_CHECKING:
    from index.store.local_storage import LocalStorage


class LocalRangeReader:
    """Byte ranges of a local file, through one descriptor (which it owns)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def pread(self, size: int, offset: int) -> bytes:
        """`size` bytes at `offset` (fewer at the end of the file)."""
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)



class PendingFile:
    """A file being written under a temporary name in `tmp/`; `commit`
    publishes it."""

    def __init__(self, storage: LocalStorage, mode: int = 0o666) -> None:
        self._storage = storage
        self._name = f".{secrets.token_hex(12)}.tmp"
        self.tmp_path = storage.root / layout.TMP_DIR / self._name
        # Held open until the end: the file is renamed from this very
        # directory, whatever happens to the name tmp/ meanwhile.
        self._dir = storage.open_dir(layout.TMP_DIR, create=True)
        try:
            fd = os.open(self._name, NEW_FILE_FLAGS, mode, dir_fd=self._dir)
            if mode != 0o666:
                os.fchmod(fd, mode)
            self.file: BinaryIO = os.fdopen(fd, "w+b")
        except BaseException:
            os.close(self._dir)
            raise

    def sync(self) -> None:
        """Make the data written so far durable."""
        self.file.flush()
        os.fsync(self.file.fileno())

    def commit(self, relpath: str) -> None:
        """fsync the data, rename it to `relpath`, fsync the directory."""
        self.sync()
        self.file.close()
        self._storage.check_name(relpath, Expect.FILE)
        parent, name = self._storage.open_parent(relpath, create=True)
        try:
            os.rename(self._name, name, src_dir_fd=self._dir, dst_dir_fd=parent)
            os.fsync(parent)
        finally:
            os.close(parent)
        os.close(self._dir)
        self._dir = -1

    def abort(self) -> None:
        """Drop the temporary file."""
        if not self.file.closed:
            self.file.close()
        if self._dir >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._name, dir_fd=self._dir)
            os.close(self._dir)
            self._dir = -1
