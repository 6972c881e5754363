"""The `histfs` command line: parse, call into the packages, print.

Each subcommand imports what it needs inside its handler, so `histfs backup`
never loads the FUSE code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import socket
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from histfs import log
from index.errors import (
    ConfigError,
    HistfsError,
    HookFailed,
    SnapshotDamaged,
)
from index.repository import Repository, as_location

if TYPE_CHECKING:
    from histfs.config import FileConfig
    from index.snapshot_meta import SnapshotMeta
    from writer.stats import BackupStats

EXIT_OK, EXIT_WARNINGS, EXIT_FAILED = 0, 1, 2


def _die(message: str) -> int:
    log.error(message)
    return EXIT_FAILED


def _seconds(value: float, option: str) -> float:
    """A time in seconds from the command line: finite and not negative
    (float() also reads "nan", "inf" and "-1")."""
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{option}: expected seconds, 0 or more, got {value}")
    return value


def _repo_path(args: argparse.Namespace, from_config: Path | str | None = None) -> Path | str:
    if from_config is None and getattr(args, "config", None):
        from histfs.config import load_config

        from_config = load_config(Path(args.config)).repository
    value = args.repo or os.environ.get("HISTFS_REPO") or from_config
    if not value:
        raise ConfigError("no repository given: use --repo, HISTFS_REPO or a config file")
    return as_location(value)


def _open(location: Path | str) -> Repository:
    from histfs.passphrase import asked_for

    return Repository.open(location, passphrase=asked_for(location))


def cmd_init(args: argparse.Namespace) -> int:
    """`histfs init [--encryption repokey|none] REPO`."""
    from histfs.passphrase import new_passphrase

    path = as_location(args.path)
    repo = Repository.init(path, args.encryption,
                           passphrase=lambda: new_passphrase(str(path), for_init=True),
                           endpoint=args.endpoint)
    how = "encrypted with a key in the repository, protected by your passphrase" \
        if repo.config.encrypted else "not encrypted"
    print(f"created histfs repository {repo.root} (format {repo.config.version}, {how})")
    if repo.config.encrypted:
        print("keep the passphrase safe, and a copy of the key: "
              f"histfs key export --repo {repo.root} FILE")
    return EXIT_OK


def cmd_copy(args: argparse.Namespace) -> int:
    """`histfs copy --from SRC --to DST [--host H] [SNAPSHOT ...]`."""
    from histfs.passphrase import from_environment, passphrase_for
    from writer.copy import copy_snapshots

    source = _open(as_location(args.source))
    target_at = as_location(args.target)

    def target_passphrase() -> str:
        # Another repository may have another passphrase.
        return from_environment("HISTFS_TO_PASSPHRASE", "HISTFS_TO_PASSPHRASE_FILE") \
            or passphrase_for(str(target_at))

    target = Repository.open(target_at, passphrase=target_passphrase)
    try:
        quiet = args.json or not sys.stderr.isatty()
        result = copy_snapshots(source, target, args.host, args.snapshots or None,
                                say=(lambda s: None) if quiet else
                                (lambda s: print(s, file=sys.stderr)))
    finally:
        source.close()
        target.close()
    if args.json:
        print(json.dumps({
            "copied": [f"{r.host}/{r.name}" for r in result.copied],
            "skipped": [f"{r.host}/{r.name}" for r in result.skipped],
            "chunks": result.chunks, "chunks_added": result.chunks_added,
            "bytes_added": result.bytes_added,
        }))
    else:
        print(f"copied {len(result.copied)} snapshot(s), {len(result.skipped)} already "
              f"there; {result.chunks_added} of {result.chunks} chunks were new "
              f"({result.bytes_added / 1e6:.1f} MB)")
    return EXIT_OK


def cmd_key(args: argparse.Namespace) -> int:
    """`histfs key export|import|change-passphrase`."""
    from histfs.passphrase import asked_for, new_passphrase
    from index.repository import import_key

    root = _repo_path(args)
    if args.key_command == "import":
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
        import_key(root, data, passphrase=asked_for(root))
        print(f"key of {root} restored from {args.file}")
        return EXIT_OK
    repo = _open(root)
    try:
        if args.key_command == "export":
            data = repo.export_key()
            # The copy is as secret as the passphrase that protects it.
            fd = os.open(args.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            print(f"key of {root} written to {args.file} (still protected by the passphrase)")
        else:
            repo.change_passphrase(new_passphrase(str(root), for_init=False))
            print(f"passphrase of {root} changed")
    finally:
        repo.close()
    return EXIT_OK


@dataclass
class _BackupRun:
    """What the metrics file of a backup run needs, filled in as it goes."""

    metrics_file: Path | None
    host: str | None
    stats: BackupStats
    repo: Repository | None = None
    code: int = EXIT_FAILED


def cmd_backup(args: argparse.Namespace) -> int:
    """`histfs backup`. Every run that got as far as reading its options
    writes its metrics file, whatever stops it (the alert for a failed
    backup must fire for a wrong passphrase or a failing hook too)."""
    from histfs.config import FileConfig, load_config
    from writer.stats import BackupStats

    run = _BackupRun(Path(args.metrics_file) if args.metrics_file else None, args.host,
                     BackupStats())
    try:
        cfg = load_config(Path(args.config)) if args.config else FileConfig()
        run.metrics_file = run.metrics_file or cfg.metrics_file
        run.host = args.host or cfg.host or _this_host()
        _seconds(args.lock_wait, "--lock-wait")
        run.repo = _open(_repo_path(args, cfg.repository))
        run.code = _backup(args, cfg, run)
        return run.code
    finally:
        if run.metrics_file is not None:
            _write_backup_metrics(run)


def _this_host() -> str:
    return socket.gethostname().split(".")[0]


def _backup(args: argparse.Namespace, cfg: FileConfig, run: _BackupRun) -> int:
    """Hooks and the backup itself; the exit status."""
    from histfs.config import check_compression, parse_part_args
    from histfs.hooks import (
        STATUS_FAILED,
        STATUS_SUCCESS,
        STATUS_WARNINGS,
        HookResult,
        hook_env,
        run_hook,
    )
    from writer.backup import Part
    from writer.stats import BackupStats

    repo, host = run.repo, run.host
    assert repo is not None and host is not None
    level = cfg.compression if args.compression is None else args.compression
    level = check_compression(3 if level is None else level)
    part_cfgs = parse_part_args(args.parts, args.exclude) if args.parts else cfg.parts
    if not part_cfgs:
        raise ConfigError("no parts to back up: give NAME=PATH arguments or [[part]] in --config")
    parts = [Part(p.name, p.path, p.exclude, p.enabled, p.chunk_size) for p in part_cfgs]
    if cfg.min_interval is not None and not args.force:
        skip = _inside_min_interval(repo, host, cfg.min_interval)
        if skip is not None:
            if args.json:
                print(json.dumps({"repository": str(repo.root), "host": host, "snapshot": None,
                                  "skipped": skip, "exit_status": EXIT_OK}, indent=2))
            else:
                log.notice(skip)
            return EXIT_OK
    hooks = cfg.hooks
    mountpoint = str(cfg.mountpoint) if cfg.mountpoint else None

    def hook(name: str, command: str | None, snapshot: str | None,
             status: str | None) -> HookResult | None:
        if not command:
            return None
        env = hook_env(str(repo.root), host, snapshot, status, mountpoint)
        return run_hook(name, command, env, hooks.timeout, log.notice)

    before = hook("before", hooks.before, None, None)
    if before is not None and not before.ok:
        hook("after", hooks.after, None, STATUS_FAILED)
        raise HookFailed(f"{before.problem}: backup not started")
    # The backup's duration does not count the before hook's.
    stats = run.stats = BackupStats()
    try:
        snapshot, code = _backup_and_report(args, repo, host, level, parts, stats)
    except BaseException:
        hook("after", hooks.after, None, STATUS_FAILED)
        raise
    state = STATUS_SUCCESS if code == EXIT_OK else (
        STATUS_WARNINGS if code == EXIT_WARNINGS else STATUS_FAILED)
    results = [hook("after", hooks.after, snapshot, state)]
    if snapshot is not None:
        results.append(hook("after_success", hooks.after_success, snapshot, state))
    for result in results:
        if result is not None and not result.ok:
            log.warning(result.problem or "a hook failed")
            code = max(code, EXIT_WARNINGS)
    return code


def _inside_min_interval(repo: Repository, host: str, interval: timedelta) -> str | None:
    """Why a backup is skipped now, or None when it is due."""
    from index.names import snapshot_time
    from writer.retention import format_duration

    latest = repo.latest(host)
    if latest is None:
        return None
    age = datetime.now(UTC) - snapshot_time(latest.name)
    if age >= interval:
        return None
    return (f"skipped: the last snapshot {host}/{latest.name} is {_age(age)} old, "
            f"inside min_interval {format_duration(interval)} (--force backs up anyway)")


def _age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"


def _backup_and_report(args: argparse.Namespace, repo: Repository, host: str, level: int,
                       parts: list[Any], stats: BackupStats) -> tuple[str | None, int]:
    """Run the backup and print its summary: (snapshot name, exit status)."""
    from histfs.output import Progress, human_bytes
    from writer.backup import run_backup

    def render() -> str:
        rate = stats.bytes_read / stats.duration if stats.duration > 0 else 0
        return (f"{stats.files} files, {human_bytes(stats.bytes_read)} read "
                f"({human_bytes(rate)}/s), {human_bytes(stats.bytes_added)} added")

    show = sys.stderr.isatty() and not args.json and not args.quiet
    with Progress(render) if show else contextlib.nullcontext():
        result = run_backup(repo, host, parts, level=level, lock_wait=args.lock_wait,
                            stats=stats)
    summary: dict[str, Any] = {
        "repository": str(repo.root),
        "host": host,
        "snapshot": result.snapshot.name if result.snapshot else None,
        "exit_status": result.exit_status,
        **stats.as_dict(),
    }
    name = result.snapshot.name if result.snapshot else None
    log.notice(f"backup of {host}: snapshot {summary['snapshot']}, exit status "
               f"{result.exit_status}, {stats.files_new} new, {stats.files_changed} changed, "
               f"{stats.files_failed} failed files, {stats.bytes_read} bytes read, "
               f"{stats.bytes_added} added, {stats.duration:.1f} s", to_stderr=False)
    for w in stats.warnings[:50]:
        log.warning(w)
    if len(stats.warnings) > 50:
        log.warning(f"… and {len(stats.warnings) - 50} more")
    if args.json:
        print(json.dumps(summary, indent=2))
        return name, result.exit_status
    if args.quiet:
        return name, result.exit_status
    d = stats.duration
    print(f"snapshot   {host}/{summary['snapshot']}")
    print(f"files      {stats.files_new} new, {stats.files_changed} changed, "
          f"{stats.files_unchanged} unchanged, {stats.files_failed} failed"
          f" ({stats.dirs} directories, {stats.other} other)")
    print(f"read       {human_bytes(stats.bytes_read)} of {human_bytes(stats.logical_bytes)}")
    print(f"added      {human_bytes(stats.bytes_added)} in {stats.chunks_added} new chunks "
          "(after deduplication and compression)")
    print(f"duration   {d:.1f} s ({human_bytes(stats.bytes_read / d if d else 0)}/s)")
    if stats.warnings:
        print(f"warnings   {len(stats.warnings)} (see above)")
    return name, result.exit_status


def _write_backup_metrics(run: _BackupRun) -> None:
    from histfs.metrics import backup_metrics, write_atomically

    path = run.metrics_file
    assert path is not None
    try:
        previous = path.read_text(errors="replace")
    except (OSError, ValueError):
        previous = None
    try:
        write_atomically(path, backup_metrics(run.repo, run.host or _this_host(), run.stats,
                                              run.code, previous=previous))
    except (OSError, HistfsError) as exc:
        # The backup's own outcome matters more than its report.
        log.warning(f"cannot write metrics to {path}: {exc}")


def cmd_report(args: argparse.Namespace) -> int:
    """`histfs report --output FILE`: a self-contained HTML page."""
    from histfs.config import FileConfig, load_config
    from histfs.metrics import write_atomically
    from histfs.report import collect, damaged_snapshots, render

    cfg = load_config(Path(args.config)) if args.config else FileConfig()
    repo = _open(_repo_path(args, cfg.repository))
    try:
        points = collect(repo)
        page = render(repo, cfg.retention, points)
    finally:
        repo.close()
    write_atomically(Path(args.output), page)
    damaged = damaged_snapshots(points)
    for m in damaged:
        log.warning(f"snapshot {m.host}/{m.name} is damaged: {m.damaged}")
    log.status(f"report written to {args.output}")
    return EXIT_WARNINGS if damaged else EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    """`histfs completion bash|zsh`: a completion script on stdout."""
    from histfs.completion import bash_script, hosts_in, zsh_script
    from histfs.parser import build_parser

    if args.shell == "hosts":  # called by the scripts while completing --host
        print(" ".join(hosts_in(args.words)))
    elif args.shell == "bash":
        sys.stdout.write(bash_script(build_parser()))
    else:
        sys.stdout.write(zsh_script(build_parser()))
    return EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    """`histfs metrics`: the repository's metrics in Prometheus text format."""
    from histfs.metrics import repository_metrics

    repo = _open(_repo_path(args))
    try:
        sys.stdout.write(repository_metrics(repo))
    finally:
        repo.close()
    return EXIT_OK


def cmd_snapshots(args: argparse.Namespace) -> int:
    """`histfs snapshots`: every snapshot, a damaged one flagged (exit 1)."""
    from histfs.output import human_bytes
    from index.holds import held_snapshots
    from index.snapshot_meta import snapshot_metas

    with _open(_repo_path(args)) as repo:
        metas = snapshot_metas(repo, args.host)
        holds = {host: {name: [h.reason for h in found] for name, found
                        in held_snapshots(repo.storage, host).items()}
                 for host in dict.fromkeys(m.host for m in metas)}
    held = [holds[m.host].get(m.name, []) for m in metas]
    for m in metas:
        if m.damaged:
            log.warning(f"snapshot {m.host}/{m.name} is damaged: {m.damaged}")
    status = EXIT_WARNINGS if any(m.damaged for m in metas) else EXIT_OK
    if args.json:
        print(json.dumps([_snapshot_row(m, h) for m, h in zip(metas, held, strict=True)],
                         indent=2))
        return status
    if not metas:
        print("no snapshots")
        return status
    print(f"{'host':<16} {'snapshot':<22} {'files':>9} {'size':>10} {'added':>10}  parts")
    for m, h in zip(metas, held, strict=True):
        if m.damaged:
            figures = f"{'-':>9} {'-':>10} {'-':>10}  damaged: {m.damaged}"
        else:
            figures = (f"{m.files or 0:>9} {human_bytes(m.logical_bytes or 0):>10} "
                       f"{human_bytes(m.bytes_added or 0):>10}  {','.join(m.parts)}")
        print(f"{m.host:<16} {m.name:<22} {figures}"
              + (f"  held: {', '.join(h)}" if h else ""))
    return status


def _snapshot_row(m: SnapshotMeta, holds: list[str]) -> dict[str, object]:
    """A snapshot in `histfs snapshots --json`: what the name tells of a
    damaged one and no figure made up."""
    row: dict[str, object] = {"holds": holds, "host": m.host, "name": m.name}
    if m.damaged:
        return {**row, "time": m.time.isoformat(), "parts": [], "files": None,
                "logical_bytes": None, "bytes_added": None, "damaged": m.damaged}
    return {**row, "time": m.recorded_time, "parts": list(m.parts), "files": m.files or 0,
            "logical_bytes": m.logical_bytes or 0, "bytes_added": m.bytes_added or 0,
            "damaged": None}


def cmd_restore(args: argparse.Namespace) -> int:
    """`histfs restore`."""
    from histfs.output import Progress, human_bytes
    from index.names import parse_when
    from index.restore import Restorer

    repo = _open(_repo_path(args))
    items = list(args.items)
    at = parse_when(args.at) if args.at else None
    name = None if at is not None or not items else items.pop(0)
    if at is None and name is None:
        raise ConfigError("name a snapshot (or 'last'), or give --at DATE")
    ref = repo.select(args.host, name, at)
    how = f" (the newest at or before {at:%Y-%m-%d %H:%M:%S} UTC)" if at else ""
    log.status(f"restoring {ref.host}/{ref.name}{how} into {args.target}")
    with repo.open_snapshot(ref) as snap:
        restorer = Restorer(snap, Path(args.target), overwrite=args.overwrite)
        stats = restorer.stats

        def render() -> str:
            rate = stats.bytes / stats.duration if stats.duration > 0 else 0
            return (f"{stats.files} files, {human_bytes(stats.bytes)} "
                    f"({human_bytes(rate)}/s)")

        paths = [os.fsencode(p) for p in items]
        show = sys.stderr.isatty() and not args.json
        with Progress(render) if show else contextlib.nullcontext():
            restorer.restore(paths)
    for line in stats.errors[:50]:
        log.error(line)
    for line in stats.warnings[:50]:
        log.warning(line)
    status = EXIT_FAILED if stats.errors else EXIT_WARNINGS if stats.warnings else EXIT_OK
    if args.json:
        print(json.dumps({"host": ref.host, "snapshot": ref.name, "target": args.target,
                          "exit_status": status, **stats.as_dict()}, indent=2))
    else:
        d = stats.duration
        print(f"restored   {stats.files} files, {stats.dirs} directories, {stats.other} other, "
              f"{human_bytes(stats.bytes)} in {d:.1f} s "
              f"({human_bytes(stats.bytes / d if d else 0)}/s)")
        if stats.errors:
            print(f"failed     {len(stats.errors)} (see above)")
    return status


def cmd_check(args: argparse.Namespace) -> int:
    """`histfs check`."""
    from histfs.output import human_bytes
    from index.check import check, record_result

    subset = None
    if args.read_data_subset:
        k, sep, n = args.read_data_subset.partition("/")
        if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
            raise ConfigError(f"--read-data-subset {args.read_data_subset!r}: expected K/N "
                              "with 1 <= K <= N, e.g. 1/7")
        subset = (int(k), int(n))
    repo = _open(_repo_path(args))
    quiet = args.json

    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr)

    report = check(repo, read_data=args.read_data or subset is not None, subset=subset,
                   say=say)
    record_result(repo, report, read_data=bool(args.read_data or subset))
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


def cmd_versions(args: argparse.Namespace) -> int:
    """`histfs versions`."""
    from histfs.output import human_bytes
    from index.history import versions

    repo = _open(_repo_path(args))
    host = args.host or _only_host(repo)
    damaged: list[SnapshotDamaged] = []
    found = versions(repo, host, os.fsencode(args.path.strip("/")), damaged.append)
    for problem in damaged:
        log.warning(f"{problem}; left out")
    status = EXIT_OK if found and not damaged else EXIT_WARNINGS
    if args.json:
        print(json.dumps([{"snapshot": v.snapshot, "type": v.kind.name.lower(), "size": v.size,
                           "mtime_ns": v.mtime_ns, "changed": v.changed} for v in found],
                         indent=2))
        return status
    if not found:
        print(f"{args.path}: in no {'readable ' if damaged else ''}snapshot of {host}",
              file=sys.stderr)
        return status
    for v in found:
        when = datetime.fromtimestamp(v.mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{v.snapshot:<22} {human_bytes(v.size):>10}  {when}  "
              f"{'changed' if v.changed else ''}".rstrip())
    return status


def cmd_diff(args: argparse.Namespace) -> int:
    """`histfs diff`."""
    from index.history import diff

    repo = _open(_repo_path(args))
    host = args.host or _only_host(repo)
    a = repo.select(host, args.first)
    b = repo.select(host, args.second)
    changes: list[tuple[str, bytes]] = []
    if a != b:  # a snapshot does not differ from itself
        with repo.open_snapshot(a) as snap_a, repo.open_snapshot(b) as snap_b:
            changes = list(diff(snap_a, snap_b))
    if args.json:
        print(json.dumps([{"status": s, "path": os.fsdecode(p)} for s, p in changes], indent=2))
    else:
        for status, path in changes:
            print(f"{status:<8} {path.decode('utf-8', 'backslashreplace')}")
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """`histfs prune`."""
    from dataclasses import replace

    from histfs.config import FileConfig, load_config, parse_duration
    from writer.prune import prune
    from writer.retention import Policy

    _seconds(args.lock_wait, "--lock-wait")
    cfg = load_config(Path(args.config)) if args.config else FileConfig()
    repo = _open(_repo_path(args, cfg.repository))
    policy = cfg.retention or Policy()
    overrides: dict[str, Any] = {}
    for period in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        value = getattr(args, f"keep_{period}")
        if value is not None:
            if value < 0:
                raise ConfigError(f"--keep-{period}: must be 0 or more, got {value}")
            overrides[f"keep_{period}"] = value
    if args.keep_within is not None:
        overrides["keep_within"] = parse_duration(args.keep_within, "--keep-within")
    if args.keep_age:
        overrides["keep_ages"] = tuple(parse_duration(a, "--keep-age") for a in args.keep_age)
    policy = replace(policy, **overrides)
    host = args.host or cfg.host
    if host is None and args.config:
        host = socket.gethostname().split(".")[0]
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
    from histfs.output import human_bytes
    from writer.gc import collect

    share = _parse_share(args.max_unused)
    _seconds(args.wait, "--wait")
    _seconds(args.grace, "--grace")
    repo = _open(_repo_path(args))

    def say(line: str) -> None:
        if not args.json:
            log.notice(line)

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


def _hold_target(args: argparse.Namespace) -> tuple[Path | str, str | None]:
    """The repository and the host (if given) that `hold` and `release` mean."""
    from histfs.config import FileConfig, load_config

    cfg = load_config(Path(args.config)) if args.config else FileConfig()
    return _repo_path(args, cfg.repository), args.host or cfg.host


def cmd_hold(args: argparse.Namespace) -> int:
    """`histfs hold`."""
    from writer.prune import hold

    location, host = _hold_target(args)
    with _open(location) as repo:
        ref, placed = hold(repo, host or _only_host(repo), args.snapshot, args.reason)
    print(f"held       {ref.host}/{ref.name} ({placed.reason})")
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    """`histfs release`: succeeds, with a note, when there is nothing left to
    release (the hold was released already, or the snapshot has been pruned
    since), so that a tape job can simply run it again after an error."""
    from writer.prune import release

    location, host = _hold_target(args)
    with _open(location) as repo:
        done = release(repo, host or _only_host(repo), args.snapshot, args.reason)
    ref = done.ref
    if not done.holds:
        why = (f"{ref.host}/{ref.name} has no hold with reason {args.reason!r}"
               if done.exists else f"there is no snapshot {ref.host}/{ref.name} (pruned?)")
        log.notice(f"{why}: nothing to release")
        return EXIT_OK
    print(f"released   {ref.host}/{ref.name} ({args.reason}"
          + (f", {len(done.holds)} holds" if len(done.holds) > 1 else "") + ")")
    return EXIT_OK


def _only_host(repo: Repository) -> str:
    hosts = repo.hosts()
    if len(hosts) == 1:
        return hosts[0]
    local = socket.gethostname().split(".")[0]
    if local in hosts:
        return local
    raise ConfigError(f"several hosts in the repository ({', '.join(hosts)}): use --host")


def cmd_mount(args: argparse.Namespace) -> int:
    """`histfs mount`."""
    from fusefs.mount import MountOptions, mount
    from histfs.passphrase import asked_for

    location = _repo_path(args)
    return mount(MountOptions(
        repo=location, passphrase=asked_for(location), mountpoint=Path(args.mountpoint),
        host=args.host,
        allow_other=args.allow_other, last_symlink=args.last_symlink, debug=args.debug,
        foreground=args.foreground, log_file=Path(args.log_file) if args.log_file else None,
        pid_file=Path(args.pid_file) if args.pid_file else None,
    ))


def cmd_umount(args: argparse.Namespace) -> int:
    """`histfs umount`."""
    from fusefs.mount import umount

    return umount(Path(args.mountpoint), lazy=args.lazy)


@contextlib.contextmanager
def _broken_pipe_ok() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `histfs` command."""
    from histfs.completion import commands_of
    from histfs.fstab import is_helper_call, mount_arguments
    from histfs.parser import build_parser

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if is_helper_call(argv, set(commands_of(parser))):
        # Called by mount.fuse for an fstab line of type fuse.histfs.
        try:
            argv = mount_arguments(argv)
        except HistfsError as exc:
            return _die(str(exc))
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    # `histfs --quiet backup` and `histfs backup --quiet` are one thing, and
    # so are the two places of --log-file.
    quiet = args.global_quiet or getattr(args, "quiet", False)
    log_file = args.global_log_file or getattr(args, "command_log_file", None)
    if args.global_log_file and getattr(args, "command_log_file", None) not in (
            None, args.global_log_file):
        return _die("--log-file is given twice, with different files")
    try:
        log.configure(log_file, quiet)
    except OSError as exc:
        return _die(f"cannot open the log file {log_file}: {exc.strerror}")
    if quiet:
        if hasattr(args, "quiet"):
            args.quiet = True
        if not getattr(args, "json", False):
            # Summaries go to stdout: nothing there for cron to mail. JSON
            # was asked for by name, and is kept.
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the whole run
    try:
        with _broken_pipe_ok():
            return func(args)
    except HistfsError as exc:
        return _die(str(exc))
    except KeyboardInterrupt:
        return _die("interrupted")
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return _die(f"{exc.strerror or exc}{where}")
    except Exception as exc:
        # A bug. Python would exit with 1, which means "finished with
        # warnings" here: a run that broke must still count as failed.
        traceback.print_exc()
        return _die(f"unexpected error: {exc!r}")


if __name__ == "__main__":
    sys.exit(main())
