"""Prometheus metrics: `backup --metrics-file` after every run (successful
or not) and `histfs metrics` for a repository, read back with
prometheus_client's own text-format parser."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import histfs


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


@pytest.mark.timeout(120)
def test_metrics_file_after_a_backup_and_after_a_failure(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(7):
        (src / f"{i}.eml").write_bytes(os.urandom(1000 + i))
    prom = tmp_path / "textfile" / "histfs.prom"
    prom.parent.mkdir()
    histfs("init", "--encryption", "none", str(repo), check=0)
    before = time.time()
    histfs("backup", "--repo", str(repo), "--host", "mx1", "--metrics-file", str(prom),
           f"mail={src}", check=0)
    got = samples(prom.read_text())
    assert value(got, "histfs_backup_files", host="mx1", state="new") == 7
    assert value(got, "histfs_backup_files", host="mx1", state="failed") == 0
    assert value(got, "histfs_backup_exit_status", host="mx1") == 0
    assert value(got, "histfs_snapshots", host="mx1") == 1
    assert value(got, "histfs_backup_added_bytes", host="mx1") > 7000
    assert value(got, "histfs_backup_read_bytes", host="mx1") == sum(1000 + i for i in range(7))
    last = value(got, "histfs_backup_last_success_timestamp_seconds", host="mx1")
    assert before - 2 <= last <= time.time()
    assert value(got, "histfs_repository_size_bytes") > 7000
    # A failed run: its status, and the last success still the first backup's.
    proc = histfs("backup", "--repo", str(repo), "--host", "mx1", "--metrics-file", str(prom),
                  f"mail={tmp_path / 'missing'}")
    assert proc.returncode == 2
    got = samples(prom.read_text())
    assert value(got, "histfs_backup_exit_status", host="mx1") == 2
    assert value(got, "histfs_backup_last_success_timestamp_seconds", host="mx1") == last
    assert not [p for p in prom.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.timeout(120)
def test_metrics_command_covers_every_host(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"a" * 5000)
    histfs("init", "--encryption", "none", str(repo), check=0)
    for host in ("mx1", "mx2", "mx2"):
        histfs("backup", "--repo", str(repo), "--host", host, f"d={src}", check=0)
    proc = histfs("metrics", "--repo", str(repo), check=0)
    got = samples(proc.stdout)
    assert value(got, "histfs_snapshots", host="mx1") == 1
    assert value(got, "histfs_snapshots", host="mx2") == 2
    assert value(got, "histfs_backup_last_success_timestamp_seconds", host="mx2") >= value(
        got, "histfs_backup_last_success_timestamp_seconds", host="mx1")
    assert value(got, "histfs_repository_size_bytes") > 0
    assert ("histfs_backup_duration_seconds", (("host", "mx1"),)) in got
