"""Storage backends: where a repository's immutable files live.

`Storage` is the interface that writers and readers see; `LocalStorage`
(index/store/local_storage.py) is a directory on a local disk or an NFS share,
`index.store.s3.S3Storage` a bucket.
On a directory every file is created under a temporary name, written,
fsynced and then renamed into place, after which its directory is fsynced.
Nothing is ever rewritten: a file is either absent or complete.

How a directory is kept from following links: index/store/safe_dir.py.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol

from index.errors import RepositoryError
from index.format import layout

TMP_DIR = layout.TMP_DIR


class WriteFailed(RepositoryError):
    """Writing into the repository failed: it is full, or its disk fails.

    Raised in place of the OSError so that a backup can never take it for a
    problem with one source file (those are OSErrors too, and only warnings):
    it stops the run, and nothing is published."""


class RangeReader(Protocol):
    """Reads of byte ranges of one stored file."""

    def pread(self, size: int, offset: int) -> bytes:
        """`size` bytes at `offset` (fewer at the end of the file)."""

    def close(self) -> None:
        """Release what the reader holds."""


class PendingWrite(Protocol):
    """A new file being written locally; `commit` publishes it whole."""

    file: BinaryIO
    tmp_path: Path

    def sync(self) -> None:
        """Make what was written so far durable, where that means anything."""

    def commit(self, relpath: str) -> None:
        """Publish the file at `relpath`."""

    def abort(self) -> None:
        """Drop it."""


class Storage(Protocol):
    """What a repository's files are read and written through."""

    @property
    def root(self) -> object:
        """Where the repository is (shown in messages)."""

    def create(self) -> PendingWrite:
        """Start a new file."""

    def write_atomic(self, relpath: str, data: bytes) -> None:
        """Publish a small file in one step (replacing one that exists)."""

    def create_exclusive(self, relpath: str, data: bytes) -> bool:
        """Publish `data` at `relpath` unless something is there; whether it was."""

    def writing(self, what: str) -> AbstractContextManager[None]:
        """Turn write errors inside into `WriteFailed`-like errors."""

    def read(self, relpath: str) -> bytes:
        """A whole file."""

    def open_ranges(self, relpath: str) -> RangeReader:
        """A reader of byte ranges of a file (FileNotFoundError if absent)."""

    def get_range(self, relpath: str, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` of a file, in one read."""

    def download(self, relpath: str, dest: Path) -> None:
        """Copy a file to the local path `dest`."""

    def stat(self, relpath: str) -> tuple[int, str, float]:
        """(size, an identity that changes when the file is replaced, mtime)."""

    def size(self, relpath: str) -> int:
        """A file's size."""

    def touch(self, relpath: str) -> None:
        """Make a file's mtime now (locks show they are alive)."""

    def exists(self, relpath: str) -> bool:
        """Whether a file or directory exists."""

    def makedirs(self, relpath: str) -> None:
        """Create a directory, where directories exist."""

    def listdir(self, relpath: str) -> Iterator[str]:
        """Names in a directory."""

    def list_sizes(self, relpath: str) -> Iterator[tuple[str, int]]:
        """The files of the format in a directory, with their sizes."""

    def delete(self, relpath: str) -> None:
        """Remove a file."""

    def delete_tree(self, relpath: str) -> None:
        """Remove a directory and everything in it."""

    def open_local(self, relpath: str) -> int | None:
        """A read-only descriptor of a file when the repository is on a
        file system (the caller closes it); None for a bucket."""

    def usage(self) -> int:
        """Bytes in all the repository's files."""


@contextlib.contextmanager
def replacing(target: Path, mode: int | None = None) -> Iterator[Path]:
    """A temporary path beside the local file `target`, renamed over it if
    the block ends without an error and removed if not: readers see the old
    file or the whole new one. `mode`: the permissions it gets before the
    rename, whatever the umask gave it."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
    try:
        yield tmp
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def copy_all(src: int, dst: int) -> None:
    """Copy the file open as `src`, from its start, to `dst` (in the kernel)."""
    offset = 0
    while sent := os.sendfile(dst, src, offset, 1 << 26):
        offset += sent
