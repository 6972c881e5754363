"""Storage backends: where a repository's immutable files live.

`Storage` is the interface that writers and readers see; `LocalStorage` is
a directory on a local disk or an NFS share, `index.s3.S3Storage` a bucket.
On a directory every file is created under a temporary name, written,
fsynced and then renamed into place, after which its directory is fsynced.
Nothing is ever rewritten: a file is either absent or complete.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import BinaryIO, Protocol

from index.errors import RepositoryError

TMP_DIR = "tmp"


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
        """The files directly in a directory with their sizes, in one
        listing (no request per file where the backend allows)."""

    def delete(self, relpath: str) -> None:
        """Remove a file."""

    def delete_tree(self, relpath: str) -> None:
        """Remove a directory and everything in it."""

    def local_path(self, relpath: str) -> Path | None:
        """The file's path when it is on a local or network file system."""

    def usage(self) -> int:
        """Bytes in all the repository's files."""


class LocalRangeReader:
    """Byte ranges of a local file, through one descriptor."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY)

    def pread(self, size: int, offset: int) -> bytes:
        """`size` bytes at `offset` (fewer at the end of the file)."""
        return os.pread(self.fd, size, offset)

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside the local file `target`, renamed over it if
    the block ends without an error and removed if not: readers see the old
    file or the whole new one."""
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


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

    def __str__(self) -> str:
        return str(self.root)

    def path(self, relpath: str) -> Path:
        """The local path of a repository file (for opening LMDB read-only)."""
        return self.root / relpath

    def local_path(self, relpath: str) -> Path | None:
        """The local path of a repository file."""
        return self.root / relpath

    def open_ranges(self, relpath: str) -> LocalRangeReader:
        """A reader of byte ranges of a file."""
        return LocalRangeReader(self.root / relpath)

    def download(self, relpath: str, dest: Path) -> None:
        """Copy a file to `dest` (written under a temporary name, renamed)."""
        with replacing(dest) as tmp:
            shutil.copyfile(self.root / relpath, tmp)

    def stat(self, relpath: str) -> tuple[int, str, float]:
        """(size, inode-mtime identity, mtime) of a file."""
        st = os.stat(self.root / relpath)
        return st.st_size, f"{st.st_ino:x}-{st.st_mtime_ns:x}", st.st_mtime

    def size(self, relpath: str) -> int:
        """A file's size."""
        return os.stat(self.root / relpath).st_size

    def touch(self, relpath: str) -> None:
        """Set a file's mtime to now."""
        os.utime(self.root / relpath)

    def create_exclusive(self, relpath: str, data: bytes) -> bool:
        """Publish `data` at `relpath` unless it exists. The content is
        written and fsynced first and then hard-linked to the name, which
        fails if the name exists: the file is never seen empty or half
        written, even if its writer is killed, and link is atomic on NFS."""
        final = self.root / relpath
        tmp = final.parent / f".{final.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                final.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, final)
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def delete_tree(self, relpath: str) -> None:
        """Remove a directory and what it holds (absent is fine)."""
        shutil.rmtree(self.root / relpath, ignore_errors=True)

    def usage(self) -> int:
        """Bytes in all the repository's files."""
        total = 0
        for dirpath, _, names in os.walk(self.root):
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total

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

    def list_sizes(self, relpath: str) -> Iterator[tuple[str, int]]:
        """Regular files in a directory and their sizes, without temporary
        files and symlinks; none if the directory is absent."""
        try:
            with os.scandir(self.root / relpath) as it:
                for de in it:
                    if de.name.startswith("."):
                        continue
                    try:
                        st = de.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if stat.S_ISREG(st.st_mode):
                        yield de.name, st.st_size
        except FileNotFoundError:
            return

    def delete(self, relpath: str) -> None:
        """Remove a file durably (used by prune and gc)."""
        target = self.root / relpath
        target.unlink()
        fsync_dir(target.parent)
