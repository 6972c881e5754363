"""Messages for cron, syslog and journald: `--quiet`, `--log-file`, and
priority prefixes when stderr is the journal stream."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import histfs


@pytest.fixture
def repo_and_src(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.eml").write_text("hello\n")
    unreadable = src / "locked.eml"
    unreadable.write_text("secret\n")
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    return repo, src


@pytest.mark.timeout(120)
def test_quiet_prints_nothing_when_all_is_well(repo_and_src: tuple[Path, Path]) -> None:
    repo, src = repo_and_src
    proc = histfs("--quiet", "backup", "--repo", str(repo), "--host", "mx1", f"m={src}",
                  check=0)
    assert proc.stdout == "" and proc.stderr == ""
    proc = histfs("--quiet", "prune", "--repo", str(repo), "--keep-last", "1", check=0)
    assert proc.stdout == "" and proc.stderr == ""
    # An error still shows.
    proc = histfs("--quiet", "snapshots", "--repo", str(repo / "nope"))
    assert proc.returncode == 2 and proc.stderr.startswith("histfs: error:"), proc.stderr


@pytest.mark.timeout(120)
def test_log_file_records_summaries_warnings_and_errors(repo_and_src: tuple[Path, Path],
                                                        tmp_path: Path) -> None:
    repo, src = repo_and_src
    logf = tmp_path / "histfs.log"
    histfs("--log-file", str(logf), "--quiet", "backup", "--repo", str(repo), "--host", "mx1",
           f"m={src}", check=0)
    (src / "gone").mkdir()
    proc = histfs("--log-file", str(logf), "backup", "--repo", str(repo), "--host", "mx1",
                  f"m={src / 'missing'}")
    assert proc.returncode == 2
    lines = logf.read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ histfs\[\d+\] "
    assert all(re.match(stamp + r"(NOTICE|WARNING|ERROR) ", line) for line in lines), lines
    assert any(" NOTICE backup of mx1: snapshot " in line and "exit status 0" in line
               for line in lines), lines
    assert any(" ERROR " in line and "missing" in line for line in lines), lines


@pytest.mark.timeout(120)
def test_journald_gets_priorities(repo_and_src: tuple[Path, Path]) -> None:
    """With stderr being the stream systemd names in JOURNAL_STREAM, lines
    carry `<N>` priority prefixes (3 error, 4 warning); otherwise not."""
    repo, _ = repo_and_src
    read_end, write_end = os.pipe()
    st = os.fstat(write_end)
    env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
    proc = subprocess.Popen([sys.executable, "-m", "histfs", "snapshots", "--repo",
                             str(repo / "nope")], stderr=write_end, stdout=subprocess.DEVNULL,
                            env=env)
    os.close(write_end)
    with os.fdopen(read_end) as f:
        err = f.read()
    assert proc.wait(timeout=60) == 2
    assert err.startswith("<3>histfs: error: "), err
    plain = histfs("snapshots", "--repo", str(repo / "nope"),
                   env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert plain.stderr.startswith("histfs: error: "), plain.stderr


@pytest.mark.timeout(180)
@pytest.mark.parametrize("where", ["before-the-command", "after-the-command"])
def test_quiet_and_log_file_in_either_place(repo_and_src: tuple[Path, Path], tmp_path: Path,
                                            where: str) -> None:
    """`histfs --quiet backup` and `histfs backup --quiet` (as the systemd unit
    writes it) are the same: no hook output, no summary; warnings still show;
    --json is still printed. --log-file likewise."""
    repo, src = repo_and_src
    config = tmp_path / "histfs.toml"
    hooks = '[hooks]\nbefore = "echo freezing; echo to-stderr >&2"\nafter = "echo thawed"\n'
    part = f'[[part]]\nname = "mail"\npath = "{src}"\n'
    config.write_text(f'repository = "{repo}"\nhost = "mx1"\n{hooks}{part}')
    logf = tmp_path / "histfs.log"

    def backup(*options: str, check: int = 0) -> subprocess.CompletedProcess[str]:
        if where == "before-the-command":
            return histfs(*options, "backup", "--config", str(config), check=check)
        return histfs("backup", "--config", str(config), *options, check=check)

    proc = backup("--quiet")
    assert proc.stdout == "" and proc.stderr == ""
    proc = backup("--quiet", "--log-file", str(logf))
    assert proc.stdout == "" and proc.stderr == ""
    lines = logf.read_text().splitlines()
    assert any(line.endswith(" NOTICE hook before: freezing") for line in lines), lines
    assert any(line.endswith(" NOTICE hook after: thawed") for line in lines), lines
    assert any(" NOTICE backup of mx1: snapshot " in line for line in lines), lines

    # Without --quiet the hooks' output shows, and goes to the log file too.
    logf.unlink()
    proc = backup("--log-file", str(logf))
    assert "histfs: hook before: freezing" in proc.stderr
    assert "hook before: to-stderr" in logf.read_text()

    # JSON asked for is printed; a warning still shows.
    config.write_text(f'repository = "{repo}"\nhost = "mx1"\n{hooks}'
                      f'after_success = "exit 4"\n{part}')
    if where == "before-the-command":
        proc = histfs("--quiet", "backup", "--config", str(config), "--json", check=1)
    else:
        proc = histfs("backup", "--config", str(config), "--json", "--quiet", check=1)
    assert json.loads(proc.stdout)["host"] == "mx1"
    assert proc.stderr == "histfs: warning: hook after_success exited with status 4\n"


@pytest.mark.timeout(60)
def test_two_different_log_files_are_refused(repo_and_src: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    repo, src = repo_and_src
    proc = histfs("--log-file", str(tmp_path / "a.log"), "backup", "--log-file",
                  str(tmp_path / "b.log"), "--repo", str(repo), "--host", "mx1", f"m={src}")
    assert proc.returncode == 2
    assert proc.stderr == "histfs: error: --log-file is given twice, with different files\n"
    assert histfs("snapshots", "--repo", str(repo), "--json", check=0).stdout.strip() == "[]"
