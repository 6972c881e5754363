"""Commands that look after a repository: `check`, `prune`, `forget`, `gc`,
`hold` and `release`."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from histfs import log
from histfs.arguments import (
    config_host,
    file_config,
    only_host,
    open_repository,
    repo_location,
    seconds,
)
from histfs.config import FileConfig, parse_duration, short_host_name
from histfs.exit_status import EXIT_OK, EXIT_WARNINGS
from histfs.output import human_bytes
from index.errors import ConfigError
from writer.retention import Policy

_PERIODS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def cmd_check(args: argparse.Namespace) -> int:
    """`histfs check`."""
    from index.tools.check import check, record_result

    subset = _subset(args.read_data_subset) if args.read_data_subset else None
    read_data = bool(args.read_data or subset)

    def say(line: str) -> None:
        if not args.json:
            print(line, file=sys.stderr)

    with open_repository(repo_location(args)) as repo:
        report = check(repo, read_data=read_data, subset=subset, say=say)
        record_result(repo, report, read_data=read_data)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(f"checked    {report.snapshots} snapshots, {report.packs} packs, "
              f"{report.chunks} chunk references"
              + (f"; read {report.packs_read} packs ({human_bytes(report.bytes_read)})"
                 if report.packs_read else ""))
        print(f"cache      {report.cache}")
        for problem in report.problems:
            print(f"problem    {problem}")
        for label, paths in report.damaged.items():
            print(f"damaged    {label}: {len(paths)} path(s)")
            for path in paths:
                print(f"           {path}")
        print("repository is sound" if report.sound else "repository is DAMAGED")
    return EXIT_OK if report.sound else EXIT_WARNINGS


def _subset(text: str) -> tuple[int, int]:
    """`--read-data-subset K/N`."""
    k, sep, n = text.partition("/")
    if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise ConfigError(f"--read-data-subset {text!r}: expected K/N "
                          "with 1 <= K <= N, e.g. 1/7")
    return int(k), int(n)


def cmd_prune(args: argparse.Namespace) -> int:
    """`histfs prune`."""
    from writer.prune import prune

    seconds(args.lock_wait, "--lock-wait")
    cfg = file_config(args)
    with open_repository(repo_location(args, cfg)) as repo:
        policy = _policy(args, cfg)
        host = args.host or cfg.host
        if host is None and args.config:
            host = short_host_name()
        items = prune(repo, policy, [host] if host else None, dry_run=args.dry_run,
                      lock_wait=args.lock_wait)
    damaged = [i for i in items if i.damaged]
    for item in damaged:
        log.warning(f"snapshot {item.ref.host}/{item.ref.name} is damaged: {item.damaged}")
    status = EXIT_WARNINGS if damaged else EXIT_OK
    if args.json:
        print(json.dumps([{"host": i.ref.host, "snapshot": i.ref.name,
                           "keep": i.decision.keep, "reasons": i.decision.reasons,
                           "damaged": i.damaged}
                          for i in items], indent=2))
        return status
    removed = 0
    for item in items:
        if item.decision.keep:
            verb = "keep"
        else:
            verb = "would remove" if args.dry_run else "removed"
            removed += 1
        print(f"{verb:<13}{item.ref.host:<16} {item.ref.name:<22} "
              f"{', '.join(item.decision.reasons)}".rstrip()
              + (f"  damaged: {item.damaged}" if item.damaged else ""))
    kept = len(items) - removed
    if args.dry_run:
        log.status(f"dry run: {kept} kept, {removed} would be removed")
    else:
        log.status(f"{kept} kept, {removed} removed"
                   + ("; run histfs gc to reclaim their space" if removed else ""))
    return status


def cmd_forget(args: argparse.Namespace) -> int:
    """`histfs forget [--host H] [--dry-run] SNAPSHOT...`."""
    from writer.prune import forget

    seconds(args.lock_wait, "--lock-wait")
    cfg = file_config(args)
    with open_repository(repo_location(args, cfg)) as repo:
        refs = forget(repo, config_host(args, cfg), args.snapshots, dry_run=args.dry_run,
                      lock_wait=args.lock_wait)
    if args.json:
        print(json.dumps([{"host": r.host, "snapshot": r.name, "removed": not args.dry_run}
                          for r in refs], indent=2))
        return EXIT_OK
    verb = "would remove" if args.dry_run else "removed"
    for ref in refs:
        print(f"{verb:<13}{ref.host:<16} {ref.name}")
    if args.dry_run:
        log.status(f"dry run: {len(refs)} would be removed")
    else:
        log.status(f"{len(refs)} removed; run histfs gc to reclaim their space")
    return EXIT_OK


def _policy(args: argparse.Namespace, cfg: FileConfig) -> Policy:
    """The configuration's retention policy with the `--keep-*` options
    put over it."""
    overrides: dict[str, Any] = {}
    for period in _PERIODS:
        value = getattr(args, f"keep_{period}")
        if value is not None:
            if value < 0:
                raise ConfigError(f"--keep-{period}: must be 0 or more, got {value}")
            overrides[f"keep_{period}"] = value
    if args.keep_within is not None:
        overrides["keep_within"] = parse_duration(args.keep_within, "--keep-within")
    if args.keep_age:
        overrides["keep_ages"] = tuple(parse_duration(a, "--keep-age") for a in args.keep_age)
    return replace(cfg.retention or Policy(), **overrides)


def _parse_share(text: str) -> float:
    value = text.strip()
    try:
        share = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        share = -1.0
    if not 0.0 <= share < 1.0:
        raise ConfigError(f"--max-unused {text!r}: expected a share such as 10% (0% to 99%)")
    return share


def cmd_gc(args: argparse.Namespace) -> int:
    """`histfs gc`."""
    from writer.gc import collect

    share = _parse_share(args.max_unused)
    seconds(args.wait, "--wait")
    seconds(args.grace, "--grace")

    def say(line: str) -> None:
        if not args.json:
            log.notice(line)

    with open_repository(repo_location(args)) as repo:
        result = collect(repo, max_unused=share, wait=args.wait, grace=args.grace, say=say)
    status = EXIT_WARNINGS if result.problems else EXIT_OK
    if args.json:
        print(json.dumps({**{k: v for k, v in vars(result).items()},
                          "bytes_freed": result.bytes_freed, "exit_status": status}, indent=2))
        return status
    for problem in result.problems:
        log.warning(problem)
    print(f"scanned    {result.snapshots} snapshots, {result.packs} packs")
    print(f"deleted    {result.packs_deleted} packs ({human_bytes(result.bytes_deleted)})")
    print(f"rewrote    {result.packs_rewritten} packs into {result.packs_written} new "
          f"({human_bytes(result.bytes_written)}), {result.snapshots_relocated} snapshot "
          "indexes updated")
    if result.packs_deferred:
        print(f"deferred   {result.packs_deferred} packs ({human_bytes(result.bytes_deferred)}) "
              "wait for backups that started before them")
    if result.tmp_deleted:
        print(f"cleaned    {result.tmp_deleted} leftover temporary files "
              f"({human_bytes(result.tmp_bytes_deleted)})")
    print(f"freed      {human_bytes(max(0, result.bytes_freed))}")
    return status


def cmd_hold(args: argparse.Namespace) -> int:
    """`histfs hold`."""
    from writer.prune import hold

    cfg = file_config(args)
    with open_repository(repo_location(args, cfg)) as repo:
        host = args.host or cfg.host or only_host(repo)
        ref, placed = hold(repo, host, args.snapshot, args.reason)
    print(f"held       {ref.host}/{ref.name} ({placed.reason})")
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    """`histfs release`: succeeds, with a note, when there is nothing left to
    release (the hold was released already, or the snapshot has been pruned
    since), so that a tape job can simply run it again after an error."""
    from writer.prune import release

    cfg = file_config(args)
    with open_repository(repo_location(args, cfg)) as repo:
        host = args.host or cfg.host or only_host(repo)
        done = release(repo, host, args.snapshot, args.reason)
    ref = done.ref
    if not done.holds:
        why = (f"{ref.host}/{ref.name} has no hold with reason {args.reason!r}"
               if done.exists else f"there is no snapshot {ref.host}/{ref.name} (pruned?)")
        log.notice(f"{why}: nothing to release")
        return EXIT_OK
    print(f"released   {ref.host}/{ref.name} ({args.reason}"
          + (f", {len(done.holds)} holds" if len(done.holds) > 1 else "") + ")")
    return EXIT_OK
