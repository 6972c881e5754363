"""A real MariaDB server for the tests: Debian's `mariadb-server` binaries,
a data directory made by mariadb-install-db in a temporary directory, a
server listening only on a Unix socket there (no TCP), stopped by its pid
(SIGTERM, then SIGKILL) and removed afterwards. No option file of the
machine is read (--no-defaults)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT_USER = "root"
"""The superuser, who needs no password on the socket."""
DUMPER = "dumper"
"""A user that must give a password."""


def _program(*names: str) -> str:
    for name in names:
        found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
        if found:
            return found
    raise AssertionError(f"MariaDB is not installed ({' or '.join(names)} not found): "
                         "scripts/setup-env installs Debian's mariadb-server with "
                         "HISTFS_EXTRAS=test")


class MariadbServer:
    """A running server; `sql` runs SQL in it as root."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.data = top / "data"
        self.socket = top / "sock"
        self.pid_file = top / "pid"
        self.client = _program("mariadb", "mysql")

    def client_args(self, user: str = ROOT_USER) -> list[str]:
        """Options of mariadb, mariadb-dump, ... that reach this server as
        `user` (--no-defaults first, as it must be)."""
        return ["--no-defaults", f"--socket={self.socket}", f"--user={user}"]

    def sql(self, sql: str, database: str | None = None) -> str:
        """The output of `sql` (tab-separated, no column names)."""
        proc = subprocess.run(
            [self.client, *self.client_args(), "--batch", "--skip-column-names",
             "--default-character-set=utf8mb4", *([database] if database else [])],
            input=sql, capture_output=True, text=True, timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def restore_command(self) -> str:
        """A shell command that feeds its standard input to the client as
        root (a dump made with --databases names its database itself)."""
        return f"{self.client} --no-defaults --socket={self.socket} --user={ROOT_USER}"


def _wait_for(server: MariadbServer, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the server answers on its socket."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"mariadbd ended: {log.read_text()[-2000:]}"
        if server.socket.exists():
            ping = subprocess.run([server.client, *server.client_args(), "--execute=SELECT 1"],
                                  capture_output=True, timeout=60, check=False)
            if ping.returncode == 0:
                return
        assert time.monotonic() < deadline, f"mariadbd did not start: {log.read_text()[-2000:]}"
        time.sleep(0.1)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 60 s, to the server started here."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def mariadb_server() -> Iterator[MariadbServer]:
    """A new server, started; stopped and removed afterwards."""
    mariadbd = _program("mariadbd", "mysqld")
    install_db = _program("mariadb-install-db", "mysql_install_db")
    # A short path: a Unix socket's path is limited to about 100 bytes.
    top = Path(tempfile.mkdtemp(prefix="histfs-my-", dir="/tmp"))
    server = MariadbServer(top)
    # As root the server would switch to the `mysql` user unless told to
    # stay root; as any other user it runs as that user.
    as_user = ["--user=root"] if os.geteuid() == 0 else []
    log = top / "error.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([install_db, "--no-defaults", f"--datadir={server.data}",
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        *as_user], capture_output=True, check=True, timeout=300)
        proc = subprocess.Popen(
            [mariadbd, "--no-defaults", f"--datadir={server.data}",
             f"--socket={server.socket}", "--skip-networking", f"--pid-file={server.pid_file}",
             f"--log-error={log}", "--innodb-flush-log-at-trx-commit=0",
             "--innodb-buffer-pool-size=128M", "--character-set-server=utf8mb4",
             "--collation-server=utf8mb4_unicode_ci", *as_user],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(server, proc, log)
        # Its pid file names the process started here.
        assert int(server.pid_file.read_text()) == proc.pid
        yield server
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(top, ignore_errors=True)
