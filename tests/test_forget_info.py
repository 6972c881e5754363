"""`histfs forget` (named snapshots, holds respected, space back with gc),
`histfs info` and `histfs --version`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from index.format.config import FORMAT_VERSION
from tests.conftest import histfs
from tests.test_cli import assert_error


def names(repo: Path, host: str) -> list[str]:
    rows = json.loads(histfs("snapshots", "--repo", str(repo), "--host", host, "--json",
                             check=0).stdout)
    return [r["name"] for r in rows]


@pytest.fixture
def repo_path(tmp_path: Path) -> Path:
    """Three snapshots of mx1, each with 2 MB of its own random data, and
    one of mx2 with the data of the first."""
    src = tmp_path / "src"
    src.mkdir()
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    for i in range(3):
        (src / "data").write_bytes(os.urandom(2 << 20))
        (src / "same").write_text("same\n")
        histfs("backup", "--repo", str(repo), "--host", "mx1", "--force", f"d={src}",
               check=0)
        if i == 0:
            histfs("backup", "--repo", str(repo), "--host", "mx2", f"d={src}", check=0)
    return repo


@pytest.mark.timeout(300)
def test_forget_removes_named_snapshots_and_gc_frees_their_space(repo_path: Path) -> None:
    r = ["--repo", str(repo_path)]
    first, second, third = names(repo_path, "mx1")
    out = histfs("forget", *r, "--host", "mx1", "--dry-run", first, "last", check=0)
    assert out.stdout.splitlines() == [f"would remove mx1              {first}",
                                       f"would remove mx1              {third}"]
    assert out.stderr == "dry run: 2 would be removed\n"
    assert names(repo_path, "mx1") == [first, second, third]
    # A held snapshot is refused with the hold's reason, and nothing is removed.
    histfs("hold", *r, "--host", "mx1", first, "--reason", "legal case 7", check=0)
    assert_error(histfs("forget", *r, "--host", "mx1", second, first),
                 f"mx1/{first} is held (legal case 7)", "nothing removed")
    assert names(repo_path, "mx1") == [first, second, third]
    # A released hold no longer holds; its objects go with the snapshot.
    histfs("hold", *r, "--host", "mx1", second, "--reason", "tape", check=0)
    histfs("release", *r, "--host", "mx1", second, "--reason", "tape", check=0)
    rows = json.loads(histfs("forget", *r, "--host", "mx1", "--json", second, second,
                             check=0).stdout)
    assert rows == [{"host": "mx1", "snapshot": second, "removed": True}]
    assert names(repo_path, "mx1") == [first, third]
    assert not (repo_path / "holds" / "mx1" / second).exists()
    assert (repo_path / "holds" / "mx1" / first).is_dir()
    # Space comes back with gc, as after prune.
    before = json.loads(histfs("info", *r, "--json", check=0).stdout)["size_bytes"]
    gc = json.loads(histfs("gc", *r, "--json", "--wait", "0", "--grace", "0",
                           check=0).stdout)
    assert gc["bytes_freed"] > 2 << 20
    after = json.loads(histfs("info", *r, "--json", check=0).stdout)["size_bytes"]
    assert before - after == gc["bytes_freed"]
    # What is left still reads.
    assert json.loads(histfs("check", *r, "--json", check=0).stdout)["sound"]
    out = histfs("forget", *r, "--host", "mx1", "last", check=0)
    assert out.stdout == f"removed      mx1              {third}\n"
    assert out.stderr == "1 removed; run histfs gc to reclaim their space\n"


def test_forget_bad_input(repo_path: Path) -> None:
    r = ["--repo", str(repo_path)]
    assert_error(histfs("forget", *r, "last"), "several hosts", "--host")
    assert_error(histfs("forget", *r, "--host", "mx1", "2020-01-01T000000Z"),
                 "no snapshot 2020-01-01T000000Z of host mx1")
    assert_error(histfs("forget", *r, "--host", "mx1", "../../config"),
                 "no snapshot ../../config")
    assert_error(histfs("forget", *r, "--host", "mx1", "last", "--lock-wait", "-1"),
                 "--lock-wait")
    proc = histfs("forget", *r)
    assert proc.returncode == 2 and "SNAPSHOT" in proc.stderr
    assert len(names(repo_path, "mx1")) == 3 and (repo_path / "config").is_file()


@pytest.mark.timeout(300)
def test_info(repo_path: Path, tmp_path: Path) -> None:
    info = json.loads(histfs("info", "--repo", str(repo_path), "--json", check=0).stdout)
    assert info["format_version"] == FORMAT_VERSION and info["encryption"] == "none"
    assert info["snapshots"] == 4 and info["hosts"] == {"mx1": 3, "mx2": 1}
    assert info["damaged"] == []
    # Four snapshots of 2 MB + 5 bytes; three different 2 MB files, the
    # second snapshot of the first file deduplicated; random data does not
    # compress.
    assert info["logical_bytes"] == 4 * ((2 << 20) + 5)
    assert info["unique_bytes"] == 3 * (2 << 20) + 5
    assert info["deduplication_ratio"] == round(info["logical_bytes"] / info["unique_bytes"], 3)
    assert 0.9 < info["compression_ratio"] <= 1.0
    assert info["size_bytes"] > info["stored_bytes"] > 3 * (2 << 20)
    text = histfs("info", "--repo", str(repo_path), check=0).stdout.splitlines()
    assert text[0] == f"repository {repo_path}"
    assert text[2:4] == [f"format     version {FORMAT_VERSION}", "encryption none"]
    assert text[5:7] == ["snapshots  4", "hosts      mx1 (3), mx2 (1)"]
    assert text[8] == "ratios     deduplication 1.33x, compression 1.00x"
    # An encrypted, empty repository: compressible data compresses.
    enc = tmp_path / "enc"
    env = {"HISTFS_PASSPHRASE": "secret words", "HISTFS_NEW_PASSPHRASE": "secret words"}
    histfs("init", str(enc), env=env, check=0)
    empty = json.loads(histfs("info", "--repo", str(enc), "--json", env=env, check=0).stdout)
    assert empty["encryption"] == "repokey-aes-256-gcm" and empty["snapshots"] == 0
    assert empty["deduplication_ratio"] is None and empty["compression_ratio"] is None
    assert "ratios     deduplication -, compression -" in histfs(
        "info", "--repo", str(enc), env=env, check=0).stdout
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "log").write_text("the same line again\n" * 50000)
    histfs("backup", "--repo", str(enc), "--host", "mx1", f"t={tmp_path / 'text'}", env=env,
           check=0)
    full = json.loads(histfs("info", "--repo", str(enc), "--json", env=env, check=0).stdout)
    assert full["compression_ratio"] > 50 and full["hosts"] == {"mx1": 1}


def test_version() -> None:
    proc = histfs("--version", check=0)
    assert proc.stdout.startswith("histfs ")
    assert proc.stdout.endswith(f" (repository format {FORMAT_VERSION})\n")
