"""`histfs mailbox list` and `histfs mailbox restore`: the users of a mail
part in a snapshot, and one user's mailbox as it was then merged back into
the live Maildir."""

from __future__ import annotations

import argparse
import json
import os
import re
from typing import TYPE_CHECKING

from histfs import log
from histfs.arguments import (
    config_host,
    file_config,
    open_repository,
    repo_location,
    select_snapshot,
)
from histfs.config import FileConfig, MailLayout
from histfs.exit_status import EXIT_FAILED, EXIT_OK, EXIT_WARNINGS
from histfs.output import human_bytes
from index.errors import ConfigError
from index.format.mailbox_path import user_values
from index.format.names import LAST, is_snapshot_name, json_path, show_path
from writer.command_output import how_it_ended, last_lines

if TYPE_CHECKING:
    from index.model.repository import Repository, SnapshotRef
    from index.tools.maildir_snapshot import Folder, Mailbox
    from writer.maildir_merge import Placement

_LINES_SHOWN = 50


def mail_part(cfg: FileConfig, name: str | None) -> MailLayout:
    """The mail part a command means: `--part`, else the only one."""
    if not cfg.mail:
        where = cfg.source or "no configuration file (use --config)"
        raise ConfigError(f"{where}: no part has layout = \"maildir\" and a mailbox_path")
    if name is None:
        if len(cfg.mail) > 1:
            names = ", ".join(m.part for m in cfg.mail)
            raise ConfigError(f"several mail parts ({names}): use --part")
        return cfg.mail[0]
    for layout in cfg.mail:
        if layout.part == name:
            return layout
    names = ", ".join(m.part for m in cfg.mail)
    raise ConfigError(f"--part {name}: not a mail part of {cfg.source} (those are: {names})")


def chosen_snapshot(repo: Repository, args: argparse.Namespace,
                    cfg: FileConfig) -> SnapshotRef:
    """The snapshot of `--at` (a date, a snapshot name or "last") or of the
    positional SNAPSHOT, the newest without either."""
    at, name = args.at, getattr(args, "snapshot", None)
    if at and name:
        raise ConfigError("give a SNAPSHOT or --at DATE, not both")
    if at and (at == LAST or is_snapshot_name(at)):
        at, name = None, at
    return select_snapshot(repo, config_host(args, cfg), name or (None if at else LAST), at)


def cmd_mailbox_list(args: argparse.Namespace) -> int:
    """`histfs mailbox list [--at DATE | SNAPSHOT]`: the users of the mail
    part, their folders and how many messages each holds."""
    from index.tools.maildir_snapshot import find_mailboxes, folders, messages

    cfg = file_config(args)
    layout = mail_part(cfg, args.part)
    found: list[tuple[Mailbox, list[tuple[bytes, int]]]] = []
    with open_repository(repo_location(args, cfg)) as repo:
        ref = chosen_snapshot(repo, args, cfg)
        with repo.open_snapshot(ref) as snap:
            for box in find_mailboxes(snap, layout.part, layout.mailbox_path):
                found.append((box, [(f.name, sum(1 for _ in messages(snap, f)))
                                    for f in folders(snap, box)]))
    if args.json:
        users = [{**json_path(box.user, "user"), **json_path(box.path),
                  "folders": [{**json_path(name, "name"), "messages": count}
                              for name, count in counted]}
                 for box, counted in found]
        print(json.dumps({"host": ref.host, "snapshot": ref.name, "part": layout.part,
                          "users": users}, indent=2))
        return EXIT_OK
    log.status(f"mailboxes of part {layout.part} in {ref.host}/{ref.name}")
    if not found:
        print(f"no mailbox matches {layout.mailbox_path.text!r} in part {layout.part} "
              f"of {ref.host}/{ref.name}")
        return EXIT_OK
    for box, counted in found:
        print(f"{show_path(box.user)}  ({layout.part}/{show_path(box.path)}): "
              f"{len(counted)} folders, {sum(count for _, count in counted)} messages")
        for name, count in counted:
            print(f"    {_folder_text(name):<40} {count:>8}")
    return EXIT_OK


def _folder_text(name: bytes) -> str:
    """A folder's name as a mail client shows it (Dovecot keeps non-ASCII
    names in IMAP's modified UTF-7: "Caf&AOk-" is "Café")."""
    from index.format.imap_utf7 import decode

    shown = show_path(name)
    text = decode(name)
    return shown if text is None or text == shown else f"{text} ({shown})"


def status_of(errors: list[str], warnings: list[str]) -> int:
    """The exit status of a run with these errors and warnings."""
    for line in errors[:_LINES_SHOWN]:
        log.error(line)
    for line in warnings[:_LINES_SHOWN]:
        log.warning(line)
    return EXIT_FAILED if errors else EXIT_WARNINGS if warnings else EXIT_OK


def cmd_mailbox_restore(args: argparse.Namespace) -> int:
    """`histfs mailbox restore --at DATE USER [--folder F] [--into F]
    [--dry-run]`: merge USER's mailbox as it was into the live one."""
    from index.tools.maildir_snapshot import find_mailbox, folders, select_folders
    from writer.maildir_merge import MaildirMerge

    cfg = file_config(args)
    layout = mail_part(cfg, args.part)
    user = os.fsencode(args.user)
    into = into_name(args.into) if args.into is not None else None
    with open_repository(repo_location(args, cfg)) as repo:
        ref = chosen_snapshot(repo, args, cfg)
        with repo.open_snapshot(ref) as snap:
            box = find_mailbox(snap, layout.part, layout.mailbox_path, user)
            if box is None:
                raise ConfigError(f"{args.user}: no mailbox of that user in part "
                                  f"{layout.part} of {ref.host}/{ref.name} (`histfs mailbox "
                                  f"list --at {ref.name}` names its users)")
            chosen = select_folders(folders(snap, box), _folder_arg(args.folder))
            if not chosen:
                raise ConfigError(f"{args.folder}: no such folder in {args.user}'s mailbox "
                                  f"in {ref.host}/{ref.name} (`histfs mailbox list` names "
                                  "its folders)")
            live = layout.path / os.fsdecode(box.path)
            log.status(f"{'counting' if args.dry_run else 'restoring'} {args.user}'s mailbox "
                       f"of {ref.host}/{ref.name} into {live}")
            stats = MaildirMerge(snap, live, dry_run=args.dry_run).merge(
                placements(chosen, into))
    after = None
    if not args.dry_run:
        after = run_after_restore(layout.after_restore, user, stats.warnings)
    status = status_of(stats.errors, stats.warnings)
    if args.json:
        print(json.dumps({
            "host": ref.host, "snapshot": ref.name, **json_path(user, "user"),
            "maildir": str(live), "dry_run": args.dry_run, "restored": stats.restored,
            "already_there": stats.already, "bytes": stats.bytes,
            "folders_created": [json_path(f, "name") for f in stats.folders_created],
            "subscribed": [json_path(f, "name") for f in stats.subscribed],
            "after_command": after, "errors": stats.errors, "warnings": stats.warnings,
            "exit_status": status}, indent=2))
        return status
    would = "would restore" if args.dry_run else "restored"
    print(f"{would:<14} {stats.restored} messages, {human_bytes(stats.bytes)}")
    print(f"{'already there':<14} {stats.already} messages, left as they were")
    created = ", ".join(show_path(f) for f in stats.folders_created)
    print(f"{'would create' if args.dry_run else 'created':<14} "
          f"{len(stats.folders_created)} folders" + (f": {created}" if created else ""))
    if stats.errors:
        print(f"{'failed':<14} {len(stats.errors)} (see above)")
    return status


def _folder_arg(text: str | None) -> bytes | None:
    """A folder named on the command line, as Dovecot names it on disk."""
    from index.format.imap_utf7 import encode

    return None if text is None else encode(text.strip("."))


def into_name(text: str) -> bytes:
    """The folder `--into` names, as Dovecot names it on disk (modified
    UTF-7); '.' separates its levels, as in every Maildir++ name."""
    from index.format.imap_utf7 import encode

    levels = text.split(".")
    if (not text or "/" in text or any(not level.strip() for level in levels)
            or any(ord(c) < 0x20 or c == "\x7f" for c in text)
            or levels[0].upper() == "INBOX"):
        raise ConfigError(f"--into {text!r}: expected a folder name such as \"Restored "
                          "2026-11-14\" (no '/', no empty level between '.', not INBOX)")
    return encode(text)


def placements(chosen: list[Folder], into: bytes | None) -> list[Placement]:
    """Where each folder goes: its own place, or beneath `into` (INBOX into
    `into` itself, which is made even when INBOX is not restored)."""
    from writer.maildir_merge import Placement

    if into is None:
        return [Placement(f, f.name) for f in chosen]
    below = [Placement(f, into if f.name == b"INBOX" else into + b"." + f.name)
             for f in chosen]
    return below if any(p.target == into for p in below) else [Placement(None, into), *below]


def run_after_restore(command: str | None, user: bytes, warnings: list[str]) -> \
        dict[str, object] | None:
    """Run the after_mailbox_restore command for `user` (%u, %n and %d in
    it replaced, quoted for the shell); None when there is none. A failure
    is a warning: the messages are in place, the server only finds them
    later."""
    import shlex
    import shutil
    import subprocess

    if command is None:
        if shutil.which("doveadm") is None:
            return None
        command = DEFAULT_AFTER_RESTORE
    if not command:
        return None
    values = {k: shlex.quote(os.fsdecode(v)) for k, v in user_values(user).items()}
    line = re.sub(r"%([und%])", lambda m: values.get(m.group(1), "%"), command)
    log.status(f"running {line}")
    try:
        proc = subprocess.run(["/bin/sh", "-c", line], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=AFTER_TIMEOUT)
    except subprocess.TimeoutExpired:
        warnings.append(f"after_mailbox_restore: {line!r} did not end within "
                        f"{AFTER_TIMEOUT} s")
        return {"command": line, "exit_status": None}
    if proc.returncode != 0:
        said = last_lines(proc.stderr)
        warnings.append(f"after_mailbox_restore: {line!r} failed: {how_it_ended(proc.returncode)}"
                        + (f": {said}" if said else ""))
    return {"command": line, "exit_status": proc.returncode}


DEFAULT_AFTER_RESTORE = "doveadm force-resync -u %u '*'"
AFTER_TIMEOUT = 600
