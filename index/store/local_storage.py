"""A repository in a directory: `Storage` on a local disk or an NFS share.

A directory repository is untrusted input (another machine sharing it can
put anything there): `LocalStorage` reaches every path one component at a
time from a descriptor of the repository's directory, never follows a
symbolic link inside it, uses only the names of `index.format.layout` and refuses a
symlink or any other type where the format has a directory or a regular
file (`UnexpectedFile`, naming it). The repository's own path may be a link
that its administrator made. Every file is created under a temporary name,
written, fsynced and then renamed into place, after which its directory is
fsynced.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from index.errors import RepositoryCorrupt, RepositoryExists
from index.format import layout
from index.format.layout import TMP_DIR, Expect
from index.format.pack import PACKS_DIR
from index.format.snapshot_format import SNAPSHOTS_DIR
from index.store.local_files import LocalRangeReader, PendingFile
from index.store.lock import LOCKS_DIR
from index.store.safe_dir import SafeDirectory
from index.store.storage import WriteFailed, copy_all, replacing

T = TypeVar("T")

MAX_READ = 64 * 1024 * 1024
"""Largest file `read` returns whole: configs, keys, holds, garbage lists
and locks are far smaller; a larger one is damaged, not a reason to run out
of memory."""


class LocalStorage(SafeDirectory):
    """A repository directory on a local disk or an NFS share."""

    def make_layout(self) -> None:
        """The directories of a new repository, in its empty directory: each one
        new (nothing put there meanwhile, such as a link, is used), made durable
        once."""
        top = self.open_dir("")
        try:
            try:
                for sub in (TMP_DIR, LOCKS_DIR, SNAPSHOTS_DIR, PACKS_DIR):
                    os.mkdir(sub, dir_fd=top)
                packs = self.open_dir(PACKS_DIR)
                try:
                    for i in range(256):
                        os.mkdir(f"{i:02x}", dir_fd=packs)
                    os.fsync(packs)
                finally:
                    os.close(packs)
            except FileExistsError as exc:
                raise RepositoryExists(f"{self.root} was not empty: {exc.filename} "
                                       "appeared while it was being created") from None
            os.fsync(top)
        finally:
            os.close(top)

    # -- the storage interface ------------------------------------------------

    def open_ranges(self, relpath: str) -> LocalRangeReader:
        """A reader of byte ranges of a file."""
        return LocalRangeReader(self.open_local(relpath))

    def get_range(self, relpath: str, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset` of a file."""
        fd = self.open_local(relpath)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def download(self, relpath: str, dest: Path) -> None:
        """Copy a file to the local file `dest`, mode 0600 (written under a
        temporary name, renamed)."""
        fd = self.open_local(relpath)
        try:
            with replacing(dest) as tmp:
                out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    os.fchmod(out, 0o600)
                    copy_all(fd, out)
                finally:
                    os.close(out)
        finally:
            os.close(fd)

    def stat(self, relpath: str) -> tuple[int, str, float]:
        """(size, inode-mtime identity, mtime) of a file."""
        parent, name = self.open_parent(relpath)
        try:
            st = self._regular(parent, name, relpath)
        finally:
            os.close(parent)
        return st.st_size, f"{st.st_ino:x}-{st.st_mtime_ns:x}", st.st_mtime

    def size(self, relpath: str) -> int:
        """A file's size."""
        return self.stat(relpath)[0]

    def touch(self, relpath: str) -> None:
        """Set a file's mtime to now."""
        fd = self.open_local(relpath)
        try:
            os.utime(fd)
        finally:
            os.close(fd)

    def create_exclusive(self, relpath: str, data: bytes) -> bool:
        """Publish `data` at `relpath` unless it exists. The content is
        written and fsynced first and then hard-linked to the name, which
        fails if the name exists: the file is never seen empty or half
        written, even if its writer is killed, and link is atomic on NFS."""
        self.check_name(relpath, Expect.FILE)
        parent, name = self.open_parent(relpath, create=True)
        tmp = layout.exclusive_tmp_name(name, os.getpid(), secrets.token_hex(4))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644, dir_fd=parent)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
            except FileExistsError:
                return False
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
            os.close(parent)

    def delete_tree(self, relpath: str) -> None:
        """Remove the holds directory `relpath` and the holds and releases in
        it (absent is fine). A name the format does not define stays, and so
        does the directory then."""
        if not layout.is_hold_directory(relpath):
            raise RepositoryCorrupt(f"refusing to delete {self.path(relpath)}: not a "
                                    "directory the repository format lets histfs delete")
        try:
            parent, name = self.open_parent(relpath)
        except FileNotFoundError:
            return
        try:
            try:
                fd = self._subdir(parent, name, relpath, create=False)
            except FileNotFoundError:
                return
            try:
                with os.scandir(fd) as it:
                    entries = list(it)
                for entry in entries:
                    child = f"{relpath}/{entry.name}"
                    if entry.name.startswith(".") or layout.expected(child) is None:
                        continue
                    if not entry.is_file(follow_symlinks=False):
                        raise self._unexpected(fd, entry.name, child, Expect.FILE)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=fd)
            finally:
                os.close(fd)
            try:
                os.rmdir(name, dir_fd=parent)
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                return
            os.fsync(parent)
        finally:
            os.close(parent)

    def usage(self) -> int:
        """Bytes in all the repository's files (links not followed)."""
        total = 0
        for dirpath, _, names in os.walk(self.root):
            for name in names:
                with contextlib.suppress(FileNotFoundError):
                    total += os.lstat(os.path.join(dirpath, name)).st_size
        return total

    def create(self, mode: int = 0o666) -> PendingFile:
        """Start a new file; publish it with `PendingFile.commit`."""
        return PendingFile(self, mode)

    def write_atomic(self, relpath: str, data: bytes) -> None:
        """Publish a small file in one step (the key file with mode 0600)."""
        self.check_name(relpath, Expect.FILE)
        pending = self.create(0o600 if relpath in layout.PRIVATE_FILES else 0o666)
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
        fd = self.open_local(relpath)
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(fd).st_size
            if size > MAX_READ:
                raise RepositoryCorrupt(f"{self.path(relpath)} is too large ({size} bytes) "
                                        "to be a file of its kind")
            return f.read(MAX_READ + 1)

    def exists(self, relpath: str) -> bool:
        """Whether anything exists at `relpath`."""
        try:
            parent, name = self.open_parent(relpath)
        except FileNotFoundError:
            return False
        try:
            self._lstat(parent, name, relpath)
            return True
        except FileNotFoundError:
            return False
        finally:
            os.close(parent)

    def makedirs(self, relpath: str) -> None:
        """Create a directory (and its parents) durably."""
        self.check_name(relpath, Expect.DIRECTORY)
        os.close(self.open_dir(relpath, create=True))

    def listdir(self, relpath: str) -> Iterator[str]:
        """The names of the format in a directory, each checked to be of its
        type (`UnexpectedFile` if not); none if the directory is absent.
        Hidden names (temporary files) are left out."""
        def named(fd: int, entry: os.DirEntry[str], child: str, want: Expect) -> str:
            ok = (entry.is_dir(follow_symlinks=False) if want is Expect.DIRECTORY
                  else entry.is_file(follow_symlinks=False))
            if not ok:
                raise self._unexpected(fd, entry.name, child, want)
            return entry.name

        yield from self._scan(relpath, named)

    def list_sizes(self, relpath: str) -> Iterator[tuple[str, int]]:
        """The files of the format in a directory and their sizes, each
        checked to be a regular file (`UnexpectedFile` if not); none if the
        directory is absent."""
        def sized(fd: int, entry: os.DirEntry[str], child: str,
                  want: Expect) -> tuple[str, int] | None:
            if want is not Expect.FILE:
                return None
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                return None
            if not stat.S_ISREG(st.st_mode):
                raise self._unexpected(fd, entry.name, child, Expect.FILE)
            return entry.name, st.st_size

        yield from self._scan(relpath, sized)

    def _scan(self, relpath: str,
              take: Callable[[int, os.DirEntry[str], str, Expect], T | None]) -> list[T]:
        """What `take(dir_fd, entry, relpath of entry, what the format has
        there)` gives for each name the format defines in directory
        `relpath`, hidden names left out (None: skipped); [] if it is absent.
        Collected before the directory is closed."""
        try:
            fd = self.open_dir(relpath)
        except FileNotFoundError:
            return []
        found = []
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    if entry.name.startswith("."):
                        continue
                    child = f"{relpath}/{entry.name}" if relpath else entry.name
                    want = layout.expected(child)
                    if want is None:
                        continue
                    item = take(fd, entry, child, want)
                    if item is not None:
                        found.append(item)
        finally:
            os.close(fd)
        return found

    def delete(self, relpath: str) -> None:
        """Remove a file durably (used by prune, gc and locks)."""
        self.check_name(relpath, Expect.FILE)
        parent, name = self.open_parent(relpath)
        try:
            self._regular(parent, name, relpath)
            os.unlink(name, dir_fd=parent)
            os.fsync(parent)
        finally:
            os.close(parent)

    def remove_stale_temporary(self, older_than: float) -> tuple[int, int]:
        """Delete the files in `tmp/` last modified before `older_than` (unix
        time), left by writers that were killed: (count, bytes)."""
        try:
            fd = self.open_dir(layout.TMP_DIR)
        except FileNotFoundError:
            return 0, 0
        count = size = 0
        try:
            with os.scandir(fd) as it:
                entries = list(it)
            for entry in entries:
                if not layout.is_tmp_name(entry.name):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                    if not stat.S_ISREG(st.st_mode):
                        raise self._unexpected(fd, entry.name, f"{layout.TMP_DIR}/{entry.name}",
                                               Expect.FILE)
                    if st.st_mtime < older_than:
                        os.unlink(entry.name, dir_fd=fd)
                        count += 1
                        size += st.st_size
                except FileNotFoundError:
                    continue
        finally:
            os.close(fd)
        return count, size
