"""faultfs: a read-only passthrough FUSE file system whose reads of chosen
files fail with EIO, to test how a backup copes with a failing source disk.

    python tests/faultfs.py SOURCE MOUNTPOINT [--fail-reads NAME[@BYTES],...]
                            [--control FILE]

A file fails if its path relative to SOURCE, or its name alone, is listed.
`NAME@BYTES` serves the first BYTES bytes and fails reads past them (a disk
that goes bad in the middle of a file); plain `NAME` fails the first read.
`--control FILE` holds more such entries, one a line (Maildir names hold
commas); it is read again at every open, so a test can make files fail
without remounting.
Files are opened with direct I/O and attributes are never cached: every
read reaches this process and a file changed in SOURCE is seen at once.

Runs in the foreground until unmounted (`fusermount3 -u MOUNTPOINT`) or
sent SIGINT/SIGTERM. Inode numbers are those of SOURCE (the root's is
pyfuse3.ROOT_INODE), so they stay the same across remounts.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import stat
from pathlib import Path
from typing import Any

import pyfuse3
import trio


def parse_failures(items: list[str]) -> dict[str, int]:
    """`NAME[@BYTES]` entries -> bytes readable before EIO (0: none)."""
    failures: dict[str, int] = {}
    for item in items:
        name, at, after = item.strip().rpartition("@")
        if not (at and after.isdigit()):
            name, after = item.strip(), "0"
        if name:
            failures[name] = int(after)
    return failures


class FaultFs(pyfuse3.Operations):
    """Serves `source` read-only; reads of the files in `failures` fail."""

    def __init__(self, source: Path, failures: dict[str, int],
                 control: Path | None) -> None:
        super().__init__()
        self.source = os.fsencode(source.resolve())
        self.failures = failures
        self.control = control
        self.paths: dict[int, bytes] = {pyfuse3.ROOT_INODE: self.source}
        self.root_ino = os.lstat(self.source).st_ino
        # fh -> (descriptor, bytes readable before EIO, or None: no fault)
        self.files: dict[int, tuple[int, int | None]] = {}

    def _path(self, inode: int) -> bytes:
        try:
            return self.paths[inode]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ENOENT) from None

    def _attrs(self, path: bytes) -> pyfuse3.EntryAttributes:
        try:
            st = os.lstat(path)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        ino = pyfuse3.ROOT_INODE if st.st_ino == self.root_ino else st.st_ino
        # Only the root may carry ROOT_INODE; the source's own inode 1 (if
        # any) would clash with it, and ext4 and tmpfs never use 1 for files.
        assert ino != pyfuse3.ROOT_INODE or path == self.source
        self.paths[ino] = path
        ea = pyfuse3.EntryAttributes()
        for name in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_rdev", "st_size",
                     "st_blocks", "st_atime_ns", "st_mtime_ns", "st_ctime_ns"):
            setattr(ea, name, getattr(st, name))
        ea.st_ino = ino
        ea.st_blksize = st.st_blksize
        ea.generation = 0
        ea.entry_timeout = 0
        ea.attr_timeout = 0
        return ea

    def _fault_limit(self, path: bytes) -> int | None:
        failures = dict(self.failures)
        if self.control is not None:
            with contextlib.suppress(FileNotFoundError):
                failures.update(parse_failures(self.control.read_text().splitlines()))
        rel = os.fsdecode(os.path.relpath(path, self.source))
        for key in (rel, os.path.basename(rel)):
            if key in failures:
                return failures[key]
        return None

    async def lookup(self, parent_inode: int, name: bytes, ctx: Any = None) -> Any:
        return self._attrs(os.path.join(self._path(parent_inode), name))

    async def getattr(self, inode: int, ctx: Any = None) -> Any:
        return self._attrs(self._path(inode))

    async def readlink(self, inode: int, ctx: Any = None) -> bytes:
        try:
            return os.readlink(self._path(inode))
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None

    async def opendir(self, inode: int, ctx: Any = None) -> int:
        if not stat.S_ISDIR(os.lstat(self._path(inode)).st_mode):
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        parent = self._path(fh)
        # The offset handed back is the index of the next name: a listing
        # split over several calls resumes where it stopped.
        names = sorted(os.listdir(parent))
        for i, name in enumerate(names[start_id:], start_id + 1):
            try:
                attrs = self._attrs(os.path.join(parent, name))
            except pyfuse3.FUSEError:
                continue  # vanished meanwhile
            if not pyfuse3.readdir_reply(token, name, attrs, i):
                break

    async def open(self, inode: int, flags: int, ctx: Any = None) -> Any:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise pyfuse3.FUSEError(errno.EROFS)
        path = self._path(inode)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise pyfuse3.FUSEError(exc.errno or errno.EIO) from None
        self.files[fd] = (fd, self._fault_limit(path))
        return pyfuse3.FileInfo(fh=fd, direct_io=True, keep_cache=False)

    async def read(self, fh: int, off: int, size: int) -> bytes:
        fd, limit = self.files[fh]
        if limit is not None:
            if off >= limit:
                raise pyfuse3.FUSEError(errno.EIO)
            size = min(size, limit - off)
        return os.pread(fd, size, off)

    async def release(self, fh: int) -> None:
        fd, _ = self.files.pop(fh)
        os.close(fd)

    async def listxattr(self, inode: int, ctx: Any = None) -> list[bytes]:
        return [os.fsencode(n) for n in os.listxattr(self._path(inode), follow_symlinks=False)]

    async def getxattr(self, inode: int, name: bytes, ctx: Any = None) -> bytes:
        try:
            return os.getxattr(self._path(inode), name, follow_symlinks=False)
        except OSError as exc:
            code = pyfuse3.ENOATTR if exc.errno == errno.ENODATA else exc.errno or errno.EIO
            raise pyfuse3.FUSEError(code) from None


def main() -> None:
    """Mount and serve until unmounted or signalled."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--fail-reads", default="", metavar="NAME[@BYTES],...")
    parser.add_argument("--control", type=Path, metavar="FILE")
    args = parser.parse_args()
    fs = FaultFs(args.source, parse_failures(args.fail_reads.split(",")), args.control)
    options = set(pyfuse3.default_options) | {"ro", "fsname=faultfs"}
    pyfuse3.init(fs, str(args.mountpoint), options)

    async def run() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_on_signal)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    async def stop_on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                pyfuse3.terminate()
                return

    try:
        trio.run(run)
    finally:
        pyfuse3.close(unmount=True)


if __name__ == "__main__":
    main()
