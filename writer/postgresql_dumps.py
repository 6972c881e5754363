"""A part of `kind = "postgresql"`: `<db>.sql` by `pg_dump` (plain SQL, so
that small chunks deduplicate all but the changed rows) for each database,
and `globals.sql` by `pg_dumpall --globals-only` (roles, tablespaces).

Databases named "all" are every one that accepts connections and is not a
template, listed with psql when the backup runs. A password is never on a
command line: the settings' password file is handed to libpq as PGPASSFILE,
and histfs does not read the password itself. Every process gets
`--no-password`, so a missing password fails rather than waits."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from index.errors import SourceError
from writer.command_output import last_lines, process_failed
from writer.dumps import Dump, describe_server, dump_file_name, read_password_file

GLOBALS = "globals.sql"
_LIST = ("SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate "
         "ORDER BY datname")
# Where the list of databases is read, as pg_dumpall reads its own.
_LIST_FROM = ("postgres", "template1")


@dataclass(frozen=True)
class PostgresqlDumps:
    """The settings of a part of kind "postgresql"."""

    databases: tuple[str, ...] = ("all",)
    host: str | None = None
    port: int | None = None
    user: str | None = None
    password_file: Path | None = None
    """A file of libpq's password file format (PGPASSFILE)."""
    options: tuple[str, ...] = ()
    """More pg_dump arguments."""

    def describe(self) -> str:
        """The server and databases, as the snapshot records the source."""
        return describe_server("postgresql", (("host", self.host), ("port", self.port),
                                              ("user", self.user)), self.databases)

    def dumps(self) -> Iterator[Dump]:
        """globals.sql, then each database's dump; "all" lists the
        databases first (SourceError if that fails)."""
        env = self._env()
        server = self._server_args()
        yield Dump(GLOBALS, ("pg_dumpall", "--globals-only", *server), env,
                   what="pg_dumpall --globals-only")
        names = self._all(env) if self.databases == ("all",) else self.databases
        for name in names:
            yield Dump(dump_file_name(name, ".sql", reserved={GLOBALS}),
                       ("pg_dump", *server, *self.options, "--dbname=" + conninfo(name)),
                       env, what=f"pg_dump of database {name!r}")

    def _server_args(self) -> tuple[str, ...]:
        args = ["--no-password"]
        if self.host is not None:
            args.append(f"--host={self.host}")
        if self.port is not None:
            args.append(f"--port={self.port}")
        if self.user is not None:
            args.append(f"--username={self.user}")
        return tuple(args)

    def _env(self) -> dict[str, str]:
        """PGPASSFILE, once checked: libpq ignores a missing file and one
        that others may read, and then only says that no password was
        supplied."""
        if self.password_file is None:
            return {}
        path = self.password_file
        lines = read_password_file(path).splitlines()
        if not any(_unescaped_colons(ln) >= 4 for ln in lines if not ln.startswith(b"#")):
            raise SourceError(f"password_file {path}: no line of the form "
                              "host:port:database:user:password")
        return {"PGPASSFILE": str(path)}

    def _all(self, env: dict[str, str]) -> list[str]:
        """Every database that accepts connections and is not a template."""
        for database in _LIST_FROM:
            argv = ("psql", *self._server_args(), "--no-psqlrc", "--tuples-only",
                    "--no-align", "--record-separator-zero", "--quiet",
                    "--set=ON_ERROR_STOP=1", "--command=" + _LIST,
                    "--dbname=" + conninfo(database))
            # No conversion of names: they come back as the bytes that the
            # server holds, and go back to pg_dump as such.
            try:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                      env={**os.environ, **env,
                                           "PGCLIENTENCODING": "SQL_ASCII"}, check=False)
            except OSError as exc:
                raise SourceError(f"psql could not be started: {exc.strerror or exc}") from None
            if proc.returncode == 0:
                return [os.fsdecode(n) for n in proc.stdout.rstrip(b"\n").split(b"\0")
                        if n]
            said = last_lines(proc.stderr)
            if f'database "{database}" does not exist' not in said:
                break
        raise SourceError(process_failed("psql listing the databases", proc.returncode, said))


def conninfo(database: str) -> str:
    """A libpq connection string naming `database` alone, quoted so that
    no name is read as a connection string of its own."""
    quoted = database.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{quoted}'"


def _unescaped_colons(line: bytes) -> int:
    """The field separators of a password file's line."""
    count, escaped = 0, False
    for byte in line:
        count += byte == 0x3A and not escaped
        escaped = byte == 0x5C and not escaped
    return count
