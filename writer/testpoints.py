"""Named points where crash tests kill a backup or gc with SIGKILL, or pause it.

`HISTFS_TEST_CRASH_AT=<name>` makes the process kill itself the first time
it reaches that point: a real kill -9 at an exact place in the commit
protocol, which a timer cannot hit reliably.
"""

from __future__ import annotations

import os
import signal
import time

_TARGET = os.environ.get("HISTFS_TEST_CRASH_AT")


def crash_point(name: str) -> None:
    """Die here if a crash test asked for this point."""
    if name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)


def pause_point(name: str) -> None:
    """Wait here if a test asked for this point: with
    `HISTFS_TEST_PAUSE_AT=<name>:<dir>` the process creates `<dir>/<name>.reached`
    and goes on once the test has created `<dir>/<name>.go`, so a test can run
    something else at an exact moment of a backup or gc."""
    spec = os.environ.get("HISTFS_TEST_PAUSE_AT", "")
    target, _, folder = spec.partition(":")
    if target != name or not folder:
        return
    with open(os.path.join(folder, f"{name}.reached"), "w"):
        pass
    go = os.path.join(folder, f"{name}.go")
    while not os.path.exists(go):
        time.sleep(0.02)
