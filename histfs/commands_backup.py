"""The `backup` command: its options and configuration turned into a
`BackupJob`, and the summary of the run printed."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from contextlib import AbstractContextManager
from pathlib import Path

from histfs import log
from histfs.arguments import file_config, open_repository, repo_location, seconds
from histfs.backup_dry_run import dry_run
from histfs.backup_job import BackupJob, RunRecord
from histfs.backup_progress import progress_text, terminal_width
from histfs.config import (
    ExcludeSettings,
    FileConfig,
    check_compression,
    parse_part_args,
    short_host_name,
)
from histfs.exit_status import EXIT_OK
from histfs.output import Progress, human_bytes
from index.errors import ConfigError
from index.model.repository import Repository
from index.store.malloc_arenas import limit_malloc_arenas, return_freed_memory
from writer.backup import BackupResult
from writer.excludes import check_marker_name, patterns_from_file
from writer.parts import Part
from writer.stats import BackupStats

DEFAULT_COMPRESSION = 3
_WARNINGS_SHOWN = 50


def cmd_backup(args: argparse.Namespace) -> int:
    """`histfs backup`. Every run that got as far as reading its options
    writes its metrics file, whatever stops it (but a dry run)."""
    limit_malloc_arenas()  # before the reading threads start
    return_freed_memory()
    if args.list and not args.dry_run:
        raise ConfigError("--list names the paths of a --dry-run: give both")
    if args.dry_run:
        cfg = file_config(args)
        parts = _parts(args, cfg)
        with open_repository(repo_location(args, cfg)) as repo:
            return dry_run(args, repo, args.host or cfg.host or short_host_name(), parts)
    with RunRecord(Path(args.metrics_file) if args.metrics_file else None,
                   args.host) as record:
        cfg = file_config(args)
        record.metrics_file = record.metrics_file or cfg.metrics_file
        record.host = host = args.host or cfg.host or short_host_name()
        seconds(args.lock_wait, "--lock-wait")
        with open_repository(repo_location(args, cfg)) as repo, record.inside(repo):
            record.code = _back_up(args, cfg, repo, host, record)
        return record.code


def _back_up(args: argparse.Namespace, cfg: FileConfig, repo: Repository, host: str,
             record: RunRecord) -> int:
    level = cfg.compression if args.compression is None else args.compression
    level = check_compression(DEFAULT_COMPRESSION if level is None else level)
    job = BackupJob(repo, host, _parts(args, cfg), level, args.lock_wait, cfg.hooks,
                    cfg.mountpoint)
    skip = None if cfg.min_interval is None or args.force else job.skip_reason(cfg.min_interval)
    if skip is not None:
        if args.json:
            print(json.dumps({"repository": str(repo.root), "host": host, "snapshot": None,
                              "skipped": skip, "exit_status": EXIT_OK}, indent=2))
        else:
            log.notice(skip)
        return EXIT_OK
    return job.run(record, lambda result: _summary(args, repo, host, result),
                   lambda stats: _progress(args, stats))


def _parts(args: argparse.Namespace, cfg: FileConfig) -> list[Part]:
    parts = parse_part_args(args.parts, args.exclude) if args.parts else cfg.parts
    if not parts:
        raise ConfigError("no parts to back up: give NAME=PATH arguments or [[part]] in --config")
    given = ExcludeSettings(
        tuple(p for f in args.exclude_from for p in patterns_from_file(Path(f))),
        args.exclude_caches or None,
        tuple(check_marker_name(m, "--exclude-if-present") for m in args.exclude_if_present),
        args.one_file_system or None)
    return [given.apply(part) for part in parts]


def _progress(args: argparse.Namespace, stats: BackupStats) -> AbstractContextManager[object]:
    """A progress line on a terminal, unless the output is JSON or quiet."""
    width = terminal_width()
    show = sys.stderr.isatty() and not args.json and not args.quiet
    return Progress(lambda: progress_text(stats, width),
                    last=lambda: progress_text(stats, width, final=True)) \
        if show else contextlib.nullcontext()


def _summary(args: argparse.Namespace, repo: Repository, host: str,
             result: BackupResult) -> None:
    """Log the run and print its summary (JSON, or lines unless quiet)."""
    stats = result.stats
    snapshot = result.snapshot.name if result.snapshot else None
    log.notice(f"backup of {host}: snapshot {snapshot}, exit status "
               f"{result.exit_status}, {stats.files_new} new, {stats.files_changed} changed, "
               f"{stats.files_failed} failed files, {stats.bytes_read} bytes read, "
               f"{stats.bytes_added} added, {stats.duration:.1f} s", to_stderr=False)
    for w in stats.warnings[:_WARNINGS_SHOWN]:
        log.warning(w)
    if len(stats.warnings) > _WARNINGS_SHOWN:
        log.warning(f"… and {len(stats.warnings) - _WARNINGS_SHOWN} more")
    if args.json:
        print(json.dumps({"repository": str(repo.root), "host": host, "snapshot": snapshot,
                          "exit_status": result.exit_status, **stats.as_dict()}, indent=2))
        return
    if args.quiet:
        return
    d = stats.duration
    print(f"snapshot   {host}/{snapshot}")
    # `files` as `histfs snapshots` and the progress line count them.
    print(f"files      {stats.files} ({stats.files_new} new, {stats.files_changed} changed, "
          f"{stats.files_unchanged} unchanged, {stats.other} other), {stats.files_failed} "
          f"failed, {stats.dirs} directories")
    print(f"read       {human_bytes(stats.bytes_read)} of {human_bytes(stats.logical_bytes)}")
    print(f"added      {human_bytes(stats.bytes_added)} in {stats.chunks_added} new chunks "
          "(after deduplication and compression)")
    print(f"duration   {d:.1f} s ({human_bytes(stats.bytes_read / d if d else 0)}/s)")
    if stats.warnings:
        print(f"warnings   {len(stats.warnings)} (see above)")
