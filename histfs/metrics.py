"""Prometheus text-format metrics: of one backup run (`backup --metrics-file`,
for node_exporter's textfile collector) and of a whole repository
(`histfs metrics`).

Times are unix seconds; sizes bytes. A host's last success is the time of
its newest snapshot, read from the repository, so a failed run still
reports when the host last succeeded.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from index.errors import SnapshotDamaged, SnapshotNotFound
from index.names import snapshot_time
from index.repository import Repository
from index.storage import replacing
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


def _host_samples(repo: Repository, host: str) -> list[tuple[str, dict[str, str], float]]:
    refs = repo.snapshots(host)
    samples = [("histfs_snapshots", {"host": host}, float(len(refs)))]
    if refs:
        samples.append(("histfs_backup_last_success_timestamp_seconds", {"host": host},
                        snapshot_time(refs[-1].name).timestamp()))
    return samples


def backup_metrics(repo: Repository, host: str, stats: BackupStats, exit_status: int,
                   ended: float | None = None) -> str:
    """The metrics of one backup run of `host`."""
    h = {"host": host}
    samples = [
        *_host_samples(repo, host),
        ("histfs_backup_last_run_timestamp_seconds", h, ended or time.time()),
        ("histfs_backup_exit_status", h, float(exit_status)),
        ("histfs_backup_duration_seconds", h, stats.duration),
        ("histfs_backup_read_bytes", h, float(stats.bytes_read)),
        ("histfs_backup_added_bytes", h, float(stats.bytes_added)),
        ("histfs_backup_files", {**h, "state": "new"}, float(stats.files_new)),
        ("histfs_backup_files", {**h, "state": "changed"}, float(stats.files_changed)),
        ("histfs_backup_files", {**h, "state": "unchanged"}, float(stats.files_unchanged)),
        ("histfs_backup_files", {**h, "state": "failed"}, float(stats.files_failed)),
        ("histfs_repository_size_bytes", {}, float(repo.storage.usage())),
    ]
    return _render(samples)


def repository_metrics(repo: Repository) -> str:
    """The metrics of every host of a repository, from its snapshots: the
    newest snapshot's duration and bytes added stand for the last run.
    Every snapshot index is opened, so that damaged ones are counted."""
    samples: list[tuple[str, dict[str, str], float]] = []
    for host in repo.hosts():
        samples += _host_samples(repo, host)
        h = {"host": host}
        refs = repo.snapshots(host)
        meta: dict[str, Any] = {}
        damaged = 0
        for ref in refs:
            try:
                with repo.open_snapshot(ref) as snap:
                    meta = snap.meta
            except SnapshotNotFound:
                continue  # pruned meanwhile
            except SnapshotDamaged:
                meta = {}
                damaged += 1
                samples.append(("histfs_snapshot_damaged", {**h, "snapshot": ref.name}, 1.0))
        samples.append(("histfs_snapshots_damaged", h, float(damaged)))
        # `meta` is the newest snapshot's, or empty when that one is damaged.
        if isinstance(meta.get("duration_seconds"), int | float):
            samples.append(("histfs_backup_duration_seconds", h,
                            float(meta["duration_seconds"])))
        if isinstance(meta.get("bytes_added"), int):
            samples.append(("histfs_backup_added_bytes", h, float(meta["bytes_added"])))
    samples.append(("histfs_repository_size_bytes", {}, float(repo.storage.usage())))
    return _render(samples)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step, so that a collector never reads half a
    file (the textfile collector's own advice)."""
    with replacing(path) as tmp:
        tmp.write_text(text)
        tmp.chmod(0o644)
