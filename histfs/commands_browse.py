"""Commands that look inside snapshots without mounting them: `ls` (one
directory of one snapshot) and `find` (a pattern across snapshots)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from histfs import log
from histfs.arguments import config_host, file_config, open_repository, repo_location
from histfs.byte_names import typed_paths
from histfs.exit_status import EXIT_OK, EXIT_WARNINGS
from histfs.output import human_bytes
from index.errors import PathNotFound, SnapshotDamaged
from index.format.names import json_path, show_path
from index.format.types import Entry, Kind


def _when(mtime_ns: int) -> str:
    return datetime.fromtimestamp(mtime_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _entry_fields(entry: Entry) -> dict[str, object]:
    """What `--json` says of an entry besides its path."""
    fields: dict[str, object] = {
        "type": entry.kind.name.lower(), "mode": entry.mode, "uid": entry.uid,
        "gid": entry.gid, "size": entry.size, "mtime_ns": entry.mtime_ns,
        "mtime": datetime.fromtimestamp(entry.mtime_ns / 1e9, UTC).isoformat()}
    if entry.kind == Kind.SYMLINK and isinstance(entry.data, bytes):
        fields.update(json_path(entry.data, "target"))
    return fields


def cmd_ls(args: argparse.Namespace) -> int:
    """`histfs ls [--long] [--json] SNAPSHOT [PATH]`: the entries of a
    directory of a snapshot (the parts, without PATH), or a file alone."""
    from index.tools.listing import list_path, mode_text

    cfg = file_config(args)
    with open_repository(repo_location(args, cfg)) as repo:
        ref = repo.select(config_host(args, cfg), args.snapshot)
        with repo.open_snapshot(ref) as snap:
            rows = None
            for path in typed_paths(args.path or ""):
                try:
                    rows = list_path(snap, path)
                    break
                except PathNotFound:
                    continue
            if rows is None:
                raise PathNotFound(f"{args.path}: not in snapshot {ref.host}/{ref.name}")
    if args.json:
        print(json.dumps([{**json_path(p), **_entry_fields(e)} for p, e in rows], indent=2))
        return EXIT_OK
    for path, entry in rows:
        shown = show_path(path)
        if args.long:
            target = (f" -> {show_path(entry.data)}"
                      if entry.kind == Kind.SYMLINK and isinstance(entry.data, bytes) else "")
            print(f"{mode_text(entry)} {entry.uid:>6} {entry.gid:>6} {entry.size:>12}  "
                  f"{_when(entry.mtime_ns)}  {shown}{target}")
        else:
            print(shown)
    return EXIT_OK


def cmd_find(args: argparse.Namespace) -> int:
    """`histfs find [--host H] [--json] PATTERN`: the paths matching a
    shell pattern in every snapshot, with size and mtime (exit 1 when
    none matches, or a snapshot could not be read)."""
    from index.tools.listing import find, matcher

    damaged: list[SnapshotDamaged] = []
    cfg = file_config(args)
    tests = [matcher(p) for p in typed_paths(args.pattern)]
    with open_repository(repo_location(args, cfg)) as repo:
        found = list(find(repo, config_host(args, cfg),
                          lambda path, name: any(t(path, name) for t in tests),
                          damaged.append))
    for problem in damaged:
        log.warning(f"{problem}; left out")
    status = EXIT_OK if found and not damaged else EXIT_WARNINGS
    if args.json:
        print(json.dumps([{"host": m.ref.host, "snapshot": m.ref.name, **json_path(m.path),
                           **_entry_fields(m.entry)} for m in found], indent=2))
        return status
    if not found:
        print(f"{args.pattern}: matches nothing in any {'readable ' if damaged else ''}"
              "snapshot", file=sys.stderr)
        return status
    for m in found:
        print(f"{m.ref.host:<16} {m.ref.name:<22} {human_bytes(m.entry.size):>10}  "
              f"{_when(m.entry.mtime_ns)}  {show_path(m.path)}")
    return status
