"""`histfs mailbox list` and `histfs mailbox restore`: the users of a mail
part in a snapshot, and one user's mailbox as it was then merged back into
the live Maildir."""

from __future__ import annotations

import argparse
import json
import os
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
from index.errors import ConfigError
from index.format.names import LAST, is_snapshot_name, json_path, show_path

if TYPE_CHECKING:
    from index.model.repository import Repository, SnapshotRef

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
    rows: list[dict[str, object]] = []
    with open_repository(repo_location(args, cfg)) as repo:
        ref = chosen_snapshot(repo, args, cfg)
        with repo.open_snapshot(ref) as snap:
            for box in find_mailboxes(snap, layout.part, layout.mailbox_path):
                rows.append({**json_path(box.user, "user"), **json_path(box.path),
                             "folders": [{**json_path(f.name, "name"),
                                          "messages": sum(1 for _ in messages(snap, f))}
                                         for f in folders(snap, box)]})
    if args.json:
        print(json.dumps({"host": ref.host, "snapshot": ref.name, "part": layout.part,
                          "users": rows}, indent=2))
        return EXIT_OK
    log.status(f"mailboxes of part {layout.part} in {ref.host}/{ref.name}")
    if not rows:
        print(f"no mailbox matches {layout.mailbox_path.text!r} in part {layout.part} "
              f"of {ref.host}/{ref.name}")
        return EXIT_OK
    for row in rows:
        folder_rows = row["folders"]
        assert isinstance(folder_rows, list)
        total = sum(int(f["messages"]) for f in folder_rows)
        print(f"{_text(row, 'user')}  ({layout.part}/{_text(row, 'path')}): "
              f"{len(folder_rows)} folders, {total} messages")
        for f in folder_rows:
            print(f"    {_folder_text(f):<40} {f['messages']:>8}")
    return EXIT_OK


def _folder_text(row: dict[str, object]) -> str:
    """A folder's name as a mail client shows it (Dovecot keeps non-ASCII
    names in IMAP's modified UTF-7: "Caf&AOk-" is "Café")."""
    from index.format.imap_utf7 import decode

    shown = _text(row, "name")
    text = decode(shown.encode()) if "name" in row else None
    return shown if text is None or text == shown else f"{text} ({shown})"


def _text(row: dict[str, object], key: str) -> str:
    """A name of a JSON row as text output shows it."""
    import base64

    if key in row:
        return str(row[key])
    return show_path(base64.b64decode(str(row[f"{key}_b64"])))


def user_bytes(text: str) -> bytes:
    """A user named on the command line, as the bytes of a snapshot."""
    return os.fsencode(text)


def status_of(errors: list[str], warnings: list[str]) -> int:
    """The exit status of a run with these errors and warnings."""
    for line in errors[:_LINES_SHOWN]:
        log.error(line)
    for line in warnings[:_LINES_SHOWN]:
        log.warning(line)
    return EXIT_FAILED if errors else EXIT_WARNINGS if warnings else EXIT_OK



def cmd_mailbox_restore(args: argparse.Namespace) -> int:
    """`histfs mailbox restore --at DATE USER`."""
    raise ConfigError("not yet")
