"""The benchmark script and its scale test keep working (smoke runs at a tiny
scale, histfs only; figures are not asserted: these machines are shared and
noisy)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_bench_runs_at_a_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--scale", "0.005", "--repeat",
         "1", "--days", "1", "--peers", "", "--json", str(out), "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    for metric in ("first backup", "nothing changed", "daily backup (median)",
                   "repository size", "mount: root lists", "dump read cold",
                   "tar of Maildir", "restore (own command)", "cp -a out of the mount"):
        assert results[metric]["histfs"] > 0, metric
    assert "| first backup | s |" in proc.stdout
    # It cleaned up after itself: no work directory, no mount left.
    assert not list(tmp_path.glob("histfs-bench-*"))
    assert str(tmp_path) not in Path("/proc/mounts").read_text()


@pytest.mark.timeout(600)
def test_scale_test_runs_small(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--scale-test", "--scale-files",
         "2000", "--snapshots", "3", "--repeat", "1", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {cells[0].strip(): cells[1].strip()
            for cells in (line.strip("|").split(" | ", 1) for line in proc.stdout.splitlines()
                          if line.startswith("| ") and " | " in line)}
    assert rows["unchanged backup, 2000 files"].endswith("a file)")
    assert "unchanged backup, 200 files" in rows
    assert "list a host of 3 snapshots" in rows
    # 2,000 files, their 2 directories, the part and the snapshot directory itself.
    assert rows["find of the 2004-entry snapshot"].endswith("entries/s)")
    assert not list(tmp_path.glob("histfs-scale-*"))
    assert str(tmp_path) not in Path("/proc/mounts").read_text()
