"""Human-readable numbers and the progress line."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as disks are sold)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


class Progress:
    """Redraws one status line on stderr while a long operation runs. With
    `last`, the line `last()` renders stays on the screen when the operation
    ends without an error; otherwise the line is cleared."""

    def __init__(self, render: Callable[[], str], interval: float = 0.5,
                 last: Callable[[], str] | None = None) -> None:
        self._render = render
        self._last = last
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._width = 0

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._last is not None and kind is None:
            line = self._last()
            sys.stderr.write("\r" + line + " " * max(0, self._width - len(line)) + "\n")
        else:
            sys.stderr.write("\r" + " " * self._width + "\r")
        sys.stderr.flush()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            line = self._render()[:150]
            pad = max(0, self._width - len(line))
            self._width = len(line)
            sys.stderr.write("\r" + line + " " * pad)
            sys.stderr.flush()
