"""The snapshot index files of a repository, as local files LMDB can open.

An index is the repository's own file when that is on a file system, not
sealed and not compressed; otherwise a plain copy in the local cache
(index/model/cache.py), decompressed and authenticated on the way.
Publishing writes the LMDB file, compresses it in a repository of format 3
or later, seals it in an encrypted repository and renames it into place.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from index.errors import CacheError, EncryptionMismatch
from index.format.compressed_index import IndexDecoder, compress_index, decode_file, is_compressed
from index.format.crypto import (
    SEALED_INDEX_HEADER,
    SEALED_INDEX_MAGIC,
    Cipher,
    read_index_header,
)
from index.model.cache import LocalCache
from index.store.local_space import cache_full, is_full, reporting_full
from index.store.private import open_private
from index.store.storage import Storage


class IndexFiles:
    """Opening and publishing the snapshot index files of one repository."""

    def __init__(self, root: Path | str, storage: Storage, cipher: Cipher | None,
                 cache: LocalCache, local_root: Path | None, compress: bool) -> None:
        """`compress`: whether the repository's format has compressed indexes
        (version 3 on): they are then written compressed, and only then read."""
        self._root = root
        self._storage = storage
        self._cipher = cipher
        self._cache = cache
        self._local_root = local_root
        self._compress = compress

    def identity(self, relpath: str) -> str:
        """What identifies the stored index file at `relpath` now: it changes
        when the file is replaced (gc publishes relocated copies under the
        same name, index.model.snapshot_editor), whatever the storage and encryption."""
        size, identity, _ = self._storage.stat(relpath)
        return f"{identity}-{size:x}"

    def open(self, relpath: str, fresh: bool = False,
             keep: bool = True) -> tuple[int, Path, str]:
        """A descriptor of a local file of the snapshot index at `relpath`
        that LMDB can open (the caller closes it), the file's path for
        messages, and the stored file's identity (`identity`).

        That file is the repository's own when it is on a file system, not
        sealed and not compressed (opened without following links);
        otherwise a copy in the local cache (decompressed and authenticated
        on the way), named by the stored file's identity, so that a file
        replaced or changed in place is fetched again. `fresh` makes the
        copy anew whatever the cache holds (for `check`); without `keep`
        the cache is left as it is (see `_scratch`). A copy that cannot
        be written (a full cache disk) raises `CacheError`; a damaged stored
        file `RepositoryCorrupt`.

        The identity is taken before the file is read: if it is replaced
        meanwhile, what was read is at least as new as the identity says, so
        a later comparison can only find it changed and read it again, never
        miss a replacement."""
        identity = self.identity(relpath)
        fd = self._storage.open_local(relpath)
        if fd is not None and self._cipher is None:
            try:
                head = os.pread(fd, len(SEALED_INDEX_MAGIC), 0)
                if head == SEALED_INDEX_MAGIC:
                    raise self._sealed_in_clear(relpath)
            except BaseException:
                os.close(fd)
                raise
            if not is_compressed(head):
                assert self._local_root is not None
                return fd, self._local_root / relpath, identity
        if not keep:
            return self._scratch(relpath, identity, fd)
        path = self._copy(relpath, fresh, identity, fd)
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC), path, identity

    def _copy(self, relpath: str, fresh: bool, identity: str, stored_fd: int | None) -> Path:
        """The local cache's plain copy of the index at `relpath`, made from
        `stored_fd` (the stored file, which this closes) when it is local."""
        try:
            plain = self._cache.index_copy(relpath, identity)
            if not fresh and self._cache.use_copy(plain):
                return plain
            with self._cache.writing_copy(plain) as tmp, \
                    os.fdopen(open_private(tmp), "wb") as out:
                given, stored_fd = stored_fd, None
                self._decode(relpath, given, tmp.with_name(f"{tmp.name}.stored"), out)
        except FileNotFoundError:
            raise  # the stored file is gone: pruned meanwhile
        except OSError as exc:
            where = self._cache.indexes_where
            if is_full(exc, where):
                raise cache_full(where, f"the local copy of snapshot index {relpath}",
                                 None) from None
            raise CacheError(f"snapshot index {relpath}: cannot make its local copy in "
                             f"{where}: {exc.strerror or exc}") from None
        finally:
            if stored_fd is not None:
                os.close(stored_fd)
        return plain

    def _scratch(self, relpath: str, identity: str,
                 stored_fd: int | None) -> tuple[int, Path, str]:
        """What `open` gives, for a run that must leave the local cache as it
        is: the cache's copy if it has one (not marked as used), else a plain
        copy in an unnamed temporary file of the system's, gone once closed."""
        existing = self._cache.existing_copy(relpath, identity)
        if existing is not None:
            if stored_fd is not None:
                os.close(stored_fd)
            return os.open(existing, os.O_RDONLY | os.O_CLOEXEC), existing, identity
        with tempfile.TemporaryFile() as out, tempfile.TemporaryDirectory() as spool:
            given, stored_fd = stored_fd, None
            self._decode(relpath, given, Path(spool) / "stored", out)
            out.flush()
            return os.dup(out.fileno()), Path(relpath), identity

    def _decode(self, relpath: str, stored_fd: int | None, spool: Path, out: BinaryIO) -> None:
        """Write the plain index at `relpath` into `out`, read from
        `stored_fd` (closed here), or if None downloaded into `spool` first."""
        name = f"snapshot index {relpath}"
        downloaded = stored_fd is None
        try:
            if stored_fd is None:
                self._storage.download(relpath, spool)
                stored_fd = os.open(spool, os.O_RDONLY | os.O_CLOEXEC)
            with os.fdopen(stored_fd, "rb") as stored:
                stored_fd = None
                if self._cipher is None:
                    if downloaded:  # open() checked a local one
                        self._check_clear(stored, relpath)
                    decode_file(stored, out, name, self._compress)
                else:
                    # The sealed header says how much comes out.
                    size, _ = read_index_header(
                        stored.read(SEALED_INDEX_HEADER.size), relpath)
                    stored.seek(0)
                    decoder = IndexDecoder(out, name, self._compress, size)
                    self._cipher.open_index(stored, decoder, relpath)
                    decoder.finish()
        finally:
            if stored_fd is not None:
                os.close(stored_fd)
            if downloaded:
                with contextlib.suppress(FileNotFoundError):
                    spool.unlink()

    def _check_clear(self, stored: BinaryIO, relpath: str) -> None:
        """Refuse a sealed index in a repository whose config says it is clear."""
        if stored.read(len(SEALED_INDEX_MAGIC)) == SEALED_INDEX_MAGIC:
            raise self._sealed_in_clear(relpath)
        stored.seek(0)

    def _sealed_in_clear(self, relpath: str) -> EncryptionMismatch:
        return EncryptionMismatch(
            f"snapshot index {relpath} is encrypted, but the config of {self._root} "
            "says the repository is not: refusing (the config may have been replaced)")

    def publish(self, relpath: str, write_plain: Callable[[int], None]) -> None:
        """Publish a snapshot index at `relpath` (tmp/, fsync, rename):
        `write_plain(fd)` writes the LMDB file to a descriptor. Compressed in
        a repository of format 3 or later, then sealed in an encrypted one;
        the local cache keeps the plain copy of either."""
        pending = self._storage.create()
        try:
            if self._cipher is None and not self._compress:
                write_plain(pending.file.fileno())
                pending.commit(relpath)
                return
            work = self._cache.publish_work()
            packed = None
            try:
                with os.fdopen(open_private(work, os.O_RDWR | os.O_CREAT | os.O_EXCL),
                               "w+b") as plain:
                    # A full cache is not a full repository.
                    with reporting_full(work.parent, "the new snapshot index's plain copy"):
                        write_plain(plain.fileno())
                    plain.seek(0)
                    if self._cipher is None:
                        compress_index(plain, pending.file)
                    elif not self._compress:
                        self._cipher.seal_index(plain, pending.file, relpath)
                    else:
                        # Sealing needs the size first: compressed beside the
                        # plain copy, a fraction of its size.
                        packed = self._cache.publish_work()
                        with os.fdopen(open_private(packed, os.O_RDWR | os.O_CREAT
                                                    | os.O_EXCL), "w+b") as small:
                            with reporting_full(work.parent,
                                                "the new snapshot index's compressed copy"):
                                compress_index(plain, small)
                            small.seek(0)
                            self._cipher.seal_index(small, pending.file, relpath)
                pending.commit(relpath)
                # Kept as the cache's copy: nothing to fetch and open later.
                target = self._cache.index_copy(relpath, self.identity(relpath))
                os.replace(work, target)
                self._cache.keep_copy(target)
            finally:
                for name in (work, packed):
                    if name is not None:
                        with contextlib.suppress(FileNotFoundError):
                            name.unlink()
        except BaseException:
            pending.abort()
            raise
