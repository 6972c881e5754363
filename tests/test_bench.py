"""The benchmark script and its scale test keep working (smoke runs at a tiny
scale, histfs only; figures are not asserted: these machines are shared and
noisy)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_bench_runs_at_a_tiny_scale(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench.py"), "--scale", "0.005", "--repeat",
         "1", "--days", "1", "--peers", "", "--big-mb", "8", "--json", str(out),
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert results["growth when nothing changed"]["histfs"] > 0
    for metric in ("first backup", "nothing changed", "daily backup (median)",
                   "repository size", "mount: root lists", "dump read cold",
                   "tar of Maildir", "restore (own command)", "cp -a out of the mount",
                   "8 MiB file of 1 MiB chunks, cold read"):
        assert results[metric]["histfs"] > 0, metric
    assert "| first backup | s |" in proc.stdout
    # The kernel requests of each reader, per entry of last/mail.
    assert "| requests per entry | tar | cp -a | rsync -aHAX | find |" in proc.stdout
    requests = json.loads(out.read_text())["requests"]
    assert requests["tar"][0]["OPEN"] > 0 and requests["find"][0].get("OPEN", 0) == 0
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
    for what in ("first", "unchanged", "1%-changed"):
        for n in (200, 2000):
            assert re.fullmatch(r"[\d.]+ s \(\d+ µs a file\), peak RSS \d+ MB",
                                rows[f"{what} backup, {n} files"]), rows
    assert rows["first backup's peak RSS, 2000 vs 200 files"].endswith("x for 10x the files")
    assert re.fullmatch(r"[\d.]+ MB \(\d+ B a file\)",
                        rows["stored index of the last snapshot, 2000 files"]), rows
    assert "list a host of 3 snapshots" in rows
    # 2,000 files, their 2 directories, the part and the snapshot directory itself.
    assert rows["find of the 2004-entry snapshot"].endswith("entries/s)")
    assert not list(tmp_path.glob("histfs-scale-*"))
    assert str(tmp_path) not in Path("/proc/mounts").read_text()


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench", ROOT / "scripts" / "bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_request_counts_parses_the_debug_log() -> None:
    bench = _bench_module()
    log = (b"2026-12-07 10:00:00,000 histfs DEBUG lookup(1, b'mx1')\n"
           b"2026-12-07 10:00:00,001 histfs DEBUG lookup(1, b'x') -> No such file or directory\n"
           b"2026-12-07 10:00:00,002 histfs DEBUG read(fh=3, off=0, size=4096)\n"
           b"2026-12-07 10:00:00,003 histfs DEBUG readdir(2, 0)\n"
           b"2026-12-07 10:00:00,004 histfs INFO mounted r on m\n")
    assert bench.request_counts(log) == {"LOOKUP": 1, "READ": 1, "READDIRPLUS": 1}


@pytest.mark.timeout(300)
def test_request_table_of_a_real_mount(tmp_path: Path) -> None:
    """Counts, not times: what each reader asks the mount for, per file."""
    bench = _bench_module()
    src = tmp_path / "src"
    files = 0
    for d in range(4):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(25):
            (src / f"d{d}" / f"m{i}").write_bytes(b"message %d %d\n" % (d, i) * (i + 1))
            files += 1
    repo = tmp_path / "repo"
    histfs = [sys.executable, "-m", "histfs"]
    subprocess.run([*histfs, "init", "--encryption", "none", str(repo)], check=True,
                   capture_output=True)
    subprocess.run([*histfs, "backup", "--repo", str(repo), "--host", "h", "--quiet",
                    f"mail={src}"], check=True, capture_output=True)
    counts = bench.count_requests(histfs, dict(os.environ), repo, "h", "last/mail", tmp_path)
    table = bench.request_table(counts)
    entries = files + 4 + 1
    for reader in ("tar", "cp -a", "rsync -aHAX", "find", "find, stat later"):
        found, walked = counts[reader]
        assert walked == entries, (reader, table)
        # Listings come with attributes: nothing is looked up or stat'ed
        # again (but for the host and `last`, whose lists move, on a second
        # walk: a lookup of each on the way).
        again = 2 if reader == "find, stat later" else 0
        assert found["LOOKUP"] <= 2 + again and found["GETATTR"] <= 2, (reader, table)
        assert found["OPENDIR"] == found["RELEASEDIR"] in (5, 6), (reader, table)
        assert found["FLUSH"] <= 1, (reader, table)
    for reader in ("tar", "cp -a", "rsync -aHAX"):
        found = counts[reader][0]
        assert found["OPEN"] == found["RELEASE"] == files, (reader, table)
        assert found["READ"] <= files, (reader, table)
    assert counts["find"][0]["OPEN"] == counts["find"][0]["READ"] == 0, table
    assert counts["tar"][0]["LISTXATTR"] == counts["tar"][0]["GETXATTR"] == 0, table
    print(table)
    # Looked at again 1.5 s later, nothing under `last/` is asked again.
    assert counts["find, stat later"][0]["OPEN"] == 0, table
    assert table.splitlines()[0] == ("| requests per entry | tar | cp -a | rsync -aHAX | find"
                                     " | find, stat later |")
