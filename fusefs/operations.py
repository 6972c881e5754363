"""The pyfuse3 adapter: translates requests to `Vfs` calls, types and errors.

Metadata requests are answered on the event loop (each is a few LMDB
lookups). Reads plan their chunks on the loop; a read whose chunks are small
and already in memory or the page cache is served there too, since handing
it to a thread costs two wake-ups, each as slow as the request itself in a
virtual machine. Other reads decode in worker threads, at most
`READ_THREADS` at once, so a slow chunk never stalls lookups and concurrent
readers do not wait for each other.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import pyfuse3
import trio

from fusefs.last_moves import Forget, ForgetEntry
from fusefs.prefill import Prefill
from fusefs.readahead import ReadAhead
from fusefs.vfs import Vfs
from fusefs.view import Attr, FsError, OpenFile
from index.errors import HistfsError, PathNotFound, RepositoryCorrupt, SnapshotNotFound
from index.model.repository import SnapshotRef
from index.model.snapshot_reader import assemble

log = logging.getLogger("histfs.mount")
READ_THREADS = 4
T = TypeVar("T")


def _errno_of(exc: HistfsError) -> int:
    # FsError carries its own errno and is handled before this.
    return errno.ENOENT if isinstance(exc, PathNotFound | SnapshotNotFound) else errno.EIO


def _entry_attributes(a: Attr) -> pyfuse3.EntryAttributes:
    ea = pyfuse3.EntryAttributes()
    ea.st_ino = a.ino
    ea.generation = 0
    ea.entry_timeout = a.timeout
    ea.attr_timeout = a.timeout
    ea.st_mode = a.mode
    ea.st_nlink = a.nlink
    ea.st_uid = a.uid
    ea.st_gid = a.gid
    ea.st_rdev = a.rdev
    ea.st_size = a.size
    ea.st_blksize = 128 * 1024
    ea.st_blocks = a.blocks
    ea.st_atime_ns = a.atime_ns
    ea.st_mtime_ns = a.mtime_ns
    ea.st_ctime_ns = a.ctime_ns
    return ea


class Operations(pyfuse3.Operations):
    """Read-only request handlers over a `Vfs`."""

    enable_writeback_cache = False
    # FUSE_POSIX_ACL: under default_permissions the kernel enforces stored
    # ACLs (what a user of an --allow-other mount may read is what the
    # source allowed), and keeps an inode's ACLs once asked (a walk asks once
    # an inode either way; a second query of a listed inode is spared).
    enable_acl = True

    def __init__(self, vfs: Vfs, debug: bool = False,
                 after_init: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.vfs = vfs
        self.debug = debug
        # Runs at the first request: by then the kernel has our INIT reply,
        # which would have overwritten what this sets (read-ahead).
        self._after_init = after_init
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, tuple[int, SnapshotRef | None]] = {}
        self._fh = itertools.count(1)
        self._limiter = trio.CapacityLimiter(READ_THREADS)
        self._ahead = ReadAhead()
        self._prefill = Prefill(vfs.repo.chunk_store.read_many, self._store,
                                self._call_soon)
        self._inode_of: dict[int, int] = {}
        self._open_inodes: Counter[int] = Counter()
        self._token: trio.lowlevel.TrioToken | None = None
        self._following = trio.Lock()

    def _request(self, what: str, *args: Any) -> None:
        """Every request passes here once: `--debug` logs it as `what(args)`,
        one line a request, which is what request counts are taken from."""
        if self._token is None:
            self._token = trio.lowlevel.current_trio_token()
        if self._after_init is not None:
            after, self._after_init = self._after_init, None
            try:
                after()
            except Exception:
                log.exception("setting up the mount after INIT failed")
        if self.debug:
            log.debug("%s%r", what, args)

    def _store(self, ino: int, offset: int, data: bytes) -> None:
        """Put file content into the kernel's page cache (on the event loop).
        Never for an open inode: a read of it may hold the pages locked
        until this loop answers it, and the store would wait for them."""
        if self._open_inodes[ino]:
            raise OSError(errno.EBUSY, "open")
        pyfuse3.notify_store(ino, offset, data)

    def _call_soon(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the event loop (from a worker thread)."""
        if self._token is not None:
            self._token.run_sync_soon(fn)

    def _sync(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        self._request(what, *args)
        return self._call(what, fn, *args)

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except FsError as exc:
            if self.debug:
                log.debug("%s%r -> %s", what, args, os.strerror(exc.errno))
            raise pyfuse3.FUSEError(exc.errno) from None
        except HistfsError as exc:
            if isinstance(exc, RepositoryCorrupt):
                log.error("%s%r: %s", what, args, exc)
            raise pyfuse3.FUSEError(_errno_of(exc)) from None
        except Exception:
            log.exception("unexpected error in %s%r", what, args)
            raise pyfuse3.FUSEError(errno.EIO) from None

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        attr = self._sync("lookup", self.vfs.lookup, parent_inode, name)
        # A post-backup hook looks its snapshot up, then reads `last`: seen
        # here, a new snapshot moves `last` before the hook gets its answer.
        # Never for a lookup under `last`, which holds a directory's lock
        # that forgetting a name there waits for.
        if not self.vfs.under_last(parent_inode) and self.vfs.last_moved():
            await self.follow_last()
        return _entry_attributes(attr)

    async def follow_last(self) -> None:
        """Move `last` to the newest snapshots and make the kernel forget
        what changed (see `fusefs.last_moves`). One move at a time: a caller
        returns once the kernel has forgotten what any move before required."""
        async with self._following:
            forget: list[Forget] = []
            try:
                for step in self.vfs.follow_last_steps():
                    forget += step
                    await trio.lowlevel.checkpoint()  # requests meanwhile
            except HistfsError as exc:  # `last` stays; the next call tries again
                log.warning("last cannot move to the newest snapshot yet: %s", exc)
                return
            except Exception:
                log.exception("following the newest snapshots failed")
                return
            if forget:
                # In a thread: the kernel may wait for requests this loop answers.
                await trio.to_thread.run_sync(_tell_kernel, forget)

    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        return _entry_attributes(self._sync("getattr", self.vfs.getattr, inode))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        self._request("forget", len(inode_list))
        for inode, count in inode_list:
            self.vfs.forget(inode, count)

    async def readlink(self, inode: int, ctx: Any = None) -> bytes:
        return self._sync("readlink", self.vfs.readlink, inode)

    async def opendir(self, inode: int, ctx: Any = None) -> int:
        attr = self._sync("opendir", self.vfs.getattr, inode)
        if not attr.mode & 0o040000:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        pinned = self._call("opendir", self.vfs.opendir, inode)
        fh = next(self._fh)
        self._dirs[fh] = (inode, pinned)
        return fh

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        inode, pinned = self._dirs[fh]

        def entries() -> list[tuple[bytes, Attr, int]]:
            out = []
            for item in self.vfs.readdir(inode, start_id, pinned):
                out.append(item)
                if len(out) >= 256:
                    break
            return out

        self._request("readdir", fh, start_id)
        batch = self._call("readdir", entries)
        for name, attr, next_id in batch:
            if not pyfuse3.readdir_reply(token, name, _entry_attributes(attr), next_id):
                break

    async def releasedir(self, fh: int) -> None:
        self._request("releasedir", fh)
        self._dirs.pop(fh, None)

    async def open(self, inode: int, flags: int, ctx: Any = None) -> Any:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND | os.O_CREAT):
            raise pyfuse3.FUSEError(errno.EROFS)
        f = self._sync("open", self.vfs.open, inode)
        fh = next(self._fh)
        self._files[fh] = f
        self._inode_of[fh] = inode
        self._open_inodes[inode] += 1
        try:
            found = self.vfs.neighbours(inode, f)
            if found is not None:
                self._prefill.opened(inode, found[0], lambda: found[1])
        except Exception:  # only a read-ahead: the reads report what is wrong
            log.debug("prefill beside %d failed", inode, exc_info=True)
        return pyfuse3.FileInfo(fh=fh, keep_cache=f.keep_cache, direct_io=False)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        if self.debug:
            log.debug("read(fh=%d, off=%d, size=%d)", fh, off, size)
        f = self._files.get(fh)
        if f is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        try:
            pieces = self._call("read", self.vfs.read_pieces, f, off, size)
            for batch in self._ahead.pending(fh, pieces):
                await _result(batch)
            store = self.vfs.repo.chunk_store
            now = assemble(pieces, lambda cid, loc: self._ahead.decoded(fh, cid)
                           or store.read_cached(cid, loc))
            data = now if now is not None else await trio.to_thread.run_sync(
                self.vfs.read, pieces, limiter=self._limiter)
        except pyfuse3.FUSEError:
            raise
        except RepositoryCorrupt as exc:
            log.error("read of %s/%s/%s: %s", f.ref.host, f.ref.name,
                      self.vfs.file_path(f).decode("utf-8", "backslashreplace"), exc)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except Exception:
            log.exception("unexpected error reading %s", self.vfs.file_path(f))
            raise pyfuse3.FUSEError(errno.EIO) from None
        try:
            self._ahead.served(fh, off, size, f.entry.size,
                               lambda at, n: self.vfs.read_pieces(f, at, n),
                               self.vfs.repo.chunk_store.read_many)
        except Exception:  # the read that needs it will report it
            log.debug("read-ahead of %s failed", self.vfs.file_path(f), exc_info=True)
        return data

    async def flush(self, fh: int) -> None:
        # Nothing to do for a read-only file; ENOSYS tells the kernel not to
        # send FLUSH again for any file (each would be a round trip).
        self._request("flush", fh)
        raise pyfuse3.FUSEError(errno.ENOSYS)

    async def release(self, fh: int) -> None:
        self._request("release", fh)
        self._files.pop(fh, None)
        self._ahead.release(fh)
        inode = self._inode_of.pop(fh, None)
        if inode is not None:
            self._open_inodes[inode] -= 1
            if self._open_inodes[inode] <= 0:
                del self._open_inodes[inode]

    async def statfs(self, ctx: Any = None) -> Any:
        st = self._sync("statfs", self.vfs.statfs)
        out = pyfuse3.StatvfsData()
        out.f_bsize = st.f_bsize
        out.f_frsize = st.f_frsize
        out.f_blocks = st.f_blocks
        out.f_bfree = 0
        out.f_bavail = 0
        out.f_files = st.f_files
        out.f_ffree = 0
        out.f_favail = 0
        out.f_namemax = 255
        return out

    async def getxattr(self, inode: int, name: bytes, ctx: Any = None) -> bytes:
        try:
            return self._sync("getxattr", self.vfs.getxattr, inode, name)
        except pyfuse3.FUSEError as exc:
            if exc.errno == errno.ENODATA:
                raise pyfuse3.FUSEError(pyfuse3.ENOATTR) from None
            raise

    async def listxattr(self, inode: int, ctx: Any = None) -> list[bytes]:
        return self._sync("listxattr", self.vfs.listxattr, inode)

    async def access(self, inode: int, mode: int, ctx: Any = None) -> bool:
        self._request("access", inode, mode)
        if mode & os.W_OK:
            raise pyfuse3.FUSEError(errno.EROFS)
        return True

    def close(self) -> None:
        """Stop the read-ahead threads."""
        self._ahead.close()
        self._prefill.close()


def _tell_kernel(forget: list[Forget]) -> None:
    """Have the kernel forget names, attributes and pages."""
    for f in forget:
        try:
            if isinstance(f, ForgetEntry):
                pyfuse3.invalidate_entry(f.parent, f.name)
            else:
                pyfuse3.invalidate_inode(f.ino, attr_only=not f.data)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: the kernel no longer has it
                log.warning("invalidating %r failed: %s", f, exc)


async def _result(made: Future[T]) -> None:
    """Wait on the event loop for work started in a worker (its callback
    wakes the loop: one cross-thread wake-up, where a thread hop costs two)."""
    if not made.done():
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: Future[T]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        made.add_done_callback(wake)
        await done.wait()

