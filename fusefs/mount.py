"""Mounting: checks, daemonizing, serving until unmounted, unmounting.

The daemon is forked before any LMDB environment is opened (LMDB handles
must not cross a fork). `mount` returns only once the file system answers.
If the daemon dies, nothing unmounts the file system: the mount point stays
dead ("transport endpoint is not connected") instead of turning into an empty
directory that a mirroring job would copy as "everything deleted".
"""

from __future__ import annotations

import contextlib
import errno
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from index.errors import HistfsError
from index.store.malloc_arenas import limit_malloc_arenas

log = logging.getLogger("histfs.mount")
READ_AHEAD_KB = 4096
# How often the snapshot index pages that lookups mapped are handed back to
# the page cache (see index.store.mapped_pages): often enough that RSS reflects
# the mount's own memory, rarely enough that the re-faults cost nothing.
# `last` follows a new snapshot as often (the list itself is read again at
# most every 2 s, and only while the kernel holds paths under `last`).
_TICK = 1.0
# Every this many of those ticks, idle pack descriptors are closed, so that
# packs deleted by gc give their space back while the mount stays up.
_CLOSE_PACKS_EVERY = 10


class MountError(HistfsError):
    """The file system cannot be mounted (mount point, FUSE, options)."""


@dataclass(frozen=True)
class MountOptions:
    """What `histfs mount` was asked for."""

    repo: Path | str
    mountpoint: Path
    host: str | None = None
    allow_other: bool = False
    last_symlink: bool = False
    debug: bool = False
    foreground: bool = False
    log_file: Path | None = None
    pid_file: Path | None = None
    passphrase: Callable[[], str] | None = None
    """Gives the passphrase of an encrypted repository (asked for once: the
    daemon inherits the opened key)."""
    cache_mb: int = 32
    """Decoded chunks kept in memory (MiB): what the daemon's memory grows
    by, beyond its own ~40 MB, after large files were read."""


def check_mountpoint(path: Path) -> None:
    """A clear error unless `path` is an empty directory that is not mounted."""
    try:
        os.stat(path)
    except FileNotFoundError:
        raise MountError(f"mount point {path} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ENOTCONN:
            raise MountError(f"{path} is a dead mount: run 'histfs umount {path}' first") from None
        raise MountError(f"mount point {path}: {exc.strerror}") from None
    if not os.path.isdir(path):
        raise MountError(f"mount point {path} is not a directory")
    if os.path.ismount(path):
        raise MountError(f"mount point {path} is busy: something is mounted there")
    if any(os.scandir(path)):
        raise MountError(f"mount point {path} is not empty")
    if not os.path.exists("/dev/fuse"):
        raise MountError("FUSE is not available: /dev/fuse is missing (modprobe fuse)")


def _bdi_of(target: str) -> str | None:
    """major:minor of the FUSE connection mounted at `target` (a real path:
    resolving it now would stat our own mount before it can answer)."""
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == target:
                found = fields[2]  # the last one is the topmost mount
    return found


def _raise_read_ahead(target: str) -> None:
    """Let the kernel send 1 MiB reads instead of 128 KiB ones, and keep
    several of them in flight for a sequential reader, so that the daemon
    answers one while the reader copies the previous (root only)."""
    bdi = _bdi_of(target)
    if bdi is None:
        return
    with contextlib.suppress(OSError):
        Path(f"/sys/class/bdi/{bdi}/read_ahead_kb").write_text(str(READ_AHEAD_KB))


def _setup_logging(opts: MountOptions) -> None:
    root = logging.getLogger("histfs")
    root.setLevel(logging.DEBUG if opts.debug else logging.INFO)
    handler: logging.Handler
    if opts.log_file is not None:
        handler = logging.FileHandler(opts.log_file)
    elif opts.foreground:
        handler = logging.StreamHandler(sys.stderr)
    elif os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler("/dev/log")
        handler.setFormatter(logging.Formatter("histfs[%(process)d]: %(levelname)s %(message)s"))
        root.addHandler(handler)
        return
    else:
        handler = logging.NullHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s histfs %(levelname)s %(message)s"))
    root.addHandler(handler)


def serve(opts: MountOptions, ready: threading.Event | None = None,
          report: int | None = None) -> None:
    """Mount and serve until unmounted or SIGINT/SIGTERM (in this process)."""
    import pyfuse3
    import trio

    from fusefs.operations import Operations
    from fusefs.vfs import Vfs
    from index.model.repository import Repository

    limit_malloc_arenas()
    repo = Repository.open(opts.repo, passphrase=opts.passphrase)
    repo.chunk_store.limit_cache(opts.cache_mb * 1024 * 1024)
    vfs = Vfs(repo, opts.host, opts.last_symlink)
    target = os.path.realpath(opts.mountpoint)
    ops = Operations(vfs, opts.debug, after_init=lambda: _raise_read_ahead(target))
    options = set(pyfuse3.default_options) | {"ro", "fsname=histfs", "subtype=histfs"}
    if opts.allow_other:
        options.add("allow_other")
    try:
        pyfuse3.init(ops, target, options)
    except RuntimeError as exc:
        raise MountError(f"cannot mount {opts.mountpoint}: {exc}") from None
    log.info("mounted %s on %s", opts.repo, opts.mountpoint)
    if report is not None:
        os.write(report, b"ok")
        os.close(report)
    if ready is not None:
        ready.set()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal)
            nursery.start_soon(_tick)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    async def _tick() -> None:
        ticks = 0
        while True:
            await trio.sleep(_TICK)
            await ops.follow_last()
            vfs.table.drop_mapped_pages()
            ticks += 1
            if ticks % _CLOSE_PACKS_EVERY == 0:
                repo.chunk_store.close_idle()

    async def _stop_on_signal() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                log.info("signal received: unmounting %s", opts.mountpoint)
                pyfuse3.terminate()
                return

    try:
        trio.run(main)
    finally:
        pyfuse3.close(unmount=True)
        ops.close()
        vfs.close()
        log.info("unmounted %s", opts.mountpoint)


def mount(opts: MountOptions) -> int:
    """`histfs mount`: check, then serve here (foreground) or in a daemon."""
    from index.model.repository import Repository

    check_mountpoint(opts.mountpoint)
    with Repository.open(opts.repo, passphrase=opts.passphrase):
        pass  # a clear error now, not in the daemon
    if opts.foreground:
        _setup_logging(opts)
        if opts.pid_file:
            opts.pid_file.write_text(f"{os.getpid()}\n")
        serve(opts)
        return 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the daemon
        os.close(read_end)
        os.setsid()
        _detach()
        _setup_logging(opts)
        code = 0
        try:
            serve(opts, report=write_end)
        except HistfsError as exc:
            with contextlib.suppress(OSError):
                os.write(write_end, f"error: {exc}".encode())
            code = 2
        except BaseException as exc:  # whatever it is, the parent must hear of it
            log.exception("mount failed")
            with contextlib.suppress(OSError):
                os.write(write_end, f"error: {exc}".encode())
            code = 2
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        answer = f.read().decode(errors="replace")
    if answer != "ok":
        os.waitpid(pid, 0)
        raise MountError(answer.removeprefix("error: ") or "the mount daemon died")
    if opts.pid_file:
        opts.pid_file.write_text(f"{pid}\n")
    _wait_answering(opts.mountpoint)
    return 0


def _detach() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _wait_answering(mountpoint: Path, timeout: float = 30.0) -> None:
    """Return once a stat of the mount point is served by the daemon."""
    done = threading.Event()
    errors: list[OSError] = []

    def probe() -> None:
        try:
            os.stat(mountpoint)
        except OSError as exc:
            errors.append(exc)
        done.set()

    threading.Thread(target=probe, daemon=True).start()
    if not done.wait(timeout):
        raise MountError(f"{mountpoint} was mounted but does not answer")
    if errors:
        raise MountError(f"{mountpoint} was mounted but fails: {errors[0].strerror}")


def umount(mountpoint: Path, lazy: bool = False) -> int:
    """`histfs umount`: unmount a histfs mount (the daemon then exits)."""
    cmd = ["fusermount3", "-u"] + (["-z"] if lazy else []) + [str(mountpoint)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise MountError("fusermount3 is missing (apt-get install fuse3)") from None
    if proc.returncode != 0:
        message = proc.stderr.strip().removeprefix("fusermount3: ")
        raise MountError(f"cannot unmount {mountpoint}: {message}")
    return 0
