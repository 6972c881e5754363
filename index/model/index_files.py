"""The snapshot index files of a repository, as local files LMDB can open.

An index is the repository's own file when that is on a file system and not
sealed; otherwise a plain copy in the local cache (index/model/cache.py), opened
and authenticated on the way. Publishing writes the LMDB file, seals it in
an encrypted repository and renames it into place.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from index.errors import CacheError, EncryptionMismatch
from index.format.crypto import SEALED_INDEX_MAGIC, Cipher
from index.model.cache import LocalCache
from index.store.local_space import cache_full, is_full, reporting_full
from index.store.private import open_private
from index.store.storage import Storage


class IndexFiles:
    """Opening and publishing the snapshot index files of one repository."""

    def __init__(self, root: Path | str, storage: Storage, cipher: Cipher | None,
                 cache: LocalCache, local_root: Path | None) -> None:
        self._root = root
        self._storage = storage
        self._cipher = cipher
        self._cache = cache
        self._local_root = local_root

    def identity(self, relpath: str) -> str:
        """What identifies the stored index file at `relpath` now: it changes
        when the file is replaced (gc publishes relocated copies under the
        same name, index.model.snapshot_editor), whatever the storage and encryption."""
        size, identity, _ = self._storage.stat(relpath)
        return f"{identity}-{size:x}"

    def open(self, relpath: str, fresh: bool = False) -> tuple[int, Path, str]:
        """A descriptor of a local file of the snapshot index at `relpath`
        that LMDB can open (the caller closes it), the file's path for
        messages, and the stored file's identity (`identity`).

        That file is the repository's own when it is on a file system and
        not sealed (opened without following links); otherwise a copy in the
        local cache (opened and authenticated on the way), named by the
        stored file's identity, so that a file replaced or changed in place
        is fetched again. `fresh` makes the copy anew whatever the cache
        holds (for `check`). A copy that cannot be written (a full cache
        disk) raises `CacheError`.

        The identity is taken before the file is read: if it is replaced
        meanwhile, what was read is at least as new as the identity says, so
        a later comparison can only find it changed and read it again, never
        miss a replacement."""
        identity = self.identity(relpath)
        fd = self._storage.open_local(relpath) if self._cipher is None else None
        if fd is not None:
            assert self._local_root is not None
            path = self._local_root / relpath
        else:
            path = self._copy(relpath, fresh, identity)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if self._cipher is None:
            try:
                sealed = os.pread(fd, len(SEALED_INDEX_MAGIC), 0) == SEALED_INDEX_MAGIC
            except BaseException:
                os.close(fd)
                raise
            if sealed:
                os.close(fd)
                raise EncryptionMismatch(
                    f"snapshot index {relpath} is encrypted, but the config of {self._root} "
                    "says the repository is not: refusing (the config may have been replaced)")
        return fd, path, identity

    def _copy(self, relpath: str, fresh: bool, identity: str) -> Path:
        """The local cache's plain copy of the index at `relpath`."""
        try:
            plain = self._cache.index_copy(relpath, identity)
            if not fresh and self._cache.use_copy(plain):
                return plain
            with self._cache.writing_copy(plain) as tmp:
                if self._cipher is None:
                    self._storage.download(relpath, tmp)
                    return plain
                spool = None
                sealed_fd = self._storage.open_local(relpath)
                try:
                    if sealed_fd is None:
                        spool = tmp.with_name(f"{tmp.name}.sealed")
                        self._storage.download(relpath, spool)
                        sealed_fd = os.open(spool, os.O_RDONLY | os.O_CLOEXEC)
                    with os.fdopen(sealed_fd, "rb") as sealed:
                        sealed_fd = None
                        with os.fdopen(open_private(tmp), "wb") as out:
                            self._cipher.open_index(sealed, out, relpath)
                finally:
                    if sealed_fd is not None:
                        os.close(sealed_fd)
                    if spool is not None:
                        with contextlib.suppress(FileNotFoundError):
                            spool.unlink()
        except FileNotFoundError:
            raise  # the stored file is gone: pruned meanwhile
        except OSError as exc:
            where = self._cache.indexes_where
            if is_full(exc, where):
                raise cache_full(where, f"the local copy of snapshot index {relpath}",
                                 None) from None
            raise CacheError(f"snapshot index {relpath}: cannot make its local copy in "
                             f"{where}: {exc.strerror or exc}") from None
        return plain

    def publish(self, relpath: str, write_plain: Callable[[int], None]) -> None:
        """Publish a snapshot index at `relpath` (tmp/, fsync, rename):
        `write_plain(fd)` writes the LMDB file to a descriptor. Sealed in an
        encrypted repository, whose local cache keeps the plain copy."""
        pending = self._storage.create()
        try:
            if self._cipher is None:
                write_plain(pending.file.fileno())
            else:
                work = self._cache.publish_work()
                try:
                    with os.fdopen(open_private(work, os.O_RDWR | os.O_CREAT | os.O_EXCL),
                                   "w+b") as plain:
                        # A full cache is not a full repository.
                        with reporting_full(work.parent, "the new snapshot index's plain copy"):
                            write_plain(plain.fileno())
                        plain.seek(0)
                        self._cipher.seal_index(plain, pending.file, relpath)
                    pending.commit(relpath)
                    # Kept as the cache's copy: nothing to fetch and open later.
                    target = self._cache.index_copy(relpath, self.identity(relpath))
                    os.replace(work, target)
                    self._cache.keep_copy(target)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        work.unlink()
                return
            pending.commit(relpath)
        except BaseException:
            pending.abort()
            raise
