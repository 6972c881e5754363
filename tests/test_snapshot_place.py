"""A snapshot index names its host and snapshot in its metadata; readers
compare them with its place in the repository. An unencrypted index copied
over another host's (or an old one replayed under a new name) is damaged:
`check` says so, `restore` and `copy` refuse it, the mount gives EIO instead
of showing one host's files under another, and gc stops rather than
republish it."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Mount, backup_json, histfs

SECRET = b"host B's mail, not for the eyes of host A's users\n"


def _repo(tmp_path: Path) -> tuple[Path, str, str, str]:
    """mx1 with two snapshots of its own mail, mx2 with one of other mail."""
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "cur").mkdir(parents=True)
    (a / "cur" / "a-1:2,S").write_bytes(b"host A's mail\n")
    old = str(backup_json(repo, f"mail={a}", host="mx1")["snapshot"])
    (a / "cur" / "a-2:2,S").write_bytes(b"more of host A's mail\n")
    new = str(backup_json(repo, f"mail={a}", host="mx1")["snapshot"])
    (b / "cur").mkdir(parents=True)
    (b / "cur" / "b-1:2,S").write_bytes(SECRET)
    other = str(backup_json(repo, f"mail={b}", host="mx2")["snapshot"])
    return repo, old, new, other


def _check(repo: Path) -> dict[str, object]:
    proc = histfs("check", "--repo", str(repo), "--json")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    report: dict[str, object] = json.loads(proc.stdout)
    return report


@pytest.mark.timeout(180)
def test_an_index_copied_over_another_hosts_is_damaged(
        tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    repo, _, new, other = _repo(tmp_path)
    victim = repo / "snapshots" / "mx1" / f"{new}.idx"
    shutil.copyfile(repo / "snapshots" / "mx2" / f"{other}.idx", victim)

    report = _check(repo)
    assert report["sound"] is False
    assert report["damaged"] == {f"mx1/{new}": ["(the whole snapshot: its index is damaged)"]}
    (problem,) = report["problems"]
    assert f"holds snapshot mx2/{other}, not mx1/{new}" in str(problem), problem

    proc = histfs("restore", "--repo", str(repo), "--host", "mx1", new,
                  "--target", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("histfs: error:")]
    assert len(errors) == 1 and "is damaged" in errors[0] and "mx2" in errors[0], proc.stderr
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))

    m = mount_repo(repo)
    for path in (m.path / "mx1" / new, m.path / "mx1" / "last"):
        with pytest.raises(OSError) as exc:
            list(path.iterdir())
        assert exc.value.errno == errno.EIO, path
    # The real mx2 snapshot still reads, at its own place.
    assert (m.path / "mx2" / other / "mail" / "cur" / "b-1:2,S").read_bytes() == SECRET
    m.stop()
    assert "Traceback" not in m.log.read_text()

    # copy and gc (which rewrites indexes) do not carry it anywhere.
    target = tmp_path / "offsite"
    histfs("init", "--encryption", "none", str(target), check=0)
    proc = histfs("copy", "--from", str(repo), "--to", str(target), "--host", "mx1", new)
    assert proc.returncode == 2 and "is damaged" in proc.stderr, proc.stderr
    assert not (target / "snapshots" / "mx1" / f"{new}.idx").exists()
    proc = histfs("gc", "--repo", str(repo), "--grace", "0")
    assert proc.returncode == 2 and "is damaged" in proc.stderr, proc.stderr


@pytest.mark.timeout(120)
def test_an_old_index_replayed_under_a_new_name_is_damaged(tmp_path: Path) -> None:
    repo, old, new, _ = _repo(tmp_path)
    folder = repo / "snapshots" / "mx1"
    forged = "2031-01-01T000000Z"
    shutil.copyfile(folder / f"{old}.idx", folder / f"{forged}.idx")
    report = _check(repo)
    assert list(report["damaged"]) == [f"mx1/{forged}"], report  # type: ignore[call-overload]
    proc = histfs("restore", "--repo", str(repo), "--host", "mx1", "last",
                  "--target", str(tmp_path / "out"))
    assert proc.returncode == 2 and f"holds snapshot mx1/{old}" in proc.stderr, proc.stderr
    # The genuine snapshots are untouched by it.
    for name in (old, new):
        histfs("restore", "--repo", str(repo), "--host", "mx1", name,
               "--target", str(tmp_path / name), check=0)
