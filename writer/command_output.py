"""What a command run by histfs said on its standard error and how it
ended, for the one-line error that reports its failure (a part of kind
"command", `restore --to-command`)."""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import IO

_TAIL_BYTES = 4096
_TAIL_LINES = 5


class StderrTail:
    """A thread reading a command's stderr to its end (so that the command
    never blocks on a full pipe), keeping its last few KiB and, with
    `echo`, passing it on to this process's stderr."""

    def __init__(self, stream: IO[bytes], echo: bool = False) -> None:
        self._stream = stream
        self._echo = echo
        self._tail: deque[bytes] = deque()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        kept = 0
        while chunk := self._stream.read1(65536):  # type: ignore[attr-defined]
            if self._echo:
                sys.stderr.buffer.write(chunk)
                sys.stderr.flush()
            self._tail.append(chunk)
            kept += len(chunk)
            while kept - len(self._tail[0]) >= _TAIL_BYTES:
                kept -= len(self._tail.popleft())
        self._stream.close()

    def join(self) -> None:
        """Wait until the stream has ended."""
        self._thread.join()

    def last_lines(self) -> str:
        """Its last non-empty lines, on one line (after `join`)."""
        return last_lines(b"".join(self._tail))


def last_lines(said: bytes) -> str:
    """The last non-empty lines of what a command said, on one line."""
    lines = [ln.strip() for ln in said.decode("utf-8", "backslashreplace").splitlines()]
    return " | ".join([ln for ln in lines if ln][-_TAIL_LINES:])


def how_it_ended(status: int) -> str:
    """A non-zero `Popen.wait()` status in words."""
    return f"exited with status {status}" if status > 0 else f"killed by signal {-status}"


def process_failed(what: str, status: int, said: str) -> str:
    """The one-line error of process `what` that ended with the non-zero
    `status` after saying `said` on its stderr (see `last_lines`)."""
    return f"{what} {how_it_ended(status)}" + (f": {said}" if said else "")
