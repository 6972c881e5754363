"""The keys of a `[[part]]` of `kind = "postgresql"` and the settings they
make (see writer/postgresql_dumps.py for what the backup runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from histfs.config_server import own_option, server_settings
from index.errors import ConfigError
from writer.postgresql_dumps import PostgresqlDumps

POSTGRESQL_KEYS = frozenset({"databases", "host", "port", "user", "password_file", "options"})
# pg_dump options histfs sets itself: output to stdout, plain SQL (which
# deduplicates, and is what `<db>.sql` promises), the database.
_OWN_OPTIONS = {"f": "file", "F": "format", "d": "dbname"}


def postgresql_source(table: dict[str, Any], pw: str, base: Path) -> PostgresqlDumps:
    """The settings of a part of kind "postgresql"; `base` is where a
    relative password_file is found (the configuration file's directory)."""
    s = server_settings(table, pw, base, ("host", "user"), _check_option)
    return PostgresqlDumps(s.databases, s.strings["host"], s.port, s.strings["user"],
                           s.password_file, s.options)


def _check_option(option: str, pw: str) -> None:
    """Refuse a pg_dump option that histfs sets itself (long options may
    be abbreviated)."""
    own = own_option(option, _OWN_OPTIONS)
    if own:
        raise ConfigError(f"{pw}options: {option!r}: histfs sets --{own} itself "
                          "(plain SQL to its standard output, one database per file)")
