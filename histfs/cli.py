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
    SnapshotNotFound,
)
from index.private import write_private
from index.repository import Repository, SnapshotRef, as_location

if TYPE_CHECKING:
    from histfs.config import FileConfig
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


def cmd_init(args: argparse.Namespace) -> int:
    """`histfs init [--encryption repokey|none] REPO`."""
    from index.passphrase import new_passphrase

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
    from index.passphrase import from_environment, passphrase_for
    from writer.copy import copy_snapshots

    source = Repository.open(as_location(args.source))
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
    from index.passphrase import new_passphrase
    from index.repository import import_key

    root = _repo_path(args)
    if args.key_command == "import":
        try:
            data = Path(args.file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read {args.file}: {exc.strerror}") from None
        import_key(root, data)
        print(f"key of {root} restored from {args.file}")
        return EXIT_OK
    repo = Repository.open(root)
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
        run.repo = Repository.open(_repo_path(args, cfg.repository))
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
    repo = Repository.open(_repo_path(args, cfg.repository))
    try:
        points = collect(repo)
        page = render(repo, cfg.retention, points)
    finally:
        repo.close()
    write_atomically(Path(args.output), page)
    damaged = damaged_snapshots(points)
    for host, name, reason in damaged:
        log.warning(f"snapshot {host}/{name} is damaged: {reason}")
    log.status(f"report written to {args.output}")
    return EXIT_WARNINGS if damaged else EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    """`histfs completion bash|zsh`: a completion script on stdout."""
    from histfs.completion import bash_script, hosts_in, zsh_script

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

    repo = Repository.open(_repo_path(args))
    try:
        sys.stdout.write(repository_metrics(repo))
    finally:
        repo.close()
    return EXIT_OK


def cmd_snapshots(args: argparse.Namespace) -> int:
    """`histfs snapshots`: every snapshot, a damaged one flagged (exit 1)."""
    from histfs.output import human_bytes
    from index.holds import held_snapshots
    from index.names import snapshot_time

    repo = Repository.open(_repo_path(args))
    rows: list[dict[str, Any]] = []
    holds: dict[str, dict[str, list[str]]] = {}
    for ref in repo.snapshots(args.host):
        if ref.host not in holds:
            holds[ref.host] = {name: [h.reason for h in found] for name, found
                               in held_snapshots(repo.storage, ref.host).items()}
        row: dict[str, Any] = {"holds": holds[ref.host].get(ref.name, []),
                               "host": ref.host, "name": ref.name}
        try:
            with repo.open_snapshot(ref) as snap:
                m = snap.meta
        except SnapshotNotFound:
            continue  # pruned while listed
        except SnapshotDamaged as exc:
            # What the name tells is all there is: no figures are made up.
            rows.append({**row, "time": snapshot_time(ref.name).isoformat(), "parts": [],
                         "files": None, "logical_bytes": None, "bytes_added": None,
                         "damaged": exc.reason})
            continue
        rows.append({
            **row,
            "time": m.get("time"),
            "parts": [p["name"] for p in m.get("parts", [])],
            "files": m.get("files", 0),
            "logical_bytes": m.get("logical_bytes", 0),
            "bytes_added": m.get("bytes_added", 0),
            "damaged": None,
        })
    damaged = [r for r in rows if r["damaged"]]
    for r in damaged:
        log.warning(f"snapshot {r['host']}/{r['name']} is damaged: {r['damaged']}")
    status = EXIT_WARNINGS if damaged else EXIT_OK
    if args.json:
        print(json.dumps(rows, indent=2))
        return status
    if not rows:
        print("no snapshots")
        return status
    print(f"{'host':<16} {'snapshot':<22} {'files':>9} {'size':>10} {'added':>10}  parts")
    for r in rows:
        if r["damaged"]:
            figures = f"{'-':>9} {'-':>10} {'-':>10}  damaged: {r['damaged']}"
        else:
            figures = (f"{r['files']:>9} {human_bytes(r['logical_bytes']):>10} "
                       f"{human_bytes(r['bytes_added']):>10}  {','.join(r['parts'])}")
        print(f"{r['host']:<16} {r['name']:<22} {figures}"
              + (f"  held: {', '.join(r['holds'])}" if r["holds"] else ""))
    return status


def cmd_restore(args: argparse.Namespace) -> int:
    """`histfs restore`."""
    from histfs.output import Progress, human_bytes
    from index.names import parse_when
    from index.restore import Restorer

    repo = Repository.open(_repo_path(args))
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
    from index.check import check

    subset = None
    if args.read_data_subset:
        k, sep, n = args.read_data_subset.partition("/")
        if not (sep and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
            raise ConfigError(f"--read-data-subset {args.read_data_subset!r}: expected K/N "
                              "with 1 <= K <= N, e.g. 1/7")
        subset = (int(k), int(n))
    repo = Repository.open(_repo_path(args))
    quiet = args.json

    def say(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr)

    report = check(repo, read_data=args.read_data or subset is not None, subset=subset,
                   say=say)
    # Remembered on this machine for `histfs report`.
    with contextlib.suppress(OSError):
        write_private(repo.cache_dir() / "last-check.json", json.dumps({
            "time": datetime.now(UTC).isoformat(timespec="seconds"), "sound": report.sound,
            "read_data": bool(args.read_data or subset), "problems": report.problems[:20],
            "snapshots": report.snapshots, "packs": report.packs}).encode())
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

    repo = Repository.open(_repo_path(args))
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

    repo = Repository.open(_repo_path(args))
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
    repo = Repository.open(_repo_path(args, cfg.repository))
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
    repo = Repository.open(_repo_path(args))

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


def _with_hold_lock(args: argparse.Namespace, change: Callable[..., Any],
                    gone_ok: bool = False) -> tuple[SnapshotRef, Any, bool]:
    """Run `change(storage, host, name, reason)` on the snapshot the user
    named, holding the prune lock: a snapshot cannot be pruned between the
    check that it exists and the change of its holds. With `gone_ok`, a
    well-formed snapshot name of a known host that is not there (any more)
    is changed too. Returns the snapshot, what `change` returned and whether
    the snapshot exists."""
    from histfs.config import FileConfig, load_config
    from index.errors import SnapshotNotFound
    from index.names import is_snapshot_name
    from writer.prune import PRUNE_LOCK

    cfg = load_config(Path(args.config)) if args.config else FileConfig()
    repo = Repository.open(_repo_path(args, cfg.repository))
    host = args.host or cfg.host or _only_host(repo)
    lock = repo.lock(PRUNE_LOCK, f"{args.command} on {host}")
    lock.acquire(wait=300.0)
    try:
        try:
            ref, exists = repo.select(host, args.snapshot), True
        except SnapshotNotFound:
            if not (gone_ok and is_snapshot_name(args.snapshot) and host in repo.hosts()):
                raise
            ref, exists = SnapshotRef(host, args.snapshot), False
        return ref, change(repo.storage, ref.host, ref.name, args.reason), exists
    finally:
        lock.release()


def cmd_hold(args: argparse.Namespace) -> int:
    """`histfs hold`."""
    from index.holds import place_hold

    ref, hold, _ = _with_hold_lock(args, place_hold)
    print(f"held       {ref.host}/{ref.name} ({hold.reason})")
    return EXIT_OK


def cmd_release(args: argparse.Namespace) -> int:
    """`histfs release`: succeeds, with a note, when there is nothing left to
    release (the hold was released already, or the snapshot has been pruned
    since), so that a tape job can simply run it again after an error."""
    from index.holds import release_holds

    ref, released, exists = _with_hold_lock(args, release_holds, gone_ok=True)
    if not released:
        why = (f"{ref.host}/{ref.name} has no hold with reason {args.reason!r}"
               if exists else f"there is no snapshot {ref.host}/{ref.name} (pruned?)")
        log.notice(f"{why}: nothing to release")
        return EXIT_OK
    print(f"released   {ref.host}/{ref.name} ({args.reason}"
          + (f", {len(released)} holds" if len(released) > 1 else "") + ")")
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

    return mount(MountOptions(
        repo=_repo_path(args), mountpoint=Path(args.mountpoint), host=args.host,
        allow_other=args.allow_other, last_symlink=args.last_symlink, debug=args.debug,
        foreground=args.foreground, log_file=Path(args.log_file) if args.log_file else None,
        pid_file=Path(args.pid_file) if args.pid_file else None,
        cache_mb=max(0, args.cache_mb),
    ))


def cmd_umount(args: argparse.Namespace) -> int:
    """`histfs umount`."""
    from fusefs.mount import umount

    return umount(Path(args.mountpoint), lazy=args.lazy)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="histfs",
        description="Deduplicated backups of mail servers, mounted as dated directories.",
    )
    parser.add_argument("--log-file", dest="global_log_file", metavar="FILE",
                        help="also append every message, timestamped, to FILE")
    parser.add_argument("--quiet", dest="global_quiet", action="store_true",
                        help="print only warnings and errors (for cron)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="create a repository")
    p.add_argument("path", help="directory for the new repository (absent or empty), "
                                "or s3://BUCKET/PREFIX")
    p.add_argument("--endpoint", metavar="URL",
                   help="S3 endpoint (Ceph RGW, MinIO, ...): remembered on this machine "
                        "for the repository; default $HISTFS_S3_ENDPOINT or AWS")
    p.add_argument("--encryption", choices=["repokey", "none"], default="repokey",
                   help="repokey (default): encrypt and authenticate everything with a "
                        "key kept in the repository, protected by a passphrase; none: "
                        "store in the clear")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("report", help="write an HTML report with charts (self-contained)")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO or the config file)")
    p.add_argument("--config", help="TOML configuration file (its retention policy is shown)")
    p.add_argument("--output", required=True, metavar="FILE", help="the HTML file to write")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    p.add_argument("shell", choices=["bash", "zsh", "hosts"],
                   help="bash or zsh (hosts: used by the scripts themselves)")
    p.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_completion)

    p = sub.add_parser("metrics", help="print the repository's metrics (Prometheus format)")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    p.set_defaults(func=cmd_metrics)

    p = sub.add_parser("copy", help="copy snapshots into another repository (offsite)")
    p.add_argument("--from", dest="source", required=True, metavar="REPO",
                   help="repository to copy from")
    p.add_argument("--to", dest="target", required=True, metavar="REPO",
                   help="repository to copy into (its passphrase: "
                        "$HISTFS_TO_PASSPHRASE_FILE, else as for any repository)")
    p.add_argument("--host", help="only this host's snapshots")
    p.add_argument("snapshots", nargs="*", metavar="SNAPSHOT",
                   help="snapshot names (default: every snapshot the target lacks)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_copy)

    p = sub.add_parser("key", help="export, import or re-protect the repository key")
    key_sub = p.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    k = key_sub.add_parser("export", help="write a copy of the key (for safekeeping)")
    k.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    k.add_argument("file", help="new file to write (mode 0600)")
    k.set_defaults(func=cmd_key)
    k = key_sub.add_parser("import", help="put an exported key back into the repository")
    k.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    k.add_argument("file", help="the exported key")
    k.set_defaults(func=cmd_key)
    k = key_sub.add_parser("change-passphrase", help="protect the key with a new passphrase")
    k.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    k.set_defaults(func=cmd_key)

    p = sub.add_parser("backup", help="back up parts into a new snapshot")
    p.add_argument("parts", nargs="*", metavar="NAME=PATH",
                   help="parts to back up (replace the config file's parts)")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO or the config file)")
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("--host", help="host name of the snapshot (default: this machine's)")
    p.add_argument("--compression", type=int, help="zstd level 1-22, 0 for none (default 3)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="exclude pattern for the NAME=PATH parts (repeatable)")
    p.add_argument("--metrics-file", metavar="FILE",
                   help="write Prometheus metrics of the run here, atomically (e.g. "
                        "/var/lib/node_exporter/histfs.prom)")
    p.add_argument("--lock-wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long for another backup of the host to finish")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true",
                   help="print only warnings and errors (as histfs --quiet backup)")
    p.add_argument("--log-file", dest="command_log_file", metavar="FILE",
                   help="also append every message, timestamped, to FILE "
                        "(as histfs --log-file FILE backup)")
    p.add_argument("--force", action="store_true",
                   help="back up even inside the configured min_interval")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("prune", help="remove snapshots outside the retention policy",
                       description="Apply the retention policy ([retention] in --config, "
                       "or --keep-* options, which override it) to each host separately. "
                       "A snapshot is kept when any rule keeps it; the newest snapshot of a "
                       "host and held snapshots are always kept. Space comes back with gc.")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO or the config file)")
    p.add_argument("--config", help="TOML configuration file with a [retention] table")
    p.add_argument("--host", help="only this host (default: the config's host, else all hosts)")
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be kept (and by which rule) and removed")
    p.add_argument("--keep-last", type=int, metavar="N", help="keep the N newest snapshots")
    for period, unit in (("hourly", "hours"), ("daily", "days"), ("weekly", "ISO weeks"),
                         ("monthly", "months"), ("yearly", "years")):
        p.add_argument(f"--keep-{period}", type=int, metavar="N",
                       help=f"keep the newest snapshot of each of the N newest {unit} "
                       "that have one (UTC)")
    p.add_argument("--keep-within", metavar="DURATION",
                   help="keep every snapshot within DURATION (e.g. 2d) of the newest")
    p.add_argument("--keep-age", action="append", metavar="DURATION",
                   help="keep the newest snapshot at least DURATION older than the newest "
                   "(repeatable: --keep-age 7d --keep-age 30d)")
    p.add_argument("--lock-wait", type=float, default=60.0, metavar="SECONDS",
                   help="wait this long for another prune (default 60)")
    p.add_argument("--json", action="store_true", help="print the decisions as JSON")
    p.set_defaults(func=cmd_prune)

    p = sub.add_parser("gc", help="reclaim the space of data no snapshot uses",
                       description="Delete packs no snapshot uses and rewrite packs whose "
                       "unused share exceeds --max-unused. Safe alongside backups, prunes "
                       "and mounts; one gc at a time.")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    p.add_argument("--config", help="TOML configuration file naming the repository")
    p.add_argument("--max-unused", default="10%", metavar="SHARE",
                   help="rewrite packs with more unused space than this (default 10%%)")
    p.add_argument("--wait", type=float, default=600.0, metavar="SECONDS",
                   help="wait this long for backups that started before gc (default 600); "
                   "what they might need is then deleted by the next gc")
    p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                   help="time for mounts to switch to updated indexes before packs are "
                   "deleted (default 10)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_gc)

    for verb, what in (("hold", "keep a snapshot whatever the retention policy says"),
                       ("release", "release the holds with a reason")):
        p = sub.add_parser(verb, help=what)
        p.add_argument("snapshot", help="snapshot name, or 'last'")
        p.add_argument("--reason", required=True,
                       help="why, e.g. tape or legal (release: which holds)")
        p.add_argument("--repo", help="repository (default: $HISTFS_REPO or the config file)")
        p.add_argument("--config", help="TOML configuration file naming the repository")
        p.add_argument("--host", help="host (default: the only one, or this machine)")
        p.set_defaults(func=cmd_hold if verb == "hold" else cmd_release)

    p = sub.add_parser("snapshots", help="list snapshots")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    p.add_argument("--host", help="only this host")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_snapshots)

    p = sub.add_parser("restore", help="restore a snapshot or some of its paths",
                       description="Restore into --target, keeping each path's place "
                       "(part/dir/file) below it. SNAPSHOT is a name or 'last'; with --at "
                       "every argument is a path.")
    p.add_argument("items", nargs="*", metavar="[SNAPSHOT] PATH",
                   help="snapshot (unless --at) followed by paths; no path: everything")
    p.add_argument("--target", required=True, help="directory to restore into")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    p.add_argument("--host", help="host of the snapshot (needed when several fit)")
    p.add_argument("--at", metavar="DATE",
                   help="the newest snapshot at or before DATE (a date means its end; UTC "
                   "unless an offset is given)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("check", help="verify the repository")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    p.add_argument("--read-data", action="store_true",
                   help="also re-read and re-hash every chunk")
    p.add_argument("--read-data-subset", metavar="K/N",
                   help="re-read only the K-th of N parts of the data (e.g. $(date +%%u)/7)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("versions", help="the snapshots that hold a path")
    p.add_argument("path", help="path inside a snapshot, e.g. mail/imap/john/cur/123:2,S")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    p.add_argument("--host", help="host (default: the only one, or this machine)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_versions)

    p = sub.add_parser("diff", help="what changed between two snapshots of a host")
    p.add_argument("first", help="older snapshot (name or 'last')")
    p.add_argument("second", help="newer snapshot (name or 'last')")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO)")
    p.add_argument("--host", help="host (default: the only one, or this machine)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("mount", help="mount the repository read-only")
    p.add_argument("mountpoint", help="an empty directory")
    p.add_argument("--repo", help="repository (default: $HISTFS_REPO or the config file)")
    p.add_argument("--config", help="TOML configuration file naming the repository")
    p.add_argument("--host", help="show only this host, its snapshots at the root")
    p.add_argument("--foreground", action="store_true",
                   help="stay attached and log to stderr; Ctrl-C unmounts")
    p.add_argument("--allow-other", action="store_true",
                   help="let other users in (permissions are checked against stored owners)")
    p.add_argument("--last-symlink", action="store_true",
                   help="show last as a symbolic link instead of a directory")
    p.add_argument("--debug", action="store_true", help="log every request")
    p.add_argument("--log-file", help="log here instead of syslog or stderr")
    p.add_argument("--pid-file", help="write the daemon's pid here")
    p.add_argument("--cache-mb", type=int, default=32, metavar="MIB",
                   help="decoded data kept in memory, in MiB (default 32)")
    p.set_defaults(func=cmd_mount)

    p = sub.add_parser("umount", help="unmount a histfs mount")
    p.add_argument("mountpoint")
    p.add_argument("--lazy", action="store_true", help="detach now even if busy")
    p.set_defaults(func=cmd_umount)
    return parser


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
