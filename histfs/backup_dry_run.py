"""`histfs backup --dry-run`: what the backup would find new, changed,
unchanged and excluded, printed as text or JSON, each path with `--list`.
No lock, hook, metrics file or local cache file is touched
(writer/dry_run.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from histfs import log
from histfs.exit_status import EXIT_OK, EXIT_WARNINGS
from histfs.output import human_bytes
from index.errors import SnapshotDamaged, SnapshotNotFound
from index.format.names import check_host, json_path, show_path
from index.model.repository import Repository
from index.model.snapshot_reader import SnapshotReader
from writer.dry_run import DryRun, DryRunCounts, Status
from writer.parts import Part

_WORDS = {Status.NEW: "new", Status.CHANGED: "changed", Status.UNCHANGED: "unchanged",
          Status.DIRECTORY: "directory", Status.OTHER: "other", Status.EXCLUDED: "excluded",
          Status.FAILED: "failed"}
_WARNINGS_SHOWN = 50


def _previous(repo: Repository, host: str, warnings: list[str]) -> SnapshotReader | None:
    """The snapshot the backup would compare with, opened without making a
    copy of its index in the local cache."""
    for ref in reversed(repo.snapshots(host)):
        try:
            return repo.open_snapshot(ref, keep=False)
        except SnapshotNotFound:
            continue
        except SnapshotDamaged as exc:
            warnings.append(f"{exc}; files are compared with an older snapshot")
    return None


def dry_run(args: argparse.Namespace, repo: Repository, host: str, parts: list[Part]) -> int:
    """Walk `parts` as a backup of `host` into `repo` would and print what it
    would do; the exit status (1 when some path could not be looked at)."""
    check_host(host)
    listed: list[dict[str, str]] = []

    def report(status: Status, path: bytes) -> None:
        if args.json:
            listed.append({"status": _WORDS[status], **json_path(path)})
        else:
            print(f"{status.value} {show_path(path)}")

    warnings: list[str] = []
    prev = _previous(repo, host, warnings)
    try:
        # The repository, when it lies inside a source, is left out as by a backup.
        root = Path(repo.local_root).stat() if repo.local_root is not None else None
        walk = DryRun(prev, (root.st_dev, root.st_ino) if root else (-1, -1),
                      report if args.list else None)
        counts = walk.run(parts)
    finally:
        if prev is not None:
            prev.close()
    counts.warnings[:0] = warnings
    for w in counts.warnings[:_WARNINGS_SHOWN]:
        log.warning(w)
    if len(counts.warnings) > _WARNINGS_SHOWN:
        log.warning(f"… and {len(counts.warnings) - _WARNINGS_SHOWN} more")
    status = EXIT_WARNINGS if counts.warnings else EXIT_OK
    previous = prev.meta.get("name") if prev is not None else None
    if args.json:
        print(json.dumps({"repository": str(repo.root), "host": host, "dry_run": True,
                          "previous": previous, "exit_status": status, **counts.as_dict(),
                          **({"paths": listed} if args.list else {})}, indent=2))
    elif not args.quiet:
        _print_summary(host, previous, counts)
    return status


def _print_summary(host: str, previous: object, counts: DryRunCounts) -> None:
    against = f"compared with {host}/{previous}" if previous else "no previous snapshot"
    print(f"dry run    {host}, {against}: nothing was read or written")
    files = counts.files_new + counts.files_changed + counts.files_unchanged + counts.other
    print(f"files      {files} ({counts.files_new} new ({human_bytes(counts.bytes_new)}), "
          f"{counts.files_changed} changed ({human_bytes(counts.bytes_changed)}), "
          f"{counts.files_unchanged} unchanged ({human_bytes(counts.bytes_unchanged)}), "
          f"{counts.other} other), {counts.files_failed} failed, {counts.dirs} directories")
    print(f"would read {human_bytes(counts.bytes_new + counts.bytes_changed)}")
    print(f"excluded   {counts.excluded}")
    if counts.warnings:
        print(f"warnings   {len(counts.warnings)} (see above)")
