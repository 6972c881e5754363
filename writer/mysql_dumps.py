"""A part of `kind = "mysql"` (MariaDB or MySQL): `<db>.sql` for each
database, made by `mariadb-dump` (or `mysqldump`, where that is its name)
with --single-transaction (a consistent view of InnoDB tables without
locking them), --routines, --events, --triggers and --databases (the dump
creates its database and uses it, so that it restores into a server as
it is).

Databases named "all" are every one but information_schema,
performance_schema and sys, listed with the client when the backup runs.
A password is never on a command line: read from the settings' password
file, it is handed to the client programs in MYSQL_PWD."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from index.errors import SourceError
from writer.command_output import last_lines, process_failed
from writer.dumps import Dump, describe_server, dump_file_name, read_password_file

SYSTEM_DATABASES = frozenset({"information_schema", "performance_schema", "sys"})
# Names in hexadecimal: whatever they hold, one line each.
_LIST = "SELECT HEX(schema_name) FROM information_schema.schemata ORDER BY schema_name"
_DUMP_OPTIONS = ("--single-transaction", "--routines", "--events", "--triggers")
# Options that every client takes and that must come first.
_FIRST_OPTIONS = ("--no-defaults", "--defaults-file=", "--defaults-extra-file=",
                  "--defaults-group-suffix=")


@dataclass(frozen=True)
class MysqlDumps:
    """The settings of a part of kind "mysql"."""

    databases: tuple[str, ...] = ("all",)
    host: str | None = None
    port: int | None = None
    socket: str | None = None
    user: str | None = None
    password_file: Path | None = None
    """A file holding the password on its first line."""
    options: tuple[str, ...] = ()
    """More arguments of the dump program (option files first)."""

    def describe(self) -> str:
        """The server and databases, as the snapshot records the source."""
        return describe_server("mysql", self._server(), self.databases)

    def dumps(self) -> Iterator[Dump]:
        """Each database's dump; "all" lists the databases first
        (SourceError if that fails)."""
        env = self._env()
        dump = _program("mariadb-dump", "mysqldump")
        first = [o for o in self.options if o.startswith(_FIRST_OPTIONS)]
        rest = [o for o in self.options if o not in first]
        names = self._all(env, first) if self.databases == ("all",) else self.databases
        for name in names:
            yield Dump(dump_file_name(name, ".sql"),
                       (dump, *first, *self._server_args(), *_DUMP_OPTIONS, *rest,
                        "--databases", "--", name),
                       env, what=f"{os.path.basename(dump)} of database {name!r}")

    def _server(self) -> tuple[tuple[str, object], ...]:
        """The settings that reach the server, as the client programs name them."""
        return (("host", self.host), ("port", self.port), ("socket", self.socket),
                ("user", self.user))

    def _server_args(self) -> list[str]:
        return [f"--{key}={value}" for key, value in self._server() if value is not None]

    def _env(self) -> dict[str, str]:
        """MYSQL_PWD, from the password file once checked."""
        if self.password_file is None:
            return {}
        path = self.password_file
        first = read_password_file(path).partition(b"\n")[0].rstrip(b"\r")
        if not first:
            raise SourceError(f"password_file {path}: no password on its first line")
        return {"MYSQL_PWD": os.fsdecode(first)}

    def _all(self, env: dict[str, str], first: list[str]) -> list[str]:
        """Every database but the system's own."""
        client = _program("mariadb", "mysql")
        argv = (client, *first, *self._server_args(), "--batch", "--skip-column-names",
                "--execute=" + _LIST)
        try:
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  env={**os.environ, **env}, check=False)
        except OSError as exc:
            raise SourceError(f"{client} could not be started: {exc.strerror or exc}") from None
        if proc.returncode != 0:
            raise SourceError(process_failed(f"{os.path.basename(client)} listing the databases",
                                             proc.returncode, last_lines(proc.stderr)))
        names = [bytes.fromhex(h.decode()).decode("utf-8", "surrogateescape")
                 for h in proc.stdout.split()]
        return [n for n in names if n.lower() not in SYSTEM_DATABASES]


def _program(*names: str) -> str:
    """The first of `names` found in PATH (its last name if none is, for
    the error that running it gives)."""
    for name in names:
        if shutil.which(name):
            return name
    return names[-1]
