"""The keys that the database kinds of `[[part]]` ("postgresql", "mysql")
share: which databases, how to reach the server, more options for the dump
program. Each kind says which string keys it takes and which options it
refuses."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histfs.config_values import get_names, get_value
from index.errors import ConfigError


@dataclass(frozen=True)
class ServerSettings:
    """A database part's settings, checked."""

    databases: tuple[str, ...]
    """("all",) or names, none empty, none twice."""
    strings: dict[str, str | None]
    """host, user, socket...: each absent (None) or a non-empty string."""
    port: int | None
    password_file: Path | None
    """Made absolute from the configuration file's directory."""
    options: tuple[str, ...]


def server_settings(table: dict[str, Any], pw: str, base: Path, string_keys: Iterable[str],
                    check_option: Callable[[str, str], None]) -> ServerSettings:
    """Read and check `databases`, the `string_keys` (besides
    `password_file`), `port` and `options` (each passed to `check_option`)
    of the part table `table`; `pw` prefixes errors, `base` is where a
    relative password_file is found."""
    databases = get_names(table, "databases", pw) if "databases" in table else ["all"]
    if not databases or ("all" in databases and len(databases) > 1):
        raise ConfigError(f"{pw}databases: expected [\"all\"] or a list of database names, "
                          f"got {table.get('databases')!r}")
    for i, name in enumerate(databases):
        if not name or "\0" in name or name in databases[:i]:
            raise ConfigError(f"{pw}databases: {name!r} is empty, holds NUL or is given "
                              "twice")
    strings: dict[str, str | None] = {}
    for key in (*string_keys, "password_file"):
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
        check_option(option, pw)
    password_file = strings.pop("password_file")
    return ServerSettings(tuple(databases), strings, port,
                          None if password_file is None else base / password_file,
                          tuple(options))


def own_option(option: str, own_options: dict[str, str]) -> str | None:
    """The long name in `own_options` (short letter: long name) that
    `option` gives, by its letter or its long name or a prefix of it (the
    dump programs take abbreviated long options); None if none."""
    if option.startswith("--"):
        name = option[2:].partition("=")[0]
        found = [long for long in own_options.values() if name and long.startswith(name)]
        return found[0] if found else None
    if option[:1] == "-" and option[1:2] in own_options:
        return own_options[option[1]]
    return None
