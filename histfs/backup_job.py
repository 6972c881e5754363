"""One run of `histfs backup` around the backup itself: `min_interval`,
which may skip it; the hooks before and after it and the status they are
told; and the metrics file of the run, written whatever stops it (the alert
for a failed backup must fire for a wrong passphrase or a failing hook too).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from histfs import log
from histfs.config import Hooks, short_host_name
from histfs.exit_status import EXIT_FAILED, EXIT_OK, EXIT_WARNINGS
from histfs.hooks import HookFailed, HookResult, HookStatus, hook_env, run_hook
from index.errors import HistfsError
from index.format.names import snapshot_time
from index.model.repository import Repository
from writer.backup import BackupResult, run_backup
from writer.parts import Part
from writer.retention import format_duration
from writer.stats import BackupStats


@dataclass
class RunRecord:
    """What the metrics file of a backup run needs, filled in as the run
    goes. Used as a context manager around the whole run: the file is
    written on the way out (with the repository's figures when the run got
    as far as `with record.inside(repo):`)."""

    metrics_file: Path | None
    host: str | None
    stats: BackupStats = field(default_factory=BackupStats)
    code: int = EXIT_FAILED
    _written: bool = field(default=False, init=False, repr=False)

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._written:
            self._write(None)

    @contextlib.contextmanager
    def inside(self, repo: Repository) -> Iterator[None]:
        """The part of the run with the repository open."""
        try:
            yield
        finally:
            self._write(repo)

    def _write(self, repo: Repository | None) -> None:
        from histfs.metrics import backup_metrics, write_atomically

        self._written = True
        path = self.metrics_file
        if path is None:
            return
        try:
            previous: str | None = path.read_text(errors="replace")
        except (OSError, ValueError):
            previous = None
        try:
            write_atomically(path, backup_metrics(repo, self.host or short_host_name(),
                                                  self.stats, self.code, previous=previous))
        except (OSError, HistfsError) as exc:
            # The backup's own outcome matters more than its report.
            log.warning(f"cannot write metrics to {path}: {exc}")


def _hook_status(code: int) -> HookStatus:
    return (HookStatus.SUCCESS if code == EXIT_OK else
            HookStatus.WARNINGS if code == EXIT_WARNINGS else HookStatus.FAILED)


@dataclass(frozen=True)
class BackupJob:
    """A backup of `parts` of `host` into `repo`, with the configured hooks
    around it."""

    repo: Repository
    host: str
    parts: list[Part]
    level: int
    lock_wait: float
    hooks: Hooks = field(default_factory=Hooks)
    mountpoint: Path | None = None
    """Where the repository is mounted, for the hooks' HISTFS_SNAPSHOT_PATH."""

    def skip_reason(self, min_interval: timedelta) -> str | None:
        """Why the backup is skipped now (the host's last snapshot is newer
        than `min_interval`), or None when it is due."""
        latest = self.repo.latest(self.host)
        if latest is None:
            return None
        age = datetime.now(UTC) - snapshot_time(latest.name)
        if age >= min_interval:
            return None
        return (f"skipped: the last snapshot {self.host}/{latest.name} is {_age(age)} old, "
                f"inside min_interval {format_duration(min_interval)} "
                "(--force backs up anyway)")

    def run(self, record: RunRecord, show: Callable[[BackupResult], None],
            progress: Callable[[BackupStats], AbstractContextManager[object]]) -> int:
        """The hooks and the backup (`progress` shown while it runs, `show`
        given its result); the exit status, at least warnings when an
        `after` hook fails. Raises HookFailed when the `before` hook fails:
        then no backup runs, and the `after` hook is told it failed."""
        before = self._hook("before", self.hooks.before, None, None)
        if before is not None and not before.ok:
            self._hook("after", self.hooks.after, None, HookStatus.FAILED)
            raise HookFailed(f"{before.problem}: backup not started")
        # The backup's duration does not count the before hook's.
        stats = record.stats = BackupStats()
        try:
            with progress(stats):
                result = run_backup(self.repo, self.host, self.parts, level=self.level,
                                    lock_wait=self.lock_wait, stats=stats)
            show(result)
        except BaseException:
            self._hook("after", self.hooks.after, None, HookStatus.FAILED)
            raise
        code = result.exit_status
        snapshot = result.snapshot.name if result.snapshot else None
        status = _hook_status(code)
        results = [self._hook("after", self.hooks.after, snapshot, status)]
        if snapshot is not None:
            results.append(self._hook("after_success", self.hooks.after_success, snapshot,
                                      status))
        for hook in results:
            if hook is not None and not hook.ok:
                log.warning(hook.problem or "a hook failed")
                code = max(code, EXIT_WARNINGS)
        return code

    def _hook(self, name: str, command: str | None, snapshot: str | None,
              status: HookStatus | None) -> HookResult | None:
        if not command:
            return None
        env = hook_env(str(self.repo.root), self.host, snapshot, status,
                       str(self.mountpoint) if self.mountpoint else None)
        return run_hook(name, command, env, self.hooks.timeout, log.notice)


def _age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"
