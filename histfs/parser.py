"""The argument parser of the `histfs` command: every subcommand, its
options and their help, and the handler each one calls (`args.func`).

The options that name a repository are declared once, in
`repository_options`, and given to each command as a parent parser.
Commands are added in the order `histfs --help` lists them.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

from histfs.commands_backup import cmd_backup
from histfs.commands_browse import cmd_find, cmd_ls
from histfs.commands_mailbox import cmd_mailbox_list, cmd_mailbox_restore
from histfs.commands_maintain import (
    cmd_check,
    cmd_forget,
    cmd_gc,
    cmd_hold,
    cmd_prune,
    cmd_release,
)
from histfs.commands_read import (
    cmd_completion,
    cmd_diff,
    cmd_info,
    cmd_metrics,
    cmd_mount,
    cmd_report,
    cmd_restore,
    cmd_snapshots,
    cmd_umount,
    cmd_versions,
)
from histfs.commands_setup import cmd_copy, cmd_init, cmd_key
from histfs.commands_stream import cmd_cat

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
REPO_HELP = "repository (default: $HISTFS_REPO)"
REPO_OR_CONFIG_HELP = "repository (default: $HISTFS_REPO or the config file)"
CONFIG_NAMING_REPO = "TOML configuration file naming the repository (default: $HISTFS_CONFIG)"


def repository_options(config_help: str | None = None) -> argparse.ArgumentParser:
    """The parent parser of a command that opens a repository: `--repo`,
    and `--config` (described by `config_help`) for commands that read a
    configuration file, where the repository may be named too."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--repo", help=REPO_OR_CONFIG_HELP if config_help else REPO_HELP)
    if config_help:
        parent.add_argument("--config", help=config_help)
    return parent


def _one_host_options() -> argparse.ArgumentParser:
    """The parent parser of `versions` and `diff`, which look at one host."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--host", help="host (default: the config file's, else the only one, "
                                       "or this machine)")
    parent.add_argument("--json", action="store_true", help="print as JSON")
    return parent


def _init(sub: Subparsers) -> None:
    p = sub.add_parser("init", help="create a repository",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("path", nargs="?",
                   help="directory for the new repository (absent or empty), "
                        "or s3://BUCKET/PREFIX (default: --repo, $HISTFS_REPO or the "
                        "config file's)")
    p.add_argument("--endpoint", metavar="URL",
                   help="S3 endpoint (Ceph RGW, MinIO, ...): remembered on this machine "
                        "for the repository; default $HISTFS_S3_ENDPOINT or AWS")
    p.add_argument("--encryption", choices=["repokey", "none"], default="repokey",
                   help="repokey (default): encrypt and authenticate everything with a "
                        "key kept in the repository, protected by a passphrase; none: "
                        "store in the clear")
    p.set_defaults(func=cmd_init)


def _report(sub: Subparsers) -> None:
    p = sub.add_parser("report", help="write an HTML report with charts (self-contained)",
                       parents=[repository_options(
                           "TOML configuration file (its retention policy is shown)")])
    p.add_argument("--output", required=True, metavar="FILE", help="the HTML file to write")
    p.set_defaults(func=cmd_report)


def _completion(sub: Subparsers) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash or zsh)")
    p.add_argument("shell", choices=["bash", "zsh", "hosts", "snapshots", "paths"],
                   help="bash or zsh (hosts, snapshots, paths: used by the scripts "
                        "themselves)")
    p.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_completion)


def _metrics(sub: Subparsers) -> None:
    p = sub.add_parser("metrics", help="print the repository's metrics (Prometheus format)",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.set_defaults(func=cmd_metrics)


def _copy(sub: Subparsers) -> None:
    p = sub.add_parser("copy", help="copy snapshots into another repository (offsite)")
    p.add_argument("--from", dest="source", metavar="REPO",
                   help="repository to copy from (default: $HISTFS_REPO or the config "
                        "file's)")
    p.add_argument("--config", help="TOML configuration file naming the repository to copy "
                                    "from (default: $HISTFS_CONFIG)")
    p.add_argument("--to", dest="target", required=True, metavar="REPO",
                   help="repository to copy into (its passphrase: "
                        "$HISTFS_TO_PASSPHRASE_FILE, else as for any repository)")
    p.add_argument("--host", help="only this host's snapshots")
    p.add_argument("snapshots", nargs="*", metavar="SNAPSHOT",
                   help="snapshot names (default: every snapshot the target lacks)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_copy)


def _key(sub: Subparsers) -> None:
    p = sub.add_parser("key", help="export, import or re-protect the repository key")
    key_sub = p.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    repo = [repository_options(CONFIG_NAMING_REPO)]
    k = key_sub.add_parser("export", help="write a copy of the key (for safekeeping)",
                           parents=repo)
    k.add_argument("file", help="new file to write (mode 0600)")
    k.set_defaults(func=cmd_key)
    k = key_sub.add_parser("import", help="put an exported key back into the repository",
                           parents=repo)
    k.add_argument("file", help="the exported key")
    k.set_defaults(func=cmd_key)
    k = key_sub.add_parser("change-passphrase", help="protect the key with a new passphrase",
                           parents=repo)
    k.set_defaults(func=cmd_key)


def _backup(sub: Subparsers) -> None:
    p = sub.add_parser("backup", help="back up parts into a new snapshot",
                       parents=[repository_options("TOML configuration file")])
    p.add_argument("parts", nargs="*", metavar="NAME=PATH",
                   help="parts to back up (replace the config file's parts)")
    p.add_argument("--host", help="host name of the snapshot (default: this machine's)")
    p.add_argument("--compression", type=int, help="zstd level 1-22, 0 for none (default 3)")
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="exclude pattern for the NAME=PATH parts (repeatable)")
    p.add_argument("--exclude-from", action="append", default=[], metavar="FILE",
                   help="exclude the patterns in FILE, one a line, in every part (repeatable)")
    p.add_argument("--exclude-caches", action="store_true",
                   help="leave out directories holding a valid CACHEDIR.TAG")
    p.add_argument("--exclude-if-present", action="append", default=[], metavar="NAME",
                   help="leave out directories holding a file NAME (repeatable)")
    p.add_argument("--one-file-system", action="store_true",
                   help="enter no directory on another file system than its part's")
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
    p.add_argument("--dry-run", action="store_true",
                   help="show what would be new, changed, unchanged and excluded; read "
                   "and write nothing")
    p.add_argument("--list", action="store_true",
                   help="with --dry-run: name each path (A new, M changed, U unchanged, "
                   "d directory, o other, x excluded, E failed)")
    p.set_defaults(func=cmd_backup)


def _prune(sub: Subparsers) -> None:
    p = sub.add_parser("prune", help="remove snapshots outside the retention policy",
                       description="Apply the retention policy ([retention] in --config, "
                       "or --keep-* options, which override it) to each host separately. "
                       "A snapshot is kept when any rule keeps it; the newest snapshot of a "
                       "host and held snapshots are always kept. Space comes back with gc.",
                       parents=[repository_options(
                           "TOML configuration file with a [retention] table")])
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


def _forget(sub: Subparsers) -> None:
    p = sub.add_parser("forget", help="remove named snapshots",
                       description="Remove the named snapshots, as prune removes those its "
                       "policy no longer keeps; space comes back with gc. A held snapshot "
                       "is refused with its hold's reason, and then nothing is removed.",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("snapshots", nargs="+", metavar="SNAPSHOT",
                   help="snapshot name, or 'last'")
    p.add_argument("--host", help="host of the snapshots (needed when several fit; default: "
                                  "the config file's host)")
    p.add_argument("--dry-run", action="store_true", help="show what would be removed")
    p.add_argument("--lock-wait", type=float, default=60.0, metavar="SECONDS",
                   help="wait this long for a prune (default 60)")
    p.add_argument("--json", action="store_true", help="print the snapshots as JSON")
    p.set_defaults(func=cmd_forget)


def _info(sub: Subparsers) -> None:
    p = sub.add_parser("info", help="repository size, snapshots, deduplication, encryption",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_info)


def _gc(sub: Subparsers) -> None:
    p = sub.add_parser("gc", help="reclaim the space of data no snapshot uses",
                       description="Delete packs no snapshot uses and rewrite packs whose "
                       "unused share exceeds --max-unused. Safe alongside backups, prunes "
                       "and mounts; one gc at a time.",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
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


def _holds(sub: Subparsers) -> None:
    for verb, what in (("hold", "keep a snapshot whatever the retention policy says"),
                       ("release", "release the holds with a reason")):
        p = sub.add_parser(verb, help=what,
                           parents=[repository_options(CONFIG_NAMING_REPO)])
        p.add_argument("snapshot", help="snapshot name, or 'last'")
        p.add_argument("--reason", required=True,
                       help="why, e.g. tape or legal (release: which holds)")
        p.add_argument("--host", help="host (default: the only one, or this machine)")
        p.set_defaults(func=cmd_hold if verb == "hold" else cmd_release)


def _snapshots(sub: Subparsers) -> None:
    p = sub.add_parser("snapshots", help="list snapshots",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("--host", help="only this host")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_snapshots)


def _restore(sub: Subparsers) -> None:
    p = sub.add_parser("restore", help="restore a snapshot or some of its paths",
                       description="Restore into --target, keeping each path's place "
                       "(part/dir/file) below it. SNAPSHOT is a name or 'last'; with --at "
                       "every argument is a path.",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("items", nargs="*", metavar="[SNAPSHOT] PATH",
                   help="snapshot (unless --at) followed by paths; no path: everything")
    p.add_argument("--target", help="directory to restore into (needed unless --to-command)")
    p.add_argument("--host", help="host of the snapshot (needed when several fit; default: "
                                  "the config file's host)")
    p.add_argument("--at", metavar="DATE",
                   help="the newest snapshot at or before DATE (a date means its end; UTC "
                   "unless an offset is given)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--skip-existing", action="store_true",
                   help="restore only what is missing in the target; leave what exists")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--to-command", metavar="CMD",
                   help="stream the one regular file PATH into CMD's standard input "
                        "(run by /bin/sh -c) instead of restoring into --target; fails "
                        "unless CMD exits 0")
    p.set_defaults(func=cmd_restore)


def _cat(sub: Subparsers) -> None:
    p = sub.add_parser("cat", help="write one file of a snapshot to stdout",
                       description="Stream the regular file PATH of SNAPSHOT (a name or "
                       "'last') to stdout, every chunk verified: a damaged one stops the "
                       "stream with an error (exit 2).",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("snapshot", help="snapshot name, or 'last'")
    p.add_argument("path", help="file inside it, e.g. ldap/ldap.ldif")
    p.add_argument("--host", help="host of the snapshot (needed when several fit; default: "
                                  "the config file's host)")
    p.set_defaults(func=cmd_cat)


def _check(sub: Subparsers) -> None:
    p = sub.add_parser("check", help="verify the repository",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("--read-data", action="store_true",
                   help="also re-read and re-hash every chunk")
    p.add_argument("--read-data-subset", metavar="K/N",
                   help="re-read only the K-th of N parts of the data (e.g. $(date +%%u)/7)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_check)


def _versions(sub: Subparsers) -> None:
    p = sub.add_parser("versions", help="the snapshots that hold a path",
                       parents=[repository_options(CONFIG_NAMING_REPO), _one_host_options()])
    p.add_argument("path", help="path inside a snapshot, e.g. mail/imap/john/cur/123:2,S")
    p.set_defaults(func=cmd_versions)


def _diff(sub: Subparsers) -> None:
    p = sub.add_parser("diff", help="what changed between two snapshots of a host",
                       parents=[repository_options(CONFIG_NAMING_REPO), _one_host_options()])
    p.add_argument("first", help="older snapshot (name or 'last')")
    p.add_argument("second", help="newer snapshot (name or 'last')")
    p.set_defaults(func=cmd_diff)


def _ls(sub: Subparsers) -> None:
    p = sub.add_parser("ls", help="list a directory of a snapshot (without mounting it)",
                       description="List the entries of PATH in SNAPSHOT (a name or 'last'), "
                       "each with its path from the snapshot's root, as versions, restore "
                       "and find take it; without PATH, the snapshot's parts.",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("snapshot", help="snapshot name, or 'last'")
    p.add_argument("path", nargs="?", help="directory or file inside it, e.g. mail/imap/john")
    p.add_argument("--host", help="host of the snapshot (needed when several fit; default: "
                                  "the config file's host)")
    p.add_argument("-l", "--long", action="store_true",
                   help="also show type, mode, owner, size and mtime (UTC)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_ls)


def _find(sub: Subparsers) -> None:
    p = sub.add_parser("find", help="find paths matching a pattern across snapshots",
                       description="Every path matching PATTERN in every snapshot (of --host, "
                       "or the config file's host, else of every host), with size and mtime. "
                       "A pattern with a '/' is matched against the whole path from the "
                       "snapshot's root (mail/*/cur/*), one without against the name alone; "
                       "'*' also matches '/'. Exit 1 when nothing matches.",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("pattern", help="shell pattern (quote it), e.g. '*.sieve' or 'mail/john/*'")
    p.add_argument("--host", help="only this host's snapshots")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_find)


def _mailbox(sub: Subparsers) -> None:
    p = sub.add_parser("mailbox", help="list the mailboxes of a mail part, or restore one",
                       description="The users of the mail part (a [[part]] with layout = "
                       "\"maildir\" and mailbox_path in --config) in a snapshot, and one "
                       "user's mailbox as it was then merged back into the live Maildir.")
    actions = p.add_subparsers(dest="mailbox_command", required=True, metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--part", help="the mail part (default: the only one)")
    common.add_argument("--host", help="host of the snapshots (default: the config file's, "
                                       "else the only one)")
    common.add_argument("--json", action="store_true", help="print as JSON")
    repo = repository_options("TOML configuration file with the mail part "
                              "(default: $HISTFS_CONFIG)")
    a = actions.add_parser("list", help="users, their folders and message counts",
                           parents=[repo, common])
    a.add_argument("snapshot", nargs="?", help="snapshot name, or 'last' (the default)")
    a.add_argument("--at", metavar="DATE",
                   help="the newest snapshot taken at or before DATE (e.g. 2026-11-14)")
    a.set_defaults(func=cmd_mailbox_list)
    a = actions.add_parser(
        "restore", help="merge a user's mailbox as it was into the live one",
        description="Copy the messages of USER's mailbox in the snapshot of --at that the "
        "live Maildir lacks (same base name, whatever the flags) into it, with their flags; "
        "folders it lacks are created (and subscribed when it has a subscriptions file). "
        "Nothing live is replaced or deleted. Then after_mailbox_restore runs (default: "
        "doveadm force-resync -u USER '*' where doveadm is installed).",
        parents=[repo, common])
    a.add_argument("user", help="the user, as `histfs mailbox list` names them, e.g. "
                                "john@example.org")
    a.add_argument("--at", required=True, metavar="DATE",
                   help="the newest snapshot taken at or before DATE (e.g. 2026-11-14), "
                        "or a snapshot's name, or 'last'")
    a.add_argument("--folder", metavar="FOLDER",
                   help="only this folder and those beneath it (e.g. Projects or "
                        "INBOX.Projects)")
    a.add_argument("--into", metavar="FOLDER",
                   help="put everything under this new folder (e.g. \"Restored "
                        "2026-11-14\") instead of the original folders")
    a.add_argument("--dry-run", action="store_true",
                   help="count what would be restored and created; write nothing")
    a.set_defaults(func=cmd_mailbox_restore)


def _mount(sub: Subparsers) -> None:
    p = sub.add_parser("mount", help="mount the repository read-only",
                       parents=[repository_options(CONFIG_NAMING_REPO)])
    p.add_argument("mountpoint", nargs="?",
                   help="an empty directory (default: the config file's mountpoint)")
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


def _umount(sub: Subparsers) -> None:
    p = sub.add_parser("umount", help="unmount a histfs mount")
    p.add_argument("mountpoint")
    p.add_argument("--lazy", action="store_true", help="detach now even if busy")
    p.set_defaults(func=cmd_umount)


_COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _init, _report, _completion, _metrics, _copy, _key, _backup, _prune, _forget, _gc,
    _holds, _snapshots, _info, _restore, _cat, _check, _versions, _diff, _ls, _find,
    _mailbox, _mount, _umount)


def _version() -> str:
    """`histfs --version`: the installed version and the repository format
    it writes."""
    from importlib.metadata import PackageNotFoundError, version

    from index.format.config import FORMAT_VERSION

    try:
        mine = version("histfs")
    except PackageNotFoundError:
        mine = "(not installed)"
    return f"histfs {mine} (repository format {FORMAT_VERSION})"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(
        prog="histfs",
        description="Deduplicated backups of mail servers, mounted as dated directories.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--log-file", dest="global_log_file", metavar="FILE",
                        help="also append every message, timestamped, to FILE")
    parser.add_argument("--quiet", dest="global_quiet", action="store_true",
                        help="print only warnings and errors (for cron)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser
