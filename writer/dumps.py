"""What a part of a dump kind ("command", "postgresql", ...) is made of:
files that are each the standard output of one process (a `Dump`), given
by the part's `DumpSource` when the backup runs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from index.errors import SourceError

# Bytes that never go into a file name made of a name chosen elsewhere (a
# database's): '/' would make a path, '%' is the escape itself, control
# characters make listings unreadable.
_ESCAPED = frozenset("/%") | frozenset(map(chr, [*range(0x20), 0x7F]))


@dataclass(frozen=True)
class Dump:
    """One file of a dump part: `file` in the part's directory holds what
    `argv` (run without a shell) writes on its standard output."""

    file: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    """Variables added to histfs's environment for this process: where
    credentials go (a password file's path), never into `argv`."""
    what: str = ""
    """The process as an error names it, e.g. "pg_dump of database 'x'";
    its argv[0] if empty."""

    def describe(self) -> str:
        """The process as an error names it."""
        return self.what or self.argv[0]


class DumpSource(Protocol):
    """The settings of a dump part, by kind: what the snapshot records as
    the part's source, and the part's dumps."""

    def describe(self) -> str:
        """The part's source as the snapshot records it (no credential)."""
        ...

    def dumps(self) -> Iterable[Dump]:
        """The part's dumps, found when the backup runs (listing databases
        may itself run a query); raises SourceError if they cannot be."""
        ...


def dump_file_name(name: str, suffix: str, reserved: Iterable[str] = ()) -> str:
    """A file name for the dump of `name` (a database's, say): `name` with
    '/', '%' and control characters written %XX, then `suffix`. Distinct
    names give distinct files; a name that would give one of the
    `reserved` file names has its first character written %XX too."""
    escaped = "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in name)
    if escaped + suffix in reserved and escaped:
        escaped = "".join(f"%{b:02X}" for b in escaped[0].encode()) + escaped[1:]
    return escaped + suffix


def read_password_file(path: Path) -> bytes:
    """The content of a part's `password_file`; SourceError (naming it) if
    it cannot be read or if group or others may read it, as a password
    file must be private to its owner (libpq even ignores it silently)."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            content = f.read()
    except OSError as exc:
        raise SourceError(f"password_file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise SourceError(f"password_file {path}: mode {stat.S_IMODE(mode):04o}; a password "
                          "file must be private to its owner (chmod 600)")
    return content


def describe_server(kind: str, settings: Iterable[tuple[str, object]],
                    databases: Iterable[str]) -> str:
    """A database part's source as the snapshot records it: its kind, the
    settings given (None: not given) and the databases; no credential."""
    given = "".join(f"{key}={value} " for key, value in settings if value is not None)
    return f"{kind} {given}databases={','.join(databases)}"
