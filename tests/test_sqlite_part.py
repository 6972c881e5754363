"""Parts of `kind = "sqlite"`: each database copied online with the SQLite
backup API, consistent while a writer goes on, stored as `<part>/<base
name>` (0600); the private copy in the cache is removed whatever happens;
a database that cannot be copied fails the part (exit 2, or exit 1 with
`on_error = "warn"`)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import histfs, reap

# Transactions of 10 rows, each also adding 10 to `counter`: a consistent
# copy has count(*) = counter = a multiple of 10. A row is 2 KiB, so that
# every transaction changes pages all over the file's end.
WRITER = """
import os, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=120, isolation_level=None)
db.execute("PRAGMA busy_timeout = 120000")
done = 0
while True:
    db.execute("BEGIN IMMEDIATE")
    for _ in range(10):
        db.execute("INSERT INTO rows (batch, pad) VALUES (?, randomblob(2048))", (done,))
    db.execute("UPDATE counter SET n = n + 10")
    db.execute("COMMIT")
    done += 1
    with open(sys.argv[2] + ".new", "w") as f:
        f.write(str(done))
    os.replace(sys.argv[2] + ".new", sys.argv[2])
    time.sleep(0.002)
"""


def _database(path: Path, mode: str, rows: int) -> None:
    """A database in journal mode `mode` holding `rows` rows (multiple of 10)."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA journal_mode = {mode}")
    db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, batch INTEGER, pad BLOB)")
    db.execute("CREATE TABLE counter (n INTEGER)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO rows (batch, pad) VALUES (-1, randomblob(2048))",
                   [()] * rows)
    db.execute("INSERT INTO counter VALUES (?)", (rows,))
    db.execute("COMMIT")
    db.close()


def _config(tmp_path: Path, paths: list[Path], extra: str = "") -> Path:
    root = tmp_path / "repo"
    if not root.exists():
        histfs("init", "--encryption", "none", str(root), check=0)
    cfg = tmp_path / "histfs.toml"
    cfg.write_text(f'repository = "{root}"\nhost = "mx1"\n'
                   f'[[part]]\nname = "db"\nkind = "sqlite"\n'
                   f'paths = {json.dumps([str(p) for p in paths])}\nchunk_size = "16KiB"\n'
                   f"{extra}")
    return cfg


def _consistent(path: Path) -> int:
    """The rows of a restored database, checked whole."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        count = db.execute("SELECT count(*) FROM rows").fetchone()[0]
        assert db.execute("SELECT n FROM counter").fetchone()[0] == count
        batches = db.execute("SELECT count(*) FROM rows WHERE batch >= 0 GROUP BY batch "
                             "HAVING count(*) != 10").fetchall()
        assert count % 10 == 0 and batches == []
        return int(count)
    finally:
        db.close()


def _work_files(cache: Path) -> list[Path]:
    return list(cache.rglob("sqlite-copy-*"))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", ["wal", "delete"])
def test_a_database_written_during_the_backup_restores_consistent(
        tmp_path: Path, cache_dir: Path, mode: str) -> None:
    db = tmp_path / "data" / "app.db"
    db.parent.mkdir()
    _database(db, mode, 20_000)  # ~45 MB: a dozen steps of the copy
    cfg = _config(tmp_path, [db])
    progress = tmp_path / "progress"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(progress)])
    try:
        while not progress.exists():
            time.sleep(0.05)
        before = int(progress.read_text())
        histfs("backup", "--config", str(cfg), check=0, timeout=500)
        after = int(progress.read_text())
        # The writer went on during the backup, not only after it.
        assert after > before, (before, after)
    finally:
        writer.kill()
        writer.wait()
    assert _work_files(cache_dir) == []
    [row] = json.loads(histfs("ls", "--config", str(cfg), "--json", "last", "db",
                              check=0).stdout)
    assert row["path"] == "db/app.db" and row["mode"] == 0o600 and row["type"] == "regular"
    target = tmp_path / "restored"
    histfs("restore", "--config", str(cfg), "--target", str(target), "last", "db/app.db",
           check=0)
    restored = target / "db" / "app.db"
    assert stat.S_IMODE(restored.stat().st_mode) == 0o600
    count = _consistent(restored)
    assert 20_000 + 10 * before <= count <= 20_000 + 10 * after
    catted = tmp_path / "cat.db"
    with open(catted, "wb") as out:
        subprocess.run([sys.executable, "-m", "histfs", "cat", "--config", str(cfg), "last",
                        "db/app.db"], stdout=out, check=True, timeout=300)
    assert catted.read_bytes() == restored.read_bytes()
    assert _consistent(catted) == count


@pytest.mark.timeout(300)
def test_several_databases_and_a_second_backup(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    first, second = data / "a.sqlite", data / "b.db"
    _database(first, "wal", 1000)
    _database(second, "delete", 30)
    # A relative path is found from the configuration file's directory.
    cfg = _config(tmp_path, [first, Path("data/b.db")])
    histfs("backup", "--config", str(cfg), check=0, cwd=Path("/"))
    db = sqlite3.connect(second, isolation_level=None)
    db.execute("BEGIN")
    db.execute("INSERT INTO rows (batch, pad) SELECT 0, x'00' FROM rows LIMIT 10")
    db.execute("UPDATE counter SET n = n + 10")
    db.execute("COMMIT")
    db.close()
    summary = json.loads(histfs("backup", "--config", str(cfg), "--json", check=0).stdout)
    # a.sqlite did not change: its copy is stored again as chunks already there.
    assert summary["bytes_added"] < 200_000, summary
    target = tmp_path / "restored"
    histfs("restore", "--config", str(cfg), "--target", str(target), "last", check=0)
    assert sorted(p.name for p in (target / "db").iterdir()) == ["a.sqlite", "b.db"]
    assert _consistent(target / "db" / "a.sqlite") == 1000
    assert _consistent(target / "db" / "b.db") == 40
    [snap] = json.loads(histfs("snapshots", "--config", str(cfg), "--json",
                               check=0).stdout)[-1:]
    assert snap["parts"] == ["db"]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", ["missing", "directory", "not a database"])
def test_a_database_that_cannot_be_copied_fails_the_part(tmp_path: Path, cache_dir: Path,
                                                         case: str) -> None:
    good = tmp_path / "good.db"
    _database(good, "delete", 10)
    bad = tmp_path / "bad.db"
    if case == "directory":
        bad.mkdir()
    elif case == "not a database":
        bad.write_bytes(b"From alice@example.org\n" * 1000)
    cfg = _config(tmp_path, [good, bad])
    proc = histfs("backup", "--config", str(cfg))
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    said = {"missing": "No such file", "directory": "not a regular file",
            "not a database": "not a database"}[case]
    assert line.startswith(f"histfs: error: part db: the copy of the SQLite database {bad} "
                           "exited with status 2: ") and said in line, line
    assert json.loads(histfs("snapshots", "--config", str(cfg), "--json",
                             check=0).stdout) == []
    assert _work_files(cache_dir) == []
    # With on_error = "warn": published without the part, exit 1.
    text = cfg.read_text().replace('kind = "sqlite"', 'kind = "sqlite"\non_error = "warn"')
    cfg.write_text(text + f'[[part]]\nname = "mail"\npath = "{tmp_path / "data"}"\n')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "m").write_text("mail\n")
    proc = histfs("backup", "--config", str(cfg))
    assert proc.returncode == 1 and said in proc.stderr, proc.stderr
    [snap] = json.loads(histfs("snapshots", "--config", str(cfg), "--json", check=0).stdout)
    assert snap["parts"] == ["mail"]
    assert _work_files(cache_dir) == []


def _children(pid: int) -> list[int]:
    return [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
            for c in (t / "children").read_text().split()]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["ctrl-c", "copy killed"])
def test_a_copy_stopped_midway_leaves_nothing(tmp_path: Path, cache_dir: Path,
                                              how: str) -> None:
    db = tmp_path / "app.db"
    _database(db, "delete", 10_000)
    cfg = _config(tmp_path, [db])
    env = {**os.environ, "HISTFS_TEST_PAUSE_AT": f"sqlite-step:{tmp_path}"}
    proc = subprocess.Popen([sys.executable, "-m", "histfs", "backup", "--config", str(cfg)],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "sqlite-step.reached").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        # The copy is under way: private, in the cache, not beside the
        # database, and already without a name.
        [copier] = _children(proc.pid)
        fds = [fd for fd in Path(f"/proc/{copier}/fd").iterdir()
               if os.readlink(fd).startswith(f"{cache_dir}/sqlite-copy-")]
        assert fds and all(os.readlink(fd).endswith(" (deleted)") for fd in fds)
        assert all(stat.S_IMODE(fd.stat().st_mode) == 0o600 for fd in fds)
        assert [p.name for p in tmp_path.glob("app.db*")] == ["app.db"]
        if how == "ctrl-c":
            proc.send_signal(signal.SIGINT)
        else:
            os.kill(copier, signal.SIGKILL)
            (tmp_path / "sqlite-step.go").touch()
        _, err = proc.communicate(timeout=60)
    finally:
        reap(proc)
    assert proc.returncode == 2, err
    assert ("interrupted" if how == "ctrl-c" else
            f"part db: the copy of the SQLite database {db} killed by signal 9") in err, err
    assert not Path(f"/proc/{copier}").exists()
    assert _work_files(cache_dir) == []
    assert json.loads(histfs("snapshots", "--config", str(cfg), "--json",
                             check=0).stdout) == []


def test_config_of_a_sqlite_part(tmp_path: Path) -> None:
    for paths, extra, said in (
            (["/srv/a/app.db", "/srv/b/app.db"], "", "/srv/a/app.db and /srv/b/app.db "
             "would both be db/app.db"),
            ([], "", "needs name and paths"),
            (["/"], "", "paths: expected paths of database files, got '/'"),
            (["/srv/app.db"], 'command = "true"\n', "command"),
            (["/srv/app.db"], 'on_error = "skip"\n', "on_error")):
        cfg = _config(tmp_path, [Path(p) for p in paths], extra)
        proc = histfs("backup", "--config", str(cfg))
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1

