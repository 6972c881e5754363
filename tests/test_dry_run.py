"""`histfs backup --dry-run`: it finds what the backup that follows finds,
and reads and writes nothing (the repository and the local cache are the
same byte for byte afterwards, no hook runs, no metrics file is written)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import histfs

PASS = "dry run passphrase"
BAD_NAME = b"bad\xff\xfename"


def _state(*roots: Path) -> dict[str, tuple[int, str]]:
    """Every file, directory and link below `roots`: mode and content hash."""
    found: dict[str, tuple[int, str]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                st = path.lstat()
                digest = (hashlib.sha256(path.read_bytes()).hexdigest()
                          if path.is_file() and not path.is_symlink() else "")
                found[str(path)] = (st.st_mode, digest)
    return found


def _source(root: Path) -> Path:
    for rel, data in {"john/cur/1.eml": b"one", "john/cur/2.eml": b"two",
                      "john/tmp/3.eml": b"half", "mary/cur/4.eml": b"four",
                      "mary/cur/5.eml": b"five"}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "john/link").symlink_to("cur/1.eml")
    os.link(root / "mary/cur/4.eml", root / "mary/4-again.eml")
    os.mkfifo(root / "mary/fifo")
    return root


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """An encrypted repository with one backup of a Maildir-like tree made
    through a configuration file (with hooks and a metrics file)."""
    monkeypatch.setenv("HISTFS_PASSPHRASE", PASS)
    repo = tmp_path / "repo"
    histfs("init", str(repo), check=0)
    source = _source(tmp_path / "spool")
    config = tmp_path / "h.toml"
    config.write_text(f'repository = "{repo}"\nhost = "mx1"\n'
                      f'metrics_file = "{tmp_path}/histfs.prom"\n'
                      f'[hooks]\nbefore = "touch {tmp_path}/hook-ran"\n'
                      f'[[part]]\nname = "mail"\npath = "{source}"\nexclude = ["*/tmp/*"]\n')
    histfs("backup", "--config", str(config), check=0)
    (tmp_path / "histfs.prom").unlink()
    (tmp_path / "hook-ran").unlink()
    # One file changed, one new (with a name that is not UTF-8), one gone;
    # a new hard link to an unchanged file, a new directory, a new exclude.
    (source / "john/cur/2.eml").write_bytes(b"two, edited")
    (source / os.fsdecode(b"mary/cur/" + BAD_NAME)).write_bytes(b"six")
    (source / "mary/cur/5.eml").unlink()
    os.link(source / "john/cur/1.eml", source / "john/1-again.eml")
    (source / "john/new").mkdir()
    (source / "john/new/7.eml").write_bytes(b"seven")
    (source / "john/dovecot.lock").write_bytes(b"")
    return repo, config


@pytest.mark.timeout(180)
@pytest.mark.parametrize("index_copy", ["cached", "not-cached"])
def test_dry_run_agrees_with_the_backup_and_changes_nothing(
        tmp_path: Path, cache_dir: Path, setup: tuple[Path, Path], index_copy: str) -> None:
    repo, config = setup
    if index_copy == "not-cached":
        # The index of the previous snapshot must then be decoded somewhere
        # else than the cache.
        shutil.rmtree(cache_dir / os.listdir(cache_dir)[0] / "indexes")
    before = _state(repo, cache_dir)
    proc = histfs("backup", "--config", str(config), "--exclude-from",
                  str(_write(tmp_path / "ex", "*.lock\n")), "--dry-run", "--list", "--json",
                  check=0)
    assert _state(repo, cache_dir) == before
    assert not (tmp_path / "hook-ran").exists() and not (tmp_path / "histfs.prom").exists()
    dry = json.loads(proc.stdout)
    assert dry["dry_run"] is True and dry["previous"] and dry["exit_status"] == 0
    statuses = {(p.get("path") or base64.b64decode(p["path_b64"])): p["status"]
                for p in dry["paths"]}
    assert statuses == {
        "mail": "directory", "mail/john": "directory", "mail/john/cur": "directory",
        "mail/john/tmp": "directory", "mail/john/new": "directory",
        "mail/mary": "directory", "mail/mary/cur": "directory",
        # A new link met first under its new name: the file counts as new
        # (under both names, as the backup counts it).
        "mail/john/cur/1.eml": "new", "mail/john/1-again.eml": "new",
        "mail/john/cur/2.eml": "changed", "mail/john/new/7.eml": "new",
        b"mail/mary/cur/" + BAD_NAME: "new", "mail/john/tmp/3.eml": "excluded",
        "mail/john/dovecot.lock": "excluded", "mail/john/link": "other",
        "mail/mary/cur/4.eml": "unchanged", "mail/mary/4-again.eml": "unchanged",
        "mail/mary/fifo": "other",
    }
    # The backup that follows finds the same.
    real = json.loads(histfs("backup", "--config", str(config), "--exclude-from",
                             str(tmp_path / "ex"), "--json", check=0).stdout)
    for key in ("files_new", "files_changed", "files_unchanged", "files_failed",
                "directories", "other_entries", "excluded", "skipped"):
        assert dry[key] == real[key], key
    assert dry["bytes_new"] + dry["bytes_changed"] == real["bytes_read"]
    assert dry["bytes_new"] + dry["bytes_changed"] + dry["bytes_unchanged"] \
        == real["logical_bytes"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.timeout(120)
def test_dry_run_text_and_list(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    _repo, config = setup
    proc = histfs("backup", "--config", str(config), "--dry-run", check=0)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("dry run    mx1, compared with mx1/20")
    assert lines[1] == ("files      10 (5 new (11 B), 1 changed (11 B), 2 unchanged (4 B), "
                        "2 other), 0 failed, 7 directories")
    assert lines[2:] == ["would read 22 B", "excluded   1"]
    listed = histfs("backup", "--config", str(config), "--dry-run", "--list",
                    check=0).stdout.splitlines()
    assert "M mail/john/cur/2.eml" in listed and "x mail/john/tmp/3.eml" in listed
    assert "A mail/mary/cur/bad\\xff\\xfename" in listed
    assert "U mail/mary/4-again.eml" in listed and "o mail/mary/fifo" in listed
    assert "A mail/john/dovecot.lock" in listed
    assert listed[-4:] == lines


@pytest.mark.timeout(60)
def test_list_without_dry_run_is_refused(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    _repo, config = setup
    proc = histfs("backup", "--config", str(config), "--list", check=2)
    assert proc.stderr == "histfs: error: --list names the paths of a --dry-run: give both\n"
