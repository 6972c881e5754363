"""The `[[part]]` tables of the configuration file by kind: which keys each
kind takes, and the part that a table of a dump kind ("command",
"postgresql", ...) makes. Each dump kind is a `PartKind`: its own keys and
a small function turning them into the part's `DumpSource`, whose dumps
are found when the backup runs, not here."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from histfs.config_mysql import MYSQL_KEYS, mysql_source
from histfs.config_postgresql import POSTGRESQL_KEYS, postgresql_source
from histfs.config_sqlite import SQLITE_KEYS, sqlite_source
from histfs.config_values import get_value, parse_chunk_size
from index.errors import ConfigError
from index.format.names import safe_name
from writer.command_part import CommandDumps
from writer.dumps import DumpSource
from writer.parts import Part

# Excludes that may be set for every part at the top level, and per part.
EXCLUDE_KEYS = frozenset({"exclude_from", "exclude_caches", "exclude_if_present",
                          "one_file_system"})
# How a directory part holds mailboxes, for `histfs mailbox`.
MAIL_KEYS = frozenset({"layout", "mailbox_path", "after_mailbox_restore"})
DIRECTORY_KEYS = frozenset({"name", "path", "exclude", "enabled", "chunk_size", "kind",
                            *EXCLUDE_KEYS, *MAIL_KEYS})
_DUMP_KEYS = frozenset({"name", "kind", "enabled", "chunk_size", "on_error"})
"""The keys of every dump kind."""


@dataclass(frozen=True)
class PartKind:
    """A dump kind: the keys it takes besides `_DUMP_KEYS`, those it needs,
    its chunk size when the table gives none (None: the repository's), and
    `source(table, where, base)`, its settings read from the table (`base`:
    where relative paths start)."""

    keys: frozenset[str]
    needs: tuple[str, ...]
    source: Callable[[dict[str, Any], str, Path], DumpSource]
    chunk_size: int | None = None


def _command_source(table: dict[str, Any], pw: str, base: Path) -> DumpSource:
    """A part of `kind = "command"`: one file, the command's standard output."""
    command = get_value(table, "command", str, pw)
    file = get_value(table, "file", str, pw)
    if not safe_name(os.fsencode(file)):
        raise ConfigError(f"{pw}file: expected a file name (no '/'), got {file!r}")
    return CommandDumps(command, file)


KINDS: dict[str, PartKind] = {
    "command": PartKind(frozenset({"command", "file"}), ("name", "command", "file"),
                        _command_source),
    # Plain dumps change where rows change: small chunks store little else.
    "postgresql": PartKind(POSTGRESQL_KEYS, ("name",), postgresql_source, 16 << 10),
    "mysql": PartKind(MYSQL_KEYS, ("name",), mysql_source, 16 << 10),
    "sqlite": PartKind(SQLITE_KEYS, ("name", "paths"), sqlite_source),
}
PART_KEYS = DIRECTORY_KEYS | _DUMP_KEYS | {k for kind in KINDS.values() for k in kind.keys}
"""Every key a `[[part]]` table may have, of one kind or another."""


def dump_part(table: dict[str, Any], pw: str, base: Path) -> Part:
    """The part of a table whose `kind` is not "directory"; `pw` names the
    table ("FILE: part[N].") in errors."""
    name = get_value(table, "kind", str, pw)
    kind = KINDS.get(name)
    if kind is None:
        known = ", ".join(f'"{k}"' for k in ["directory", *KINDS][:-1])
        raise ConfigError(f"{pw}kind: expected {known} or \"{[*KINDS][-1]}\", got {name!r}")
    for key in table:
        if key not in kind.keys and key not in _DUMP_KEYS:
            raise ConfigError(f"{pw}{key}: " + ("unknown key" if key not in PART_KEYS else
                                                f"not a key of a part of kind \"{name}\""))
    part_name = get_value(table, "name", str, pw)
    if any(not table.get(key) for key in kind.needs):
        needs = ", ".join(kind.needs[:-1]) + " and " if len(kind.needs) > 1 else ""
        raise ConfigError(f"{pw[:-1]}: a part of kind \"{name}\" needs {needs}{kind.needs[-1]}")
    source = kind.source(table, pw, base)
    on_error = get_value(table, "on_error", str, pw) or "fail"
    if on_error not in ("fail", "warn"):
        raise ConfigError(f"{pw}on_error: expected \"fail\" or \"warn\", got {on_error!r}")
    enabled = get_value(table, "enabled", bool, pw)
    chunk_size = table.get("chunk_size")
    return Part(part_name, Path("/"), (), True if enabled is None else enabled,
                kind.chunk_size if chunk_size is None else parse_chunk_size(chunk_size, pw),
                dump_source=source, on_error=on_error)
