"""Parts of `kind = "postgresql"` against a real server (tests/pg_server.py):
each database's plain dump and the globals streamed into a snapshot,
restored day by day with `restore --to-command psql` to what each day held;
failing dumps publish nothing truncated; no password anywhere but its file."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Mount, histfs
from tests.dump_parts import (
    assert_config_errors,
    backup_killing_dump,
    backup_summary,
    config_with_part,
    snapshot_rows,
)
from tests.pg_server import DUMPER, PgServer, pg_server
from writer.postgresql_dumps import PostgresqlDumps

PASSWORD = "s3cret-Pa55word"
ODD_NAME = "a/b 'é'"
"""A database whose name is no file name: its dump is "a%2Fb 'é'.sql"."""


@pytest.fixture
def pg() -> Iterator[PgServer]:
    with pg_server() as server:
        yield server


def _config(tmp_path: Path, pg: PgServer, extra: str = "") -> Path:
    return config_with_part(tmp_path, '[[part]]\nname = "pgsql"\nkind = "postgresql"\n'
                                      f'host = "{pg.socket_dir}"\n{extra}')


SHOP = """
CREATE TABLE item (id int PRIMARY KEY, name text, picture bytea, price numeric(10, 2));
INSERT INTO item SELECT i, 'Größe ' || i || ' — 日本語 ✓', decode(md5(i::text), 'hex'),
                        i * 1.25 FROM generate_series(1, 5000) AS i;
CREATE VIEW cheap AS SELECT id FROM item WHERE price < 100;
"""
SHOP_QUERY = "SELECT id, name, encode(picture, 'base64'), price FROM item ORDER BY id"


def _restore(cfg: Path, pg: PgServer, at: str, file: str, database: str) -> None:
    """Drop `database`, create it anew and load the dump `pgsql/<file>` of
    the snapshot at `at` into it."""
    pg.psql(f'DROP DATABASE IF EXISTS "{database}"; CREATE DATABASE "{database}"')
    histfs("restore", "--config", str(cfg), "--at", at, f"pgsql/{file}", "--to-command",
           pg.restore_command(database), check=0, timeout=600)


@pytest.mark.timeout(600)
def test_round_trip_day_by_day(tmp_path: Path, pg: PgServer,
                               mount_repo: Callable[..., Mount]) -> None:
    pg.psql(f"CREATE DATABASE shop; CREATE DATABASE \"{ODD_NAME}\"; "
            "CREATE ROLE clerk LOGIN")
    pg.psql(SHOP, "shop")
    pg.psql("CREATE TABLE note (t text); INSERT INTO note VALUES ('première')", ODD_NAME)
    cfg = _config(tmp_path, pg, 'user = "postgres"\n')
    days = []
    for _ in range(2):
        summary = backup_summary(cfg)
        assert summary["part_files"] == {"mail": 1, "pgsql": 4}, summary
        days.append((snapshot_rows(cfg)[-1]["time"], pg.psql(SHOP_QUERY, "shop"),
                     pg.psql("SELECT t FROM note", ODD_NAME)))
        # The next day: rows changed, added and removed, in both databases.
        pg.psql("UPDATE item SET name = name || ' (soldé)', picture = '\\x00ff'::bytea "
                "WHERE id % 100 = 7; DELETE FROM item WHERE id > 4990; "
                "INSERT INTO item VALUES (9999, 'nouveau', NULL, 1)", "shop")
        pg.psql("INSERT INTO note VALUES ('deuxième')", ODD_NAME)
        time.sleep(1)
    listed = json.loads(histfs("ls", "--config", str(cfg), "--json", "last", "pgsql",
                               check=0).stdout)
    files = sorted(row["path"] for row in listed)
    odd_file = "a%2Fb 'é'.sql"
    assert files == sorted(f"pgsql/{n}" for n in ("globals.sql", "postgres.sql", "shop.sql",
                                                   odd_file)), files
    assert all(row["mode"] == 0o600 for row in listed)
    for at, shop_rows, notes in days:
        _restore(cfg, pg, str(at), "shop.sql", "shop")
        assert pg.psql(SHOP_QUERY, "shop") == shop_rows
        assert pg.psql("SELECT count(*) FROM cheap", "shop").strip() != "0"
        _restore(cfg, pg, str(at), odd_file, ODD_NAME)
        assert pg.psql("SELECT t FROM note", ODD_NAME) == notes
    assert days[0][1] != days[1][1] and days[0][2] != days[1][2]
    # The globals hold the roles; cat streams any dump out.
    globals_sql = subprocess.run([sys.executable, "-m", "histfs", "cat", "--config", str(cfg),
                                  "last", "pgsql/globals.sql"], capture_output=True,
                                 check=True, timeout=300).stdout
    assert b"CREATE ROLE clerk" in globals_sql
    # Each day's dump is a version of its own, dated when its dump started.
    versions = json.loads(histfs("versions", "--config", str(cfg), "--json", "pgsql/shop.sql",
                                 check=0).stdout)
    assert [v["changed"] for v in versions] == [True, True], versions
    assert versions[0]["mtime_ns"] < versions[1]["mtime_ns"]
    root = tmp_path / "repo"
    m = mount_repo(root)
    dumped = m.path / "mx1" / "last" / "pgsql" / "shop.sql"
    st = dumped.stat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == len(dumped.read_bytes()) > 5000 * 40
    assert stat.S_IMODE((m.path / "mx1" / "last" / "pgsql").stat().st_mode) == 0o700


def _password_file(tmp_path: Path, pg: PgServer, mode: int = 0o600) -> Path:
    path = tmp_path / "pgpass"
    path.write_text(f"# for histfs\n*:*:*:{DUMPER}:{PASSWORD}\n")
    path.chmod(mode)
    return path


@pytest.mark.timeout(600)
def test_credentials_only_in_the_password_file(tmp_path: Path, pg: PgServer) -> None:
    pg.psql(f"CREATE ROLE {DUMPER} SUPERUSER LOGIN PASSWORD '{PASSWORD}'; "
            "CREATE DATABASE shop")
    pg.psql(SHOP, "shop")
    # Without the password the server refuses (scram-sha-256): the part fails.
    cfg = _config(tmp_path, pg, f'user = "{DUMPER}"\n')
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 2 and "no password supplied" in proc.stderr, proc.stderr
    # A password file that others may read is refused before libpq ignores it.
    pgpass = _password_file(tmp_path, pg, 0o644)
    cfg = _config(tmp_path, pg, f'user = "{DUMPER}"\npassword_file = "pgpass"\n'
                                'databases = ["shop"]\n')
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 2 and "chmod 600" in proc.stderr, proc.stderr
    pgpass.chmod(0o600)
    log = tmp_path / "histfs.log"
    proc = histfs("--log-file", str(log), "backup", "--config", str(cfg), "--json",
                  timeout=300)
    assert proc.returncode == 0, proc.stderr
    cat = subprocess.run([sys.executable, "-m", "histfs", "cat", "--config", str(cfg), "last",
                          "pgsql/shop.sql"], capture_output=True, check=True, timeout=300)
    assert b"COPY public.item" in cat.stdout
    said = [proc.stdout, proc.stderr, log.read_text(),
            histfs("snapshots", "--config", str(cfg), "--json", check=0).stdout,
            histfs("info", "--config", str(cfg), check=0).stdout]
    assert not [s for s in said if PASSWORD in s]
    # Nor in any argv histfs builds: the file's path goes in the environment.
    source = PostgresqlDumps(("all",), str(pg.socket_dir), None, DUMPER, pgpass, ("-v",))
    dumps = list(source.dumps())
    assert [d.file for d in dumps] == ["globals.sql", "postgres.sql", "shop.sql"]
    for dump in dumps:
        assert not [a for a in dump.argv if PASSWORD in a or "pgpass" in a], dump.argv
        assert dict(dump.env) == {"PGPASSFILE": str(pgpass)}


@pytest.mark.timeout(600)
def test_a_missing_database_publishes_nothing(tmp_path: Path, pg: PgServer) -> None:
    pg.psql("CREATE DATABASE shop")
    cfg = _config(tmp_path, pg, 'user = "postgres"\ndatabases = ["shop", "nosuch"]\n')
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "part pgsql: pg_dump of database 'nosuch' exited with status 1" in last, last
    assert 'database "nosuch" does not exist' in last, last
    assert snapshot_rows(cfg) == []
    cfg = _config(tmp_path, pg,
                  'user = "postgres"\ndatabases = ["shop", "nosuch"]\non_error = "warn"\n')
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 1 and "nosuch" in proc.stderr, proc.stderr
    [snap] = snapshot_rows(cfg)
    assert snap["parts"] == ["mail"]


@pytest.mark.timeout(600)
def test_a_dump_killed_midway_publishes_nothing(tmp_path: Path, pg: PgServer) -> None:
    pg.psql("CREATE DATABASE big")
    pg.psql("CREATE TABLE t (id int, v text); INSERT INTO t SELECT i, repeat(md5(i::text), 8) "
            "FROM generate_series(1, 400000) AS i", "big")
    cfg = _config(tmp_path, pg, 'user = "postgres"\ndatabases = ["big"]\n')
    proc, killed = backup_killing_dump(
        cfg, lambda argv: any(a.endswith(b"pg_dump") for a in argv[:2])
        and f"--host={pg.socket_dir}".encode() in argv)
    assert killed, "pg_dump ended before it could be killed"
    assert proc.returncode == 2, proc.stderr
    assert "part pgsql: pg_dump of database 'big' killed by signal 9" in proc.stderr
    assert snapshot_rows(cfg) == []


def test_config_of_a_postgresql_part(tmp_path: Path) -> None:
    cases = [
        ('databases = []\n', "databases"),
        ('databases = ["all", "shop"]\n', "databases"),
        ('databases = ["shop", "shop"]\n', "databases"),
        ('databases = "shop"\nport = 0\n', "port"),
        ('port = "5432"\n', "port"),
        ('user = ""\n', "user"),
        ('options = ["--file=/tmp/x"]\n', "options"),
        ('options = ["-Fc"]\n', "options: '-Fc': histfs sets --format itself"),
        ('options = ["--form=custom"]\n', "options: '--form=custom': histfs sets --format"),
        ('options = "--clean"\n', "options"),
        ('command = "pg_dump"\n', "command"),
        ('paths = ["/x"]\n', "paths"),
        ('chunk_size = "1KiB"\n', "chunk_size"),
    ]
    assert_config_errors(tmp_path, 'name = "pgsql"\nkind = "postgresql"\n', cases)


CHECKSUM = "SELECT count(*), md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t"


@pytest.mark.timeout(900)
def test_a_large_table(tmp_path: Path, pg: PgServer) -> None:
    rows = 1_000_000  # a dump of about 200 MB
    pg.psql("CREATE DATABASE big")
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT i, "
            f"repeat(md5(i::text), 6) FROM generate_series(1, {rows}) AS i", "big")
    cfg = _config(tmp_path, pg, 'user = "postgres"\ndatabases = ["big"]\n')
    first = backup_summary(cfg)
    day1 = (snapshot_rows(cfg)[-1]["time"], pg.psql(CHECKSUM, "big"))
    # 0.3% of the rows, spread over the whole table.
    pg.psql("UPDATE t SET v = upper(v) WHERE id % 333 = 0", "big")
    time.sleep(1)
    second = backup_summary(cfg)
    day2 = (snapshot_rows(cfg)[-1]["time"], pg.psql(CHECKSUM, "big"))
    size = first["bytes_read"]
    assert isinstance(size, int) and size > rows * 190
    added = second["bytes_added"]
    assert isinstance(added, int) and added < size // 4, (first, second)
    for at, checksum in (day1, day2):
        _restore(cfg, pg, str(at), "big.sql", "big")
        assert pg.psql(CHECKSUM, "big") == checksum
    assert day1[1] != day2[1]
