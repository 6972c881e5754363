"""Where the passphrase of an encrypted repository comes from.

In this order: `HISTFS_PASSPHRASE` (visible to the processes of the same
user: for tests and one-off use), `HISTFS_PASSPHRASE_FILE` (its first
line), `HISTFS_PASSCOMMAND` (the first line of the command's output, e.g.
`pass show histfs`), else a prompt on the terminal. A new passphrase (init,
change-passphrase) comes from `HISTFS_NEW_PASSPHRASE`,
`HISTFS_NEW_PASSPHRASE_FILE`, or for init the variables above, else it is
asked for twice.
"""

from __future__ import annotations

import getpass
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from index.errors import ConfigError


def _first_line(text: str) -> str:
    return text.split("\n", 1)[0].rstrip("\r")


def from_environment(value_var: str, file_var: str,
                     command_var: str | None = None) -> str | None:
    """The passphrase that the variables name (a value, a file's first line,
    a command's first line of output), or None if none is set."""
    env = os.environ
    if env.get(value_var):
        return env[value_var]
    if env.get(file_var):
        path = env[file_var]
        try:
            with open(path, encoding="utf-8") as f:
                return _checked(_first_line(f.read()), f"{file_var} {path}")
        except OSError as exc:
            raise ConfigError(f"cannot read {file_var} {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{file_var} {path}: not UTF-8 text") from None
    if command_var and env.get(command_var):
        argv = shlex.split(env[command_var])
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ConfigError(f"{command_var} failed: {exc}") from None
        if proc.returncode != 0:
            # Its stderr may say why (no such entry); its stdout is never shown.
            why = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            raise ConfigError(f"{command_var} failed: {why[0][:200]}")
        return _checked(_first_line(proc.stdout), command_var)
    return None


def _checked(passphrase: str, where: str) -> str:
    if not passphrase:
        raise ConfigError(f"{where} gives an empty passphrase")
    return passphrase


def _can_ask() -> bool:
    return sys.stdin.isatty()


def passphrase_for(repo: str) -> str:
    """The passphrase of the existing repository `repo`."""
    found = from_environment("HISTFS_PASSPHRASE", "HISTFS_PASSPHRASE_FILE", "HISTFS_PASSCOMMAND")
    if found is not None:
        return found
    if not _can_ask():
        raise ConfigError(f"repository {repo} is encrypted: give its passphrase in "
                          "HISTFS_PASSPHRASE_FILE or HISTFS_PASSCOMMAND, or run on a terminal")
    return _checked(getpass.getpass(f"Passphrase of {repo}: "), "the passphrase")


def asked_for(repo: Path | str) -> Callable[[], str]:
    """The passphrase of `repo` as the packages take it: a call, made only
    when the repository turns out to be encrypted and its key is not open
    in this process yet."""
    return lambda: passphrase_for(str(repo))


def new_passphrase(repo: str, for_init: bool) -> str:
    """A new passphrase for `repo`, asked twice when it comes from a terminal."""
    found = from_environment("HISTFS_NEW_PASSPHRASE", "HISTFS_NEW_PASSPHRASE_FILE")
    if found is None and for_init:
        found = from_environment("HISTFS_PASSPHRASE", "HISTFS_PASSPHRASE_FILE",
                                 "HISTFS_PASSCOMMAND")
    if found is not None:
        return found
    if not _can_ask():
        raise ConfigError("a new passphrase is needed: set HISTFS_NEW_PASSPHRASE_FILE"
                          + (" (or HISTFS_PASSPHRASE_FILE)" if for_init else "")
                          + ", or run on a terminal")
    first = _checked(getpass.getpass(f"New passphrase for {repo}: "), "the passphrase")
    if getpass.getpass("Same passphrase again: ") != first:
        raise ConfigError("the two passphrases differ; nothing was changed")
    return first
