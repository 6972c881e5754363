"""A real PostgreSQL server for the tests: Debian's `postgresql` binaries,
a cluster made by initdb in a temporary directory, listening only on a Unix
socket there (no TCP). The server refuses to run as root, so under root it
runs as the `postgres` system user."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUPERUSER = "postgres"
DUMPER = "dumper"
"""A superuser that must give a password (scram-sha-256)."""


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]))
    assert found, ("PostgreSQL is not installed: scripts/setup-env installs Debian's "
                   "postgresql with HISTFS_EXTRAS=test")
    return Path(found[-1]).parent


class PgServer:
    """A running server; `psql` runs SQL in it as its superuser."""

    def __init__(self, top: Path, bin_dir: Path, run_as: dict[str, Any]) -> None:
        self.top = top
        self.data = top / "data"
        self.socket_dir = top
        self.bin_dir = bin_dir
        self._run_as = run_as

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """pg_ctl on this cluster, as the server's user."""
        return subprocess.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), *args],
                              capture_output=True, text=True, check=check, timeout=120,
                              **self._run_as)

    def client_args(self, user: str = SUPERUSER) -> list[str]:
        """Options of psql, pg_dump, ... that reach this server as `user`."""
        return [f"--host={self.socket_dir}", f"--username={user}", "--no-password"]

    def psql(self, sql: str, database: str = "postgres", *extra: str) -> str:
        """The output of `sql` (unaligned, tuples only, '|' between fields)."""
        proc = subprocess.run(
            ["psql", *self.client_args(), "--no-psqlrc", "--tuples-only", "--no-align",
             "--quiet", "--set=ON_ERROR_STOP=1", "--dbname=" + _dbname(database), *extra],
            input=sql, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def restore_command(self, database: str) -> str:
        """A shell command that feeds its standard input to psql in `database`."""
        return (f"psql --host={self.socket_dir} --username={SUPERUSER} --no-password "
                f"--no-psqlrc --quiet --set=ON_ERROR_STOP=1 --output=/dev/null "
                f"--dbname=\"{_dbname(database)}\"")


def _dbname(database: str) -> str:
    return "dbname='" + database.replace("\\", "\\\\").replace("'", "\\'") + "'"


@contextlib.contextmanager
def pg_server() -> Iterator[PgServer]:
    """A new cluster, started; stopped and removed afterwards."""
    bin_dir = _bin_dir()
    run_as: dict[str, Any] = {}
    # A short path: a Unix socket's path is limited to about 100 bytes.
    top = Path(tempfile.mkdtemp(prefix="histfs-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(top, owner.pw_uid, owner.pw_gid)
        run_as = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    server = PgServer(top, bin_dir, run_as)
    try:
        subprocess.run([str(bin_dir / "initdb"), "-D", str(server.data), "-U", SUPERUSER,
                        "-E", "UTF8", "--locale=C.UTF-8", "--auth=trust", "--no-sync"],
                       capture_output=True, check=True, timeout=300, **run_as)
        hba = server.data / "pg_hba.conf"
        hba.write_text(f"local all {DUMPER} scram-sha-256\nlocal all all trust\n")
        server.pg_ctl("-w", "-l", str(top / "log"), "-o",
                      f"-k {top} -c listen_addresses='' -c fsync=off "
                      "-c full_page_writes=off -c synchronous_commit=off", "start")
        yield server
    finally:
        if (server.data / "postmaster.pid").exists() and \
                server.pg_ctl("-w", "-m", "fast", "stop", check=False).returncode != 0:
            server.pg_ctl("-w", "-m", "immediate", "stop", check=False)
        shutil.rmtree(top, ignore_errors=True)
