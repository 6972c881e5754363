"""The command's messages on stderr, and in a log file when asked.

Every message is one line starting `histfs: error:`, `histfs: warning:` or
`histfs:`, on a terminal or not, so cron mail, syslog and `grep` read them
alike. Under systemd (stderr is the journal stream named by JOURNAL_STREAM)
each line also carries its priority as a `<N>` prefix, which journald takes
as the entry's level (`journalctl -p warning` finds them). `--log-file`
appends every message with a UTC timestamp, the level and the pid.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

_LEVELS = {"error": 3, "warning": 4, "notice": 5, "info": 6}
_log_file: TextIO | None = None
_quiet = False


def configure(log_file: str | None, quiet: bool = False) -> None:
    """Also append messages to `log_file` (created if need be); with
    `quiet`, notices go only to the log file."""
    global _log_file, _quiet
    _quiet = quiet
    if log_file:
        _log_file = open(log_file, "a", buffering=1)  # noqa: SIM115 - for the whole run


def _to_journal() -> bool:
    stream = os.environ.get("JOURNAL_STREAM", "")
    if not stream:
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def emit(level: str, message: str, to_stderr: bool = True) -> None:
    """One message: `level` is error, warning, notice or info."""
    text = f"histfs: {level}: {message}" if level in ("error", "warning") else \
        f"histfs: {message}"
    if to_stderr and not (_quiet and level in ("notice", "info")):
        prefix = f"<{_LEVELS[level]}>" if _to_journal() else ""
        print(prefix + text, file=sys.stderr, flush=True)
    if _log_file is not None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        _log_file.write(f"{stamp} histfs[{os.getpid()}] {level.upper()} {message}\n")


def status(line: str) -> None:
    """A status line shown as it is (`restoring … into …`, `5 kept, 2
    removed`), except with --quiet; recorded as a notice."""
    if not _quiet:
        print(line, file=sys.stderr, flush=True)
    emit("notice", line, to_stderr=False)


def error(message: str) -> None:
    """An error: the command failed."""
    emit("error", message)


def warning(message: str) -> None:
    """A warning: the command went on."""
    emit("warning", message)


def notice(message: str, to_stderr: bool = True) -> None:
    """What happened (a summary); with `to_stderr` False only to the log file."""
    emit("notice", message, to_stderr)
