"""The keys of a `[[part]]` of `kind = "mysql"` and the settings they make
(see writer/mysql_dumps.py for what the backup runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histfs.config_server import own_option, server_settings
from index.errors import ConfigError
from writer.mysql_dumps import MysqlDumps

MYSQL_KEYS = frozenset({"databases", "host", "port", "socket", "user", "password_file",
                        "options"})
# Dump options histfs sets itself or that would put a password on the
# command line, by their long name (a long option may be abbreviated)
# and short letter.
_OWN_OPTIONS = {"r": "result-file", "T": "tab", "B": "databases", "A": "all-databases",
                "X": "xml", "p": "password"}


def mysql_source(table: dict[str, Any], pw: str, base: Path) -> MysqlDumps:
    """The settings of a part of kind "mysql"; `base` is where a relative
    password_file is found (the configuration file's directory)."""
    s = server_settings(table, pw, base, ("host", "socket", "user"), _check_option)
    return MysqlDumps(s.databases, s.strings["host"], s.port, s.strings["socket"],
                      s.strings["user"], s.password_file, s.options)


def _check_option(option: str, pw: str) -> None:
    """Refuse a dump option that histfs sets itself, or a password."""
    own = own_option(option, _OWN_OPTIONS)
    if own == "password":
        # Not repeated in the message: it may be the password itself.
        raise ConfigError(f"{pw}options: a password is never given on the command line; "
                          "use password_file")
    if own:
        raise ConfigError(f"{pw}options: {option!r}: histfs sets the dump's output itself "
                          "(SQL to its standard output, one database per file)")
