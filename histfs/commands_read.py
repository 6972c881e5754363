"""Commands that read a repository and change nothing in it: `snapshots`,
`info`, `restore`, `versions`, `diff`, `mount`, `umount`, `report`,
`metrics`, and `completion`."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from histfs import log
from histfs.arguments import (
    config_host,
    file_config,
    not_negative,
    only_host,
    open_repository,
    repo_location,
    select_snapshot,
)
from histfs.byte_names import typed_paths
from histfs.exit_status import EXIT_FAILED, EXIT_OK, EXIT_WARNINGS
from histfs.output import Progress, human_bytes
from index.errors import ConfigError, PathNotFound, SnapshotDamaged
from index.format.names import json_path
from index.model.snapshot_meta import SnapshotMeta

if TYPE_CHECKING:
    from index.model.snapshot_reader import SnapshotReader

_LINES_SHOWN = 50


def cmd_snapshots(args: argparse.Namespace) -> int:
    """`histfs snapshots`: every snapshot, a damaged one flagged (exit 1)."""
    from index.model.snapshot_meta import snapshot_metas
    from index.store.holds import held_snapshots

    with open_repository(repo_location(args)) as repo:
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


def cmd_info(args: argparse.Namespace) -> int:
    """`histfs info [--json]`: size, snapshots and hosts, deduplication and
    compression, encryption and format of a repository (exit 1 when a
    snapshot's index cannot be read)."""
    from index.format.config import ENCRYPTION_NONE
    from index.tools.stats import repository_stats

    with open_repository(repo_location(args)) as repo:
        stats = repository_stats(repo)
        config = repo.config
        root = str(repo.root)
    for label in stats.damaged:
        log.warning(f"snapshot {label} is damaged: its figures are left out")
    status = EXIT_WARNINGS if stats.damaged else EXIT_OK
    encryption = "none" if config.encryption == ENCRYPTION_NONE else config.encryption
    if args.json:
        print(json.dumps({
            "repository": root, "id": config.repo_id, "format_version": config.version,
            "encryption": encryption, "created": config.created,
            "size_bytes": stats.size_bytes, "snapshots": stats.snapshots,
            "hosts": stats.hosts, "damaged": stats.damaged,
            "logical_bytes": stats.logical_bytes, "unique_bytes": stats.unique_bytes,
            "stored_bytes": stats.stored_bytes, "chunks": stats.chunks,
            "deduplication_ratio": _rounded(stats.deduplication_ratio),
            "compression_ratio": _rounded(stats.compression_ratio)}, indent=2))
        return status
    hosts = ", ".join(f"{h} ({n})" for h, n in stats.hosts.items()) or "none"
    print(f"repository {root}")
    print(f"id         {config.repo_id}, created {config.created}")
    print(f"format     version {config.version}")
    print(f"encryption {encryption}")
    print(f"size       {human_bytes(stats.size_bytes)}")
    print(f"snapshots  {stats.snapshots}" + (f" ({len(stats.damaged)} damaged)"
                                             if stats.damaged else ""))
    print(f"hosts      {hosts}")
    print(f"data       {human_bytes(stats.logical_bytes)} in the snapshots, "
          f"{human_bytes(stats.unique_bytes)} unique ({stats.chunks} chunks), "
          f"{human_bytes(stats.stored_bytes)} stored")
    print(f"ratios     deduplication {_ratio(stats.deduplication_ratio)}, "
          f"compression {_ratio(stats.compression_ratio)}")
    return status


def _rounded(ratio: float | None) -> float | None:
    return None if ratio is None else round(ratio, 3)


def _ratio(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def cmd_restore(args: argparse.Namespace) -> int:
    """`histfs restore`."""
    from index.format.names import parse_when
    from index.tools.restore import Restorer

    if args.overwrite and args.skip_existing:
        raise ConfigError("--overwrite and --skip-existing exclude each other: give one")
    if args.to_command is not None:
        return _restore_to_command(args)
    if args.target is None:
        raise ConfigError("give --target DIR (or --to-command CMD for one file)")
    cfg = file_config(args)
    with open_repository(repo_location(args, cfg)) as repo:
        items = list(args.items)
        at = parse_when(args.at) if args.at else None
        name = None if at is not None or not items else items.pop(0)
        ref = select_snapshot(repo, config_host(args, cfg), name, args.at)
        how = f" (the newest at or before {at:%Y-%m-%d %H:%M:%S} UTC)" if at else ""
        log.status(f"restoring {ref.host}/{ref.name}{how} into {args.target}")
        with repo.open_snapshot(ref) as snap:
            restorer = Restorer(snap, Path(args.target), overwrite=args.overwrite,
                                skip_existing=args.skip_existing)
            stats = restorer.stats

            def render() -> str:
                rate = stats.bytes / stats.duration if stats.duration > 0 else 0
                return (f"{stats.files} files, {human_bytes(stats.bytes)} "
                        f"({human_bytes(rate)}/s)")

            paths = [_typed_path(snap, p) for p in items]
            show = sys.stderr.isatty() and not args.json
            with Progress(render) if show else contextlib.nullcontext():
                restorer.restore(paths)
    for line in stats.errors[:_LINES_SHOWN]:
        log.error(line)
    for line in stats.warnings[:_LINES_SHOWN]:
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
        if args.skip_existing:
            print(f"skipped    {stats.skipped} existing, left as they were")
        if stats.errors:
            print(f"failed     {len(stats.errors)} (see above)")
    return status


def _restore_to_command(args: argparse.Namespace) -> int:
    """`histfs restore --to-command CMD [SNAPSHOT] PATH`: one regular file
    streamed into CMD's standard input."""
    from histfs.commands_stream import STREAM_CACHE, regular_file, to_command
    from index.format.names import parse_when, show_path

    if args.target is not None or args.overwrite or args.skip_existing or args.json:
        raise ConfigError("--to-command takes none of --target, --overwrite, "
                          "--skip-existing and --json")
    cfg = file_config(args)
    items = list(args.items)
    at = parse_when(args.at) if args.at else None
    name = None if at is not None or not items else items.pop(0)
    if at is None and name is None:
        raise ConfigError("name a snapshot (or 'last'), or give --at DATE")
    if len(items) != 1:
        raise ConfigError("--to-command streams exactly one file: give one PATH")
    with open_repository(repo_location(args, cfg)) as repo:
        repo.chunk_store.limit_cache(STREAM_CACHE)
        ref = repo.select(config_host(args, cfg), name, at)
        with repo.open_snapshot(ref) as snap:
            path, entry = regular_file(snap, items[0])
            log.status(f"streaming {ref.host}/{ref.name}:{show_path(path)} "
                       f"into {args.to_command}")
            sent = to_command(snap, path, entry, args.to_command)
    log.status(f"restored   {human_bytes(sent)} into the command")
    return EXIT_OK


def _typed_path(snap: SnapshotReader, text: str) -> bytes:
    """The path of `snap` an argument names: as typed if it is there, else
    the name its text form stands for (the restorer names what is in
    neither)."""
    candidates = typed_paths(text)
    for path in candidates:
        try:
            snap.resolve(path)
            return path
        except PathNotFound:
            continue
    return candidates[0]


def cmd_versions(args: argparse.Namespace) -> int:
    """`histfs versions`: the path as typed, else the name its text form
    (`bad\\xff`) stands for."""
    from index.tools.history import Version, versions

    damaged: list[SnapshotDamaged] = []
    cfg = file_config(args)
    found: list[Version] = []
    with open_repository(repo_location(args, cfg)) as repo:
        host = config_host(args, cfg) or only_host(repo)
        for path in typed_paths(args.path.strip("/")):
            damaged.clear()
            found = versions(repo, host, path, damaged.append)
            if found:
                break
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
    from index.tools.history import diff

    changes: list[tuple[str, bytes]] = []
    cfg = file_config(args)
    with open_repository(repo_location(args, cfg)) as repo:
        host = config_host(args, cfg) or only_host(repo)
        a = repo.select(host, args.first)
        b = repo.select(host, args.second)
        if a != b:  # a snapshot does not differ from itself
            with repo.open_snapshot(a) as snap_a, repo.open_snapshot(b) as snap_b:
                changes = list(diff(snap_a, snap_b))
    if args.json:
        print(json.dumps([{"status": s, **json_path(p)} for s, p in changes], indent=2))
    else:
        for status, path in changes:
            print(f"{status:<8} {path.decode('utf-8', 'backslashreplace')}")
    return EXIT_OK


def cmd_mount(args: argparse.Namespace) -> int:
    """`histfs mount`."""
    from fusefs.mount import MountOptions, mount
    from histfs.passphrase import asked_for

    cfg = file_config(args)
    location = repo_location(args, cfg)
    mountpoint = Path(args.mountpoint) if args.mountpoint else cfg.mountpoint
    if mountpoint is None:
        raise ConfigError("no mount point given: name one, or a config file with mountpoint")
    return mount(MountOptions(
        repo=location, mountpoint=mountpoint, host=args.host,
        allow_other=args.allow_other, last_symlink=args.last_symlink, debug=args.debug,
        foreground=args.foreground, log_file=Path(args.log_file) if args.log_file else None,
        pid_file=Path(args.pid_file) if args.pid_file else None,
        cache_mb=int(not_negative(args.cache_mb, "--cache-mb", "MiB")),
        passphrase=asked_for(location),
    ))


def cmd_umount(args: argparse.Namespace) -> int:
    """`histfs umount`."""
    from fusefs.mount import umount

    return umount(Path(args.mountpoint), lazy=args.lazy)


def cmd_report(args: argparse.Namespace) -> int:
    """`histfs report --output FILE`: a self-contained HTML page."""
    from histfs.metrics import write_atomically
    from histfs.report import collect, damaged_snapshots, render

    cfg = file_config(args)
    with open_repository(repo_location(args, cfg)) as repo:
        points = collect(repo)
        page = render(repo, cfg.retention, points)
    write_atomically(Path(args.output), page)
    damaged = damaged_snapshots(points)
    for m in damaged:
        log.warning(f"snapshot {m.host}/{m.name} is damaged: {m.damaged}")
    log.status(f"report written to {args.output}")
    return EXIT_WARNINGS if damaged else EXIT_OK


def cmd_metrics(args: argparse.Namespace) -> int:
    """`histfs metrics`: the repository's metrics in Prometheus text format."""
    from histfs.metrics import repository_metrics

    with open_repository(repo_location(args)) as repo:
        sys.stdout.write(repository_metrics(repo))
    return EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    """`histfs completion bash|zsh`: a completion script on stdout."""
    from histfs.completion import bash_script, hosts_in, paths_in, snapshots_in, zsh_script
    from histfs.parser import build_parser

    if args.shell == "hosts":  # called by the scripts while completing --host
        print(" ".join(hosts_in(args.words)))
    elif args.shell == "snapshots":  # ... a snapshot name
        print(" ".join(snapshots_in(args.words)))
    elif args.shell == "paths":  # ... a path inside a snapshot
        for path in paths_in(args.words[0] if args.words else "last", args.words[1:]):
            print(path)
    elif args.shell == "bash":
        sys.stdout.write(bash_script(build_parser()))
    else:
        sys.stdout.write(zsh_script(build_parser()))
    return EXIT_OK
