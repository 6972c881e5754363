"""Named points where crash tests kill a backup with SIGKILL.

`HISTFS_TEST_CRASH_AT=<name>` makes the process kill itself the first time
it reaches that point: a real kill -9 at an exact place in the commit
protocol, which a timer cannot hit reliably.
"""

from __future__ import annotations

import os
import signal

_TARGET = os.environ.get("HISTFS_TEST_CRASH_AT")


def crash_point(name: str) -> None:
    """Die here if a crash test asked for this point."""
    if name == _TARGET:
        os.kill(os.getpid(), signal.SIGKILL)
