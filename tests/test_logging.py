"""Messages for cron, syslog and journald: `--quiet`, `--log-file`, and
priority prefixes when stderr is the journal stream."""

from __future__ import annotations

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
