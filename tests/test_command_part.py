"""Parts of `kind = "command"`: a command's standard output streamed into
the snapshot as one file (mode 0600), deduplicated like any file, visible
through the mount; a command that fails publishes nothing (exit 2), or,
with `on_error = "warn"`, a snapshot without its part (exit 1)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Mount, histfs
from tests.dump_parts import backup_summary, config_with_part, snapshot_rows

DUMP = 30_000_000


def _setup(tmp_path: Path, command: str, extra: str = "") -> tuple[Path, Path]:
    """A repository and a config with a directory part and a command part
    `db` (file dump.sql) running `command`."""
    cfg = config_with_part(tmp_path, f'[[part]]\nname = "db"\nkind = "command"\n'
                                     f'command = {json.dumps(command)}\n'
                                     f'file = "dump.sql"\nchunk_size = "16KiB"\n{extra}')
    return tmp_path / "repo", cfg


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(600)
def test_a_command_output_is_one_file(tmp_path: Path, mount_repo: Callable[..., Mount],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    rand = tmp_path / "rand"
    rand.write_bytes(os.urandom(DUMP))
    # Credentials come by the environment, never on a command line.
    command = f"printf -- '-- dump by %s\\n' \"$DUMP_USER\"; head -c {DUMP} {rand}"
    root, cfg = _setup(tmp_path, command)
    monkeypatch.setenv("DUMP_USER", "secret-user")
    first = backup_summary(cfg, 0)
    expected = b"-- dump by secret-user\n" + rand.read_bytes()
    got = subprocess.run([sys.executable, "-m", "histfs", "cat", "--config", str(cfg), "last",
                          "db/dump.sql"], capture_output=True, check=True, timeout=300).stdout
    assert _sha(got) == _sha(expected)
    [row] = json.loads(histfs("ls", "--config", str(cfg), "--json", "last", "db",
                              check=0).stdout)
    assert row["type"] == "regular" and row["mode"] == 0o600 and row["size"] == len(expected)
    # The second dump of the same data adds (almost) nothing.
    second = backup_summary(cfg, 0)
    added = second["bytes_added"]
    assert isinstance(added, int) and added < DUMP // 100, (first, second)
    m = mount_repo(root)
    dumped = m.path / "mx1" / "last" / "db" / "dump.sql"
    st = dumped.stat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == len(expected)
    assert _sha(dumped.read_bytes()) == _sha(expected)
    assert (m.path / "mx1" / "last" / "mail" / "a").read_text() == "mail\n"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("ending", ["exit 4", "kill -9 $$"])
def test_a_failing_command_publishes_nothing(tmp_path: Path, ending: str) -> None:
    _, cfg = _setup(tmp_path, f"head -c 3000000 /dev/urandom; "
                                 f"echo 'pg_dump: connection refused' >&2; {ending}")
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert "part db" in last
    assert ("status 4" in last and "pg_dump: connection refused" in last
            if ending == "exit 4" else "signal 9" in last), proc.stderr
    assert snapshot_rows(cfg) == []


@pytest.mark.timeout(300)
def test_on_error_warn_publishes_without_the_part(tmp_path: Path) -> None:
    _, cfg = _setup(tmp_path, "printf partial; echo 'mysqldump: access denied' >&2; exit 2",
                       'on_error = "warn"\n')
    proc = histfs("backup", "--config", str(cfg), timeout=300)
    assert proc.returncode == 1
    assert "mysqldump: access denied" in proc.stderr and "part db" in proc.stderr
    [snap] = snapshot_rows(cfg)
    assert snap["parts"] == ["mail"]
    names = [r["path"] for r in json.loads(histfs("ls", "--config", str(cfg), "--json",
                                                  "last", check=0).stdout)]
    assert names == ["mail"]


def test_config_of_a_command_part(tmp_path: Path) -> None:
    for extra, said in (('path = "/tmp"\n', "path"), ('on_error = "skip"\n', "on_error"),
                        ('kind = "pipe"\n', "kind")):
        _, cfg = _setup(tmp_path / said, "true", extra)
        text = cfg.read_text()
        if said == "kind":
            text = text.replace('kind = "command"\n', "")
        cfg.write_text(text)
        proc = histfs("backup", "--config", str(cfg))
        assert proc.returncode == 2 and said in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    cfg.write_text(cfg.read_text().replace('file = "dump.sql"', 'file = "a/b"')
                   .replace('kind = "pipe"\n', 'kind = "command"\n'))
    proc = histfs("backup", "--config", str(cfg))
    assert proc.returncode == 2 and "file" in proc.stderr, proc.stderr


@pytest.mark.timeout(600)
def test_a_large_output_takes_bounded_memory(tmp_path: Path) -> None:
    size = 200_000_000
    _, cfg = _setup(tmp_path, f"head -c {size} /dev/urandom")
    # Peak RSS of the backup alone, measured by a parent of its own.
    probe = ("import resource, subprocess, sys\n"
             "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
             "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    proc = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "histfs",
                           "backup", "--config", str(cfg)], capture_output=True, text=True,
                          timeout=600, check=True)
    rc, rss_kib = (int(x) for x in proc.stdout.split())
    assert rc == 0, proc.stderr
    # Holding the output would take 200 MB; a backup takes ~60 MiB anyway.
    assert rss_kib < 150 * 1024, rss_kib
    [row] = json.loads(histfs("ls", "--config", str(cfg), "--json", "last", "db",
                              check=0).stdout)
    assert row["size"] == size
