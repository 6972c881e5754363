"""Adding folders to a live Maildir's `subscriptions` file, as Dovecot
itself does: under its dot-lock `subscriptions.lock`, the new file is
written as the lock file and renamed over the old one. Every line that was
there stays, byte for byte; a server writing the file at the same time
waits for the lock, and so does this.

Dovecot 2.x writes either plain names, one a line, or (version 2, a
"V\\t2\\n\\n" header) the levels of a name separated by tabs, each level
tab-escaped.
"""

from __future__ import annotations

import contextlib
import os
import time

from index.errors import HistfsError

SUBSCRIPTIONS = b"subscriptions"
LOCK = b"subscriptions.lock"
VERSION2 = b"V\t2\n\n"
_LOCK_WAIT = 30.0
_ESCAPES = {b"\x01": b"\x011", b"\t": b"\x01t", b"\r": b"\x01r", b"\n": b"\x01n"}


class SubscriptionsLocked(HistfsError):
    """Another process held the subscriptions file's lock for too long."""


def line_of(name: bytes, version2: bool, separator: bytes = b".") -> bytes:
    """The line naming folder `name` (levels separated by `separator`)."""
    if not version2:
        return name
    levels = []
    for level in name.split(separator):
        for raw, escaped in _ESCAPES.items():
            level = level.replace(raw, escaped)
        levels.append(level)
    return b"\t".join(levels)


def subscribe(root_fd: int, names: list[bytes], wait: float = _LOCK_WAIT) -> list[bytes]:
    """Add the folders `names` to the subscriptions file of the Maildir open
    as `root_fd`, if it has one; the names added (those not there yet).
    The file keeps its owner and mode."""
    try:
        st = os.stat(SUBSCRIPTIONS, dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        return []
    lock_fd = _lock(root_fd, st.st_mode & 0o777, wait)
    renamed = False
    try:
        with open(os.open(SUBSCRIPTIONS, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=root_fd), "rb") as f:
            old = f.read()
        version2 = old.startswith(VERSION2)
        have = set((old[len(VERSION2):] if version2 else old).split(b"\n"))
        added = []
        for name in names:
            line = line_of(name, version2)
            if line not in have:
                have.add(line)
                added.append((name, line))
        if not added:
            return []
        text = old if not old or old.endswith(b"\n") else old + b"\n"
        text += b"".join(line + b"\n" for _, line in added)
        view = memoryview(text)
        while view:
            view = view[os.write(lock_fd, view):]
        os.fchown(lock_fd, st.st_uid, st.st_gid)
        os.fchmod(lock_fd, st.st_mode & 0o7777)
        os.fsync(lock_fd)
        os.rename(LOCK, SUBSCRIPTIONS, src_dir_fd=root_fd, dst_dir_fd=root_fd)
        renamed = True
        os.fsync(root_fd)
        return [name for name, _ in added]
    finally:
        os.close(lock_fd)
        if not renamed:
            with contextlib.suppress(OSError):
                os.unlink(LOCK, dir_fd=root_fd)


def _lock(root_fd: int, mode: int, wait: float) -> int:
    """Take the dot-lock: create `subscriptions.lock`, waiting while another
    process has it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return os.open(LOCK, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                           | os.O_CLOEXEC, mode, dir_fd=root_fd)
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise SubscriptionsLocked(
                    f"subscriptions.lock: held by another process for {wait:.0f} s") from None
            time.sleep(0.05)
