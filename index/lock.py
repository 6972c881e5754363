"""Lock files: `locks/<name>.lock`, created exclusively, refreshed while held.

A lock names its holder (machine, pid, start time). A lock is stale when its
holder is a process on this machine that no longer exists, or when it has not
been refreshed for `STALE_AFTER` seconds (a holder on another machine that
died); a stale lock is removed and taken over.
"""

from __future__ import annotations

import calendar
import contextlib
import json
import os
import secrets
import socket
import threading
import time
from pathlib import Path

from index.errors import Locked

LOCKS_DIR = "locks"
REFRESH_EVERY = 60.0
STALE_AFTER = 30 * 60.0


def _holder_alive(doc: dict[str, object]) -> bool:
    if doc.get("machine") != socket.gethostname():
        return True
    pid = doc.get("pid")
    # 0 and negative numbers name process groups, not a process; a bool is
    # not a pid either.
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> dict[str, object]:
    """A lock file's object; ValueError if it is not one."""
    try:
        doc = json.loads(path.read_text())
    except RecursionError as exc:  # JSON nested thousands deep
        raise ValueError(f"lock file {path.name} is nested too deep") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"lock file {path.name} does not hold an object")
    return doc


class RepositoryLock:
    """An exclusive lock on one name (for example `backup-mx1`)."""

    def __init__(self, locks_dir: Path, name: str, purpose: str) -> None:
        self.path = locks_dir / f"{name}.lock"
        self._purpose = purpose
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def _describe(self) -> str:
        try:
            doc = _read(self.path)
            return (
                f"{doc.get('purpose', '?')} by pid {doc.get('pid')} on "
                f"{doc.get('machine')} since {doc.get('since')}"
            )
        except (OSError, ValueError):
            return "another process"

    def _is_stale(self) -> bool:
        try:
            doc = _read(self.path)
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            # Unreadable or half-written: stale only once old enough.
            try:
                return time.time() - self.path.stat().st_mtime > STALE_AFTER
            except FileNotFoundError:
                return False
        return age > STALE_AFTER or not _holder_alive(doc)

    def acquire(self, wait: float = 0.0) -> None:
        """Take the lock, waiting up to `wait` seconds; raises `Locked`."""
        deadline = time.monotonic() + wait
        doc = json.dumps({
            "machine": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "purpose": self._purpose,
        }).encode()
        self.path.parent.mkdir(exist_ok=True)
        # The content is written first and the lock taken by link(2), which
        # fails if the name exists: a lock file is never seen empty or half
        # written, even when its writer is killed (and link is atomic on NFS).
        tmp = self.path.parent / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, doc)
                os.fsync(fd)
            finally:
                os.close(fd)
            while True:
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    if self._is_stale():
                        with contextlib.suppress(FileNotFoundError):
                            self.path.unlink()
                        continue
                    if time.monotonic() >= deadline:
                        raise Locked(f"repository is locked: {self._describe()}") from None
                    time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
                    continue
                break
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        self._refresher = threading.Thread(target=self._refresh, daemon=True)
        self._refresher.start()

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            try:
                os.utime(self.path)
            except OSError:
                return

    def release(self) -> None:
        """Give the lock up."""
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> RepositoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def live_locks_since(locks_dir: Path, prefix: str) -> list[float]:
    """When each live (not stale) lock named `<prefix>…` was taken, in unix
    seconds; a lock whose time cannot be read counts as taken at 0, i.e.
    before anything else."""
    found = []
    for path in sorted(locks_dir.glob(f"{prefix}*.lock")):
        lock = RepositoryLock(locks_dir, path.name[: -len(".lock")], "")
        if lock._is_stale():
            continue
        try:
            since = _read(path)["since"]
            if not isinstance(since, str):
                raise ValueError(f"lock time {since!r:.40}")
            found.append(float(calendar.timegm(time.strptime(since, "%Y-%m-%dT%H:%M:%SZ"))))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError):
            found.append(0.0)
    return found
