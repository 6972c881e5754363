"""Mounting from /etc/fstab or a systemd mount unit (the mount.fuse3 convention).

    /srv/histfs-repo  /mnt/backups  fuse.histfs  ro,allow_other,host=mx1,_netdev  0 0

`mount /mnt/backups` runs /sbin/mount.fuse (Debian's fuse3), which runs
`histfs SOURCE MOUNTPOINT -o OPTIONS` with the options it did not consume;
`histfs` must be on the PATH mount gives its helpers (/usr/local/bin,
/usr/bin, ...). That form of the command line is recognised here and turned
into `histfs mount`: the daemon answers before the command returns, and
`umount /mnt/backups` ends it.

Options: `host=H`, `allow_other`, `last_symlink`, `debug`, `log_file=F`,
`passphrase_file=F` (an encrypted repository's passphrase; default
/etc/histfs/passphrase if it exists), `endpoint=URL` (S3). Generic mount
options (ro, defaults, auto, _netdev, nofail, x-systemd.*, ...) are
accepted and ignored; the mount is always read-only, nosuid and nodev, so
`rw`, `suid` and `dev` from an fstab line do not loosen it (mount.fuse adds
`dev,suid` for root on its own).
"""

from __future__ import annotations

import os
from pathlib import Path

from index.errors import ConfigError

DEFAULT_PASSPHRASE_FILE = Path("/etc/histfs/passphrase")

# Accepted and without effect: mount(8)'s and systemd's own, and those the
# mount is anyway (ro) or never is (suid, dev: always nosuid, nodev).
_IGNORED = {"ro", "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev",
            "nofail", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime",
            "noatime", "relatime", "nodiratime", "async", "sync", "default_permissions"}
_FLAGS = {"allow_other": "--allow-other", "last_symlink": "--last-symlink",
          "debug": "--debug"}
_VALUES = {"host": "--host", "log_file": "--log-file"}


def is_helper_call(argv: list[str], commands: set[str]) -> bool:
    """Whether `argv` (without the program name) is mount.fuse's call:
    SOURCE MOUNTPOINT [-o OPTIONS], the source not a subcommand."""
    return len(argv) >= 2 and argv[0] not in commands and not argv[0].startswith("-") \
        and not argv[1].startswith("-")


def mount_arguments(argv: list[str]) -> list[str]:
    """`histfs mount …` arguments for mount.fuse's call; sets the
    environment for the passphrase and the S3 endpoint."""
    positional: list[str] = []
    options: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "-o" and i + 1 < len(argv):
            options += [o for o in argv[i + 1].split(",") if o]
            i += 2
            continue
        if argv[i].startswith("-o") and len(argv[i]) > 2:
            options += [o for o in argv[i][2:].split(",") if o]
        elif argv[i].startswith("-"):
            raise ConfigError(f"mount helper: unknown argument {argv[i]!r}")
        else:
            positional.append(argv[i])
        i += 1
    if len(positional) != 2:
        raise ConfigError("mount helper: expected REPOSITORY MOUNTPOINT [-o OPTIONS]")
    source, mountpoint = positional
    out = ["mount", "--repo", source]
    passphrase_file: str | None = None
    for opt in options:
        key, has_value, value = opt.partition("=")
        if key in _FLAGS and not has_value:
            out.append(_FLAGS[key])
        elif key in _VALUES and has_value:
            out += [_VALUES[key], value]
        elif key == "passphrase_file" and has_value:
            passphrase_file = value
        elif key == "endpoint" and has_value:
            os.environ["HISTFS_S3_ENDPOINT"] = value
        elif key == "rw":
            raise ConfigError("histfs mounts are read-only: remove 'rw' from the options")
        elif key in _IGNORED or key.startswith(("x-systemd.", "x-", "comment=")) \
                or key == "comment":
            continue
        else:
            raise ConfigError(f"unknown mount option {opt!r} (histfs understands host=, "
                              "allow_other, last_symlink, debug, log_file=, "
                              "passphrase_file=, endpoint=)")
    if passphrase_file is None and DEFAULT_PASSPHRASE_FILE.exists():
        passphrase_file = str(DEFAULT_PASSPHRASE_FILE)
    if passphrase_file is not None and not any(
            os.environ.get(v) for v in ("HISTFS_PASSPHRASE", "HISTFS_PASSPHRASE_FILE",
                                        "HISTFS_PASSCOMMAND")):
        os.environ["HISTFS_PASSPHRASE_FILE"] = passphrase_file
    out.append(mountpoint)
    return out
