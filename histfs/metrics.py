"""Prometheus text-format metrics: of one backup run (`backup --metrics-file`,
for node_exporter's textfile collector) and of a whole repository
(`histfs metrics`).

Times are unix seconds; sizes bytes. A host's last success is the time of
its newest snapshot, read from the repository, so a failed run still
reports when the host last succeeded.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from pathlib import Path

from index.errors import HistfsError
from index.format.names import snapshot_time
from index.model.repository import Repository
from index.model.snapshot_meta import snapshot_metas
from index.store.storage import replacing
from writer.stats import BackupStats

_HELP = {
    "histfs_backup_last_success_timestamp_seconds":
        ("gauge", "Start time of the host's newest snapshot."),
    "histfs_backup_last_run_timestamp_seconds": ("gauge", "When the last backup run ended."),
    "histfs_backup_exit_status":
        ("gauge", "Exit status of the last run: 0 success, 1 warnings, 2 failed."),
    "histfs_backup_duration_seconds": ("gauge", "Duration of the last backup."),
    "histfs_backup_read_bytes": ("gauge", "Bytes read from the source by the last backup."),
    "histfs_backup_added_bytes":
        ("gauge", "Bytes added to the repository by the last backup (after deduplication "
                  "and compression)."),
    "histfs_backup_files": ("gauge", "Files of the last backup, by state."),
    "histfs_snapshots": ("gauge", "Snapshots of the host in the repository."),
    "histfs_snapshots_damaged":
        ("gauge", "Snapshots of the host whose index cannot be read (histfs metrics)."),
    "histfs_snapshot_damaged":
        ("gauge", "1 for each snapshot whose index cannot be read (histfs metrics)."),
    "histfs_repository_size_bytes": ("gauge", "Size of the repository's files."),
}


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _render(samples: Iterable[tuple[str, dict[str, str], float]]) -> str:
    by_name: dict[str, list[tuple[dict[str, str], float]]] = {}
    for name, labels, value in samples:
        by_name.setdefault(name, []).append((labels, value))
    lines = []
    for name, rows in by_name.items():
        kind, text = _HELP[name]
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        for labels, value in rows:
            inner = ",".join(f'{k}="{_quote(v)}"' for k, v in labels.items())
            shown = str(int(value)) if value.is_integer() else repr(value)
            lines.append(f"{name}{{{inner}}} {shown}" if inner else f"{name} {shown}")
    return "\n".join(lines) + "\n"


Sample = tuple[str, dict[str, str], float]
_CARRIED = ("histfs_backup_last_success_timestamp_seconds", "histfs_snapshots",
            "histfs_repository_size_bytes")
_SAMPLE_RE = re.compile(r'^([a-z_]+)(?:\{host="([A-Za-z0-9._-]+)"\})? ([0-9.e+-]+)$', re.ASCII)


def _host_samples(repo: Repository, host: str) -> list[Sample]:
    refs = repo.snapshots(host)
    samples: list[Sample] = [("histfs_snapshots", {"host": host}, float(len(refs)))]
    if refs:
        samples.append(("histfs_backup_last_success_timestamp_seconds", {"host": host},
                        snapshot_time(refs[-1].name).timestamp()))
    return samples


def _run_samples(host: str, ended: float, exit_status: int, duration: float,
                 read: int | None, added: int | None,
                 files: dict[str, int | None]) -> list[Sample]:
    """The series of one run; figures that are not known are left out."""
    h = {"host": host}
    samples: list[Sample] = [
        ("histfs_backup_last_run_timestamp_seconds", h, ended),
        ("histfs_backup_exit_status", h, float(exit_status)),
        ("histfs_backup_duration_seconds", h, duration),
    ]
    if read is not None:
        samples.append(("histfs_backup_read_bytes", h, float(read)))
    if added is not None:
        samples.append(("histfs_backup_added_bytes", h, float(added)))
    for state in ("new", "changed", "unchanged", "failed"):
        count = files.get(state)
        if count is not None:
            samples.append(("histfs_backup_files", {**h, "state": state}, float(count)))
    return samples


def _carried(previous: str | None, host: str) -> list[Sample]:
    """The figures of `previous` (the metrics file of an earlier run) that
    only the repository knows, for a run that could not read it: the last
    success keeps its time, so that "no recent backup" still counts from it."""
    samples: list[Sample] = []
    for line in (previous or "").splitlines():
        m = _SAMPLE_RE.match(line)
        if m is None or m.group(1) not in _CARRIED:
            continue
        if m.group(2) not in (host, None):
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        samples.append((m.group(1), {"host": host} if m.group(2) else {}, value))
    return samples


def backup_metrics(repo: Repository | None, host: str, stats: BackupStats, exit_status: int,
                   ended: float | None = None, previous: str | None = None) -> str:
    """The metrics of one backup run of `host`. Without a repository (it
    could not be opened) the figures only it knows come from `previous`."""
    known: list[Sample] | None = None
    if repo is not None:
        try:
            known = [*_host_samples(repo, host),
                     ("histfs_repository_size_bytes", {}, float(repo.storage.usage()))]
        except (HistfsError, OSError):
            known = None
    if known is None:
        known = _carried(previous, host)
    run = _run_samples(
        host, ended or time.time(), exit_status, stats.duration, stats.bytes_read,
        stats.bytes_added, {"new": stats.files_new, "changed": stats.files_changed,
                            "unchanged": stats.files_unchanged, "failed": stats.files_failed})
    size = [x for x in known if x[0] == "histfs_repository_size_bytes"]
    return _render([*[x for x in known if x not in size], *run, *size])


def repository_metrics(repo: Repository) -> str:
    """The metrics of every host of a repository: the same series as a
    backup's metrics file, the run that made each host's newest snapshot
    standing for its last run (figures that snapshots of earlier versions
    did not record are left out), and the damaged snapshots. Every
    snapshot index is opened, so that damaged ones are counted."""
    samples: list[Sample] = []
    for host in repo.hosts():
        samples += _host_samples(repo, host)
        h = {"host": host}
        metas = snapshot_metas(repo, host)
        damaged = [m for m in metas if m.damaged]
        samples += [("histfs_snapshot_damaged", {**h, "snapshot": m.name}, 1.0)
                    for m in damaged]
        samples.append(("histfs_snapshots_damaged", h, float(len(damaged))))
        newest = metas[-1] if metas else None
        if newest is None or newest.damaged:
            continue  # no snapshot, or the newest is damaged: no run to show
        duration = newest.duration_seconds or 0.0
        samples += _run_samples(
            host, newest.time.timestamp() + duration, 1 if newest.warnings else 0, duration,
            newest.bytes_read, newest.bytes_added,
            {"new": newest.files_new, "changed": newest.files_changed,
             "unchanged": newest.files_unchanged, "failed": newest.files_failed})
    samples.append(("histfs_repository_size_bytes", {}, float(repo.storage.usage())))
    return _render(samples)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step, so that a collector never reads half a
    file (the textfile collector's own advice)."""
    with replacing(path) as tmp:
        tmp.write_text(text)
        tmp.chmod(0o644)
