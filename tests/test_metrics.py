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


def _series(found: dict[tuple[str, tuple[tuple[str, str], ...]], float]
            ) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return set(found)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("failure", ["wrong-passphrase", "missing-repository", "before-hook",
                                     "bad-option"])
def test_metrics_file_is_written_when_the_backup_fails_early(tmp_path: Path,
                                                             failure: str) -> None:
    """Failures before any file is read still write the file, with exit
    status 2 and every series of a successful run; the last success is the
    repository's, or (when it cannot be read) the previous file's. (A full
    cache: tests/test_full_cache.py.)"""
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.eml").write_bytes(os.urandom(3000))
    prom = tmp_path / "histfs.prom"
    env = {"HISTFS_PASSPHRASE": "the right one"}
    histfs("init", str(repo), env=env, check=0)
    config = tmp_path / "histfs.toml"
    config.write_text(f'repository = "{repo}"\nhost = "mx1"\nmetrics_file = "{prom}"\n'
                      f'[[part]]\nname = "mail"\npath = "{src}"\n')
    histfs("backup", "--config", str(config), env=env, check=0)
    ok = samples(prom.read_text())
    assert value(ok, "histfs_backup_exit_status", host="mx1") == 0

    args = ["backup", "--config", str(config)]
    if failure == "wrong-passphrase":
        env = {"HISTFS_PASSPHRASE": "a wrong one"}
    elif failure == "missing-repository":
        args += ["--repo", str(tmp_path / "not-mounted")]
    elif failure == "before-hook":
        with open(config, "a") as f:
            f.write('[hooks]\nbefore = "echo cannot freeze; exit 3"\n')
    else:
        args += ["--lock-wait", "nan"]
    proc = histfs(*args, env=env, check=2)
    assert len(proc.stderr.strip().splitlines()) == 1 + (failure == "before-hook"), proc.stderr
    failed = samples(prom.read_text())
    assert value(failed, "histfs_backup_exit_status", host="mx1") == 2
    assert _series(failed) == _series(ok)
    for name in ("histfs_backup_last_success_timestamp_seconds", "histfs_snapshots",
                 "histfs_repository_size_bytes"):
        assert failed[next(k for k in ok if k[0] == name)] == ok[next(
            k for k in ok if k[0] == name)], name
    assert value(failed, "histfs_backup_files", host="mx1", state="new") == 0
    assert value(failed, "histfs_backup_last_run_timestamp_seconds", host="mx1") >= value(
        ok, "histfs_backup_last_run_timestamp_seconds", host="mx1")


@pytest.mark.timeout(120)
def test_metrics_command_prints_the_series_of_the_file(tmp_path: Path) -> None:
    """`histfs metrics` shows, for the newest snapshot, the series a
    backup's metrics file has, with the same labels and figures."""
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.eml").write_bytes(os.urandom(2000 + i))
    prom = tmp_path / "histfs.prom"
    histfs("init", "--encryption", "none", str(repo), check=0)
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"mail={src}", check=0)
    (src / "0.eml").write_bytes(os.urandom(100))
    (src / "new.eml").write_bytes(os.urandom(100))
    proc = histfs("backup", "--repo", str(repo), "--host", "mx1", "--metrics-file", str(prom),
                  f"mail={src}", check=0)
    from_file = samples(prom.read_text())
    printed = samples(histfs("metrics", "--repo", str(repo), check=0).stdout)
    # Damage is found by opening every snapshot index, which `histfs metrics`
    # does and a backup does not: those series are the command's own.
    own = {"histfs_snapshots_damaged", "histfs_snapshot_damaged"}
    assert {s for s in _series(printed) if s[0] not in own} == _series(from_file)
    for (name, labels), figure in from_file.items():
        if name in ("histfs_backup_last_run_timestamp_seconds",
                    "histfs_backup_duration_seconds", "histfs_repository_size_bytes"):
            continue  # measured at other moments
        assert printed[(name, labels)] == figure, (name, labels, proc.stderr)
    assert value(printed, "histfs_backup_files", host="mx1", state="new") == 1
    assert value(printed, "histfs_backup_files", host="mx1", state="changed") >= 1
    assert value(printed, "histfs_backup_read_bytes", host="mx1") == value(
        from_file, "histfs_backup_read_bytes", host="mx1") > 0
    ended = value(printed, "histfs_backup_last_run_timestamp_seconds", host="mx1")
    assert abs(ended - value(from_file, "histfs_backup_last_run_timestamp_seconds",
                             host="mx1")) < 5
