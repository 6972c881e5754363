"""Parts of `kind = "mysql"` against a real MariaDB (tests/mariadb_server.py):
each database's dump streamed into a snapshot, restored day by day with
`restore --to-command mariadb` to what each day held; failing dumps
publish nothing truncated; no password anywhere but its file (and the
dump's environment)."""

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
from tests.mariadb_server import DUMPER, MariadbServer, mariadb_server
from writer.mysql_dumps import MysqlDumps

PASSWORD = "s3cret-Pa55 word"
ODD_NAME = "café/2"
"""A database whose name is no file name: its dump is "café%2F2.sql"."""


@pytest.fixture
def my() -> Iterator[MariadbServer]:
    with mariadb_server() as server:
        yield server


def _config(tmp_path: Path, my: MariadbServer, extra: str = "") -> Path:
    return config_with_part(tmp_path, '[[part]]\nname = "mysql"\nkind = "mysql"\n'
                                      f'socket = "{my.socket}"\n'
                                      f'options = ["--no-defaults"]\n{extra}')


SHOP = """
CREATE TABLE item (id INT PRIMARY KEY, name VARCHAR(200), picture BLOB,
                   price DECIMAL(10, 2)) ENGINE=InnoDB;
INSERT INTO item SELECT seq, CONCAT('Größe ', seq, ' — 日本語 ✓ 😀 ''quoted'' \\\\'),
                        IF(seq % 5 = 0, NULL, UNHEX(CONCAT(MD5(seq), '00275C0A0DFF'))),
                        seq * 1.25 FROM seq_1_to_5000;
CREATE TABLE log (item INT, said VARCHAR(100));
CREATE VIEW cheap AS SELECT id FROM item WHERE price < 100;
CREATE TRIGGER sold AFTER UPDATE ON item FOR EACH ROW
    INSERT INTO log VALUES (NEW.id, CONCAT('soldé ', NEW.name));
CREATE FUNCTION taxed(p DECIMAL(10, 2)) RETURNS DECIMAL(10, 2) DETERMINISTIC
    RETURN p * 1.2;
"""
SHOP_QUERY = "SELECT id, name, HEX(picture), price FROM item ORDER BY id"


def _restore(cfg: Path, my: MariadbServer, at: str, file: str, database: str) -> None:
    """Drop `database` and load the dump `mysql/<file>` of the snapshot at
    `at`, which creates it anew."""
    my.sql(f"DROP DATABASE IF EXISTS `{database}`")
    histfs("restore", "--config", str(cfg), "--at", at, f"mysql/{file}", "--to-command",
           my.restore_command(), check=0, timeout=600)


@pytest.mark.timeout(600)
def test_round_trip_day_by_day(tmp_path: Path, my: MariadbServer,
                               mount_repo: Callable[..., Mount]) -> None:
    my.sql(f"CREATE DATABASE shop; CREATE DATABASE `{ODD_NAME}`")
    my.sql(SHOP, "shop")
    my.sql("CREATE TABLE note (t VARCHAR(50)); INSERT INTO note VALUES ('première')", ODD_NAME)
    cfg = _config(tmp_path, my)
    days = []
    for _ in range(2):
        summary = backup_summary(cfg)
        # "all": the system's databases but mysql are left out.
        assert summary["part_files"] == {"mail": 1, "mysql": 3}, summary
        days.append((snapshot_rows(cfg)[-1]["time"], my.sql(SHOP_QUERY, "shop"),
                     my.sql("SELECT * FROM log ORDER BY item", "shop"),
                     my.sql("SELECT t FROM note ORDER BY t", ODD_NAME),
                     my.sql("SELECT count(*) FROM cheap", "shop")))
        # The next day: rows changed (the trigger logs them), added and
        # removed, in both databases.
        my.sql("UPDATE item SET name = CONCAT(name, ' (soldé)'), picture = x'00ff' "
               "WHERE id % 100 = 7; DELETE FROM item WHERE id > 4990; "
               "INSERT INTO item VALUES (9999, 'nouveau', NULL, 1)", "shop")
        my.sql("INSERT INTO note VALUES ('deuxième')", ODD_NAME)
        time.sleep(1)
    listed = json.loads(histfs("ls", "--config", str(cfg), "--json", "last", "mysql",
                               check=0).stdout)
    odd_file = "café%2F2.sql"
    assert sorted(row["path"] for row in listed) == sorted(
        f"mysql/{n}" for n in ("mysql.sql", "shop.sql", odd_file))
    assert all(row["mode"] == 0o600 for row in listed)
    [snap] = snapshot_rows(cfg)[-1:]
    for at, shop_rows, log_rows, notes, cheap in days:
        _restore(cfg, my, str(at), "shop.sql", "shop")
        assert my.sql(SHOP_QUERY, "shop") == shop_rows
        assert my.sql("SELECT * FROM log ORDER BY item", "shop") == log_rows
        # The view, the trigger and the function came back too.
        assert my.sql("SELECT count(*) FROM cheap", "shop") == cheap
        assert my.sql("SELECT taxed(10)", "shop").strip() == "12.00"
        my.sql("UPDATE item SET price = 2 WHERE id = 1", "shop")
        assert my.sql("SELECT count(*) FROM log WHERE item = 1", "shop").strip() == "1"
        _restore(cfg, my, str(at), odd_file, ODD_NAME)
        assert my.sql("SELECT t FROM note ORDER BY t", ODD_NAME) == notes
    assert days[0][1] != days[1][1] and days[0][3] != days[1][3]
    assert days[0][2] == "" and "soldé" in days[1][2]
    assert [d[4].strip() for d in days] == ["79", "80"]
    assert snap["parts"] == ["mail", "mysql"]
    shop_sql = subprocess.run([sys.executable, "-m", "histfs", "cat", "--config", str(cfg),
                               "last", "mysql/shop.sql"], capture_output=True, check=True,
                              timeout=300).stdout
    assert b"CREATE DATABASE" in shop_sql and b"CREATE DEFINER" in shop_sql
    m = mount_repo(tmp_path / "repo")
    dumped = m.path / "mx1" / "last" / "mysql" / "shop.sql"
    st = dumped.stat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert dumped.read_bytes() == shop_sql


def _password_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "mysql-password"
    path.write_text(f"{PASSWORD}\n")
    path.chmod(mode)
    return path


@pytest.mark.timeout(600)
def test_credentials_only_in_the_password_file(tmp_path: Path, my: MariadbServer) -> None:
    my.sql(f"CREATE USER {DUMPER}@localhost IDENTIFIED BY '{PASSWORD}'; "
           f"GRANT ALL ON *.* TO {DUMPER}@localhost; CREATE DATABASE shop")
    my.sql(SHOP, "shop")
    # Without the password the server refuses: the part fails.
    cfg = _config(tmp_path, my, f'user = "{DUMPER}"\n')
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 2 and "Access denied" in proc.stderr, proc.stderr
    # A password file that others may read is refused.
    password = _password_file(tmp_path, 0o644)
    cfg = _config(tmp_path, my, f'user = "{DUMPER}"\npassword_file = "mysql-password"\n'
                                'databases = ["shop"]\n')
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 2 and "chmod 600" in proc.stderr, proc.stderr
    password.chmod(0o600)
    log = tmp_path / "histfs.log"
    proc = histfs("--log-file", str(log), "backup", "--config", str(cfg), "--json",
                  timeout=300)
    assert proc.returncode == 0, proc.stderr
    cat = subprocess.run([sys.executable, "-m", "histfs", "cat", "--config", str(cfg), "last",
                          "mysql/shop.sql"], capture_output=True, check=True, timeout=300)
    assert b"INSERT INTO `item`" in cat.stdout
    said = [proc.stdout, proc.stderr, log.read_text(),
            histfs("snapshots", "--config", str(cfg), "--json", check=0).stdout,
            histfs("info", "--config", str(cfg), check=0).stdout]
    assert not [s for s in said if PASSWORD in s]
    # Nor in any argv histfs builds: the password goes in the environment.
    source = MysqlDumps(("all",), None, None, str(my.socket), DUMPER, password,
                        ("--no-defaults", "--hex-blob"))
    dumps = list(source.dumps())
    assert [d.file for d in dumps] == ["mysql.sql", "shop.sql"]
    for dump in dumps:
        assert not [a for a in dump.argv if PASSWORD in a or "mysql-password" in a], dump.argv
        assert dict(dump.env) == {"MYSQL_PWD": PASSWORD}
        assert dump.argv[1] == "--no-defaults" and "--hex-blob" in dump.argv


@pytest.mark.timeout(600)
def test_a_missing_database_publishes_nothing(tmp_path: Path, my: MariadbServer) -> None:
    my.sql("CREATE DATABASE shop")
    cfg = _config(tmp_path, my, 'databases = ["shop", "nosuch"]\n')
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "part mysql: " in last and "of database 'nosuch' exited with status 2" in last, last
    assert "Unknown database 'nosuch'" in last, last
    assert snapshot_rows(cfg) == []
    cfg = _config(tmp_path, my, 'databases = ["shop", "nosuch"]\non_error = "warn"\n')
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 1 and "nosuch" in proc.stderr, proc.stderr
    [snap] = snapshot_rows(cfg)
    assert snap["parts"] == ["mail"]


@pytest.mark.timeout(600)
def test_a_dump_killed_midway_publishes_nothing(tmp_path: Path, my: MariadbServer) -> None:
    my.sql("CREATE DATABASE big")
    my.sql("CREATE TABLE t (id INT PRIMARY KEY, v TEXT); INSERT INTO t SELECT seq, "
           "REPEAT(MD5(seq), 8) FROM seq_1_to_400000", "big")
    cfg = _config(tmp_path, my, 'databases = ["big"]\n')
    proc, killed = backup_killing_dump(
        cfg, lambda argv: argv[0].endswith((b"mariadb-dump", b"mysqldump"))
        and f"--socket={my.socket}".encode() in argv)
    assert killed, "the dump ended before it could be killed"
    assert proc.returncode == 2, proc.stderr
    assert "part mysql: " in proc.stderr and \
        "of database 'big' killed by signal 9" in proc.stderr, proc.stderr
    assert snapshot_rows(cfg) == []


def test_config_of_a_mysql_part(tmp_path: Path) -> None:
    cases = [
        ('databases = []\n', "databases"),
        ('databases = ["all", "shop"]\n', "databases"),
        ('databases = ["shop", "shop"]\n', "databases"),
        ('port = 70000\n', "port"),
        ('socket = ""\n', "socket"),
        ('options = ["--result-file=/tmp/x"]\n', "options"),
        ('options = ["-psecret"]\n', "options"),
        ('options = ["--password=secret"]\n', "options"),
        ('options = ["--tab=/tmp"]\n', "options"),
        ('options = "--hex-blob"\n', "options"),
        ('command = "mysqldump"\n', "command"),
        ('paths = ["/x"]\n', "paths"),
    ]
    assert_config_errors(tmp_path, 'name = "mysql"\nkind = "mysql"\n', cases, hidden="secret")
