"""The storage backend: a directory that holds immutable files.

Every file is created under a temporary name, written, fsynced and then
renamed into place, after which its directory is fsynced. Nothing is ever
rewritten: a file is either absent or complete. This is the whole contract a
later object-storage backend has to meet too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from index.errors import RepositoryError

TMP_DIR = "tmp"


class WriteFailed(RepositoryError):
    """Writing into the repository failed: it is full, or its disk fails.

    Raised in place of the OSError so that a backup can never take it for a
    problem with one source file (those are OSErrors too, and only warnings):
    it stops the run, and nothing is published."""


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PendingFile:
    """A file being written under a temporary name; `commit` publishes it."""

    def __init__(self, storage: LocalStorage) -> None:
        self._storage = storage
        self.tmp_path = storage.root / TMP_DIR / f".{secrets.token_hex(12)}.tmp"
        try:
            self.file: BinaryIO = open(self.tmp_path, "xb")  # noqa: SIM115 - closed in commit/abort
        except FileNotFoundError:
            # Empty directories do not survive every copy of a repository.
            self.tmp_path.parent.mkdir(exist_ok=True)
            self.file = open(self.tmp_path, "xb")  # noqa: SIM115

    def sync(self) -> None:
        """Make the data written so far durable."""
        self.file.flush()
        os.fsync(self.file.fileno())

    def commit(self, relpath: str) -> None:
        """fsync the data, rename it to `relpath`, fsync the directory."""
        self.sync()
        self.file.close()
        final = self._storage.root / relpath
        try:
            os.rename(self.tmp_path, final)
        except FileNotFoundError:
            final.parent.mkdir(parents=True, exist_ok=True)
            fsync_dir(final.parent.parent)
            os.rename(self.tmp_path, final)
        fsync_dir(final.parent)

    def abort(self) -> None:
        """Drop the temporary file."""
        if not self.file.closed:
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()


class LocalStorage:
    """A repository directory on a local disk or an NFS share."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, relpath: str) -> Path:
        """The local path of a repository file (for opening LMDB read-only)."""
        return self.root / relpath

    def create(self) -> PendingFile:
        """Start a new file; publish it with `PendingFile.commit`."""
        return PendingFile(self)

    def write_atomic(self, relpath: str, data: bytes) -> None:
        """Publish a small file in one step."""
        pending = self.create()
        try:
            pending.file.write(data)
            pending.commit(relpath)
        except BaseException:
            pending.abort()
            raise

    @contextlib.contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Turn an OSError raised inside into `WriteFailed`; `what` says
        what was being written ("writing a pack")."""
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                message = f"no space left on the repository {self.root} ({what})"
            else:
                message = (f"cannot write to the repository {self.root} ({what}): "
                           f"{exc.strerror or exc}")
            raise WriteFailed(message) from exc

    def read(self, relpath: str) -> bytes:
        """The whole content of a repository file."""
        return (self.root / relpath).read_bytes()

    def exists(self, relpath: str) -> bool:
        """Whether a file or directory exists."""
        return (self.root / relpath).exists()

    def makedirs(self, relpath: str) -> None:
        """Create a directory (and its parents) durably."""
        target = self.root / relpath
        if target.is_dir():
            return
        target.mkdir(parents=True, exist_ok=True)
        fsync_dir(target.parent)

    def listdir(self, relpath: str) -> Iterator[str]:
        """Names in a directory, without temporary files; none if absent."""
        try:
            with os.scandir(self.root / relpath) as it:
                for de in it:
                    if not de.name.startswith("."):
                        yield de.name
        except FileNotFoundError:
            return

    def delete(self, relpath: str) -> None:
        """Remove a file durably (used by prune and gc)."""
        target = self.root / relpath
        target.unlink()
        fsync_dir(target.parent)
