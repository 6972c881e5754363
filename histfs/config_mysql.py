"""The keys of a `[[part]]` of `kind = "mysql"` and the settings they make
(see writer/mysql_dumps.py for what the backup runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histfs.config_values import get_names, get_value
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
    databases = get_names(table, "databases", pw) if "databases" in table else ["all"]
    if not databases or ("all" in databases and len(databases) > 1):
        raise ConfigError(f"{pw}databases: expected [\"all\"] or a list of database names, "
                          f"got {table.get('databases')!r}")
    for i, name in enumerate(databases):
        if not name or "\0" in name or name in databases[:i]:
            raise ConfigError(f"{pw}databases: {name!r} is empty, holds NUL or is given "
                              "twice")
    strings = {}
    for key in ("host", "socket", "user", "password_file"):
        value = strings[key] = get_value(table, key, str, pw)
        if value == "" or (value and "\0" in value):
            raise ConfigError(f"{pw}{key}: expected a non-empty string, got {value!r}")
    port = get_value(table, "port", int, pw)
    if port is not None and not 0 < port < 65536:
        raise ConfigError(f"{pw}port: expected 1 to 65535, got {port}")
    options = get_value(table, "options", list, pw) or []
    if not all(isinstance(o, str) and "\0" not in o for o in options):
        raise ConfigError(f"{pw}options: expected a list of strings, got {options!r}")
    for option in options:
        _check_option(option, pw)
    password_file = strings["password_file"]
    return MysqlDumps(
        tuple(databases), strings["host"], port, strings["socket"], strings["user"],
        None if password_file is None else base / password_file, tuple(options))


def _check_option(option: str, pw: str) -> None:
    """Refuse a dump option that histfs sets itself, or a password."""
    if option.startswith("--"):
        name = option[2:].partition("=")[0]
        own = [long for long in _OWN_OPTIONS.values() if name and long.startswith(name)]
    else:
        own = [_OWN_OPTIONS[option[1]]] if option[:1] == "-" and option[1:2] in _OWN_OPTIONS \
            else []
    if own == ["password"]:
        # Not repeated in the message: it may be the password itself.
        raise ConfigError(f"{pw}options: a password is never given on the command line; "
                          "use password_file")
    if own:
        raise ConfigError(f"{pw}options: {option!r}: histfs sets the dump's output itself "
                          "(SQL to its standard output, one database per file)")
