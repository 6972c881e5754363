"""Running the commands configured in `[hooks]` around a backup.

Each hook is a shell command line run with `/bin/sh -c`, in its own process
group (so a timeout ends everything it started), with the backup's facts in
its environment. Its output, stdout and stderr together, is logged line by
line as it comes, prefixed with the hook's name.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from histfs.config import Hooks
from index.errors import HistfsError

_KILL_GRACE = 5.0


class HookFailed(HistfsError):
    """A `before` hook failed, so the backup did not run."""


class HookStatus(StrEnum):
    """How the backup ended, as `after` hooks see it (`HISTFS_STATUS`)."""

    SUCCESS = "success"
    WARNINGS = "warnings"
    FAILED = "failed"


@dataclass
class HookResult:
    """How one hook ended: exit status, or None when it was killed."""

    name: str
    returncode: int | None
    problem: str | None
    """One line saying why the hook failed; None when it succeeded."""

    @property
    def ok(self) -> bool:
        """The command ran and exited 0."""
        return self.problem is None


def run_hook(name: str, command: str, env: dict[str, str], timeout: timedelta,
             log: Callable[[str], None]) -> HookResult:
    """Run one hook to completion (or until `timeout`, then kill its group)."""
    try:
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command], env={**os.environ, **env}, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        return HookResult(name, None, f"hook {name} could not start: {exc.strerror}")
    assert proc.stdout is not None
    stdout = proc.stdout

    def pump() -> None:
        for raw in stdout:
            log(f"hook {name}: {raw.decode('utf-8', 'backslashreplace').rstrip()}")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    seconds = timeout.total_seconds()
    try:
        returncode = proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        reader.join(timeout=_KILL_GRACE)
        return HookResult(name, None, f"hook {name} timed out after {int(seconds)} s "
                                      "and was killed")
    # Output may still come from children that outlive the shell; do not
    # wait for them beyond a moment.
    reader.join(timeout=_KILL_GRACE)
    if returncode != 0:
        how = (f"was killed by signal {-returncode}" if returncode < 0
               else f"exited with status {returncode}")
        return HookResult(name, returncode, f"hook {name} {how}")
    return HookResult(name, 0, None)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=_KILL_GRACE)
            if sig == signal.SIGTERM:
                # The shell is gone; whatever it started goes too.
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def hook_env(repo: str, host: str, snapshot: str | None, status: HookStatus | None,
             mountpoint: str | None) -> dict[str, str]:
    """The environment a hook gets."""
    env = {"HISTFS_REPO": repo, "HISTFS_HOST": host,
           "HISTFS_SNAPSHOT": snapshot or "", "HISTFS_STATUS": status or ""}
    if mountpoint and snapshot:
        env["HISTFS_SNAPSHOT_PATH"] = os.path.join(mountpoint, host, snapshot)
    return env


def configured(hooks: Hooks) -> bool:
    """Whether any hook is set."""
    return bool(hooks.before or hooks.after or hooks.after_success)
