"""Lock files: `locks/<name>.lock`, created exclusively, refreshed while held.

They go through the storage interface: on a directory, link(2) of a complete
file; in a bucket, a conditional PUT.

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
import socket
import threading
import time
from typing import TYPE_CHECKING

from index.errors import Locked

if TYPE_CHECKING:
    from index.store.storage import Storage

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


def _read(storage: Storage, relpath: str) -> dict[str, object]:
    """A lock file's object; ValueError if it is not one."""
    try:
        doc = json.loads(storage.read(relpath))
    except RecursionError as exc:  # JSON nested thousands deep
        raise ValueError(f"lock file {relpath} is nested too deep") from exc
    if not isinstance(doc, dict):
        raise ValueError(f"lock file {relpath} does not hold an object")
    return doc


class RepositoryLock:
    """An exclusive lock on one name (for example `backup-mx1`)."""

    def __init__(self, storage: Storage, name: str, purpose: str) -> None:
        self._storage = storage
        self.relpath = f"{LOCKS_DIR}/{name}.lock"
        self._purpose = purpose
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    def _describe(self) -> str:
        try:
            doc = _read(self._storage, self.relpath)
            return (
                f"{doc.get('purpose', '?')} by pid {doc.get('pid')} on "
                f"{doc.get('machine')} since {doc.get('since')}"
            )
        except (OSError, ValueError):
            return "another process"

    def _age(self) -> float:
        return time.time() - self._storage.stat(self.relpath)[2]

    def _is_stale(self) -> bool:
        try:
            doc = _read(self._storage, self.relpath)
            age = self._age()
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            # Unreadable: stale only once old enough.
            try:
                return self._age() > STALE_AFTER
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
        # create_exclusive never shows the file empty or half written, even
        # when its writer is killed while taking the lock.
        while not self._storage.create_exclusive(self.relpath, doc):
            if self._is_stale():
                with contextlib.suppress(FileNotFoundError):
                    self._storage.delete(self.relpath)
                continue
            if time.monotonic() >= deadline:
                raise Locked(f"repository is locked: {self._describe()}")
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        self._refresher = threading.Thread(target=self._refresh, daemon=True)
        self._refresher.start()

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH_EVERY):
            try:
                self._storage.touch(self.relpath)
            except Exception:  # a lost lock ages into staleness; nothing to do here
                return

    def release(self) -> None:
        """Give the lock up."""
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join()
        with contextlib.suppress(FileNotFoundError):
            self._storage.delete(self.relpath)

    def __enter__(self) -> RepositoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def live_locks_since(storage: Storage, prefix: str) -> list[float]:
    """When each live (not stale) lock named `<prefix>…` was taken, in unix
    seconds; a lock whose time cannot be read counts as taken at 0, i.e.
    before anything else."""
    found = []
    names = sorted(n for n in storage.listdir(LOCKS_DIR)
                   if n.startswith(prefix) and n.endswith(".lock"))
    for fname in names:
        lock = RepositoryLock(storage, fname[: -len(".lock")], "")
        if lock._is_stale():
            continue
        try:
            since = _read(storage, lock.relpath)["since"]
            if not isinstance(since, str):
                raise ValueError(f"lock time {since!r:.40}")
            found.append(float(calendar.timegm(time.strptime(since, "%Y-%m-%dT%H:%M:%SZ"))))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError):
            found.append(0.0)
    return found
