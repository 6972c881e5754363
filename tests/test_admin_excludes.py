"""Excludes as administrators coming from borg or restic write them:
`exclude_from`, `exclude_caches`, `exclude_if_present` and
`one_file_system`, in the configuration file (top level and per part) and
on the command line, through `histfs backup` on real trees."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.model.repository import Repository
from tests.conftest import histfs

SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"

TREE = {
    "john/Maildir/cur/1.eml": b"one",
    "john/Maildir/tmp/2.eml": b"half",
    "john/.cache/thumbs/3.png": b"cache",
    "john/notes.lock": b"lock",
    "mary/Maildir/cur/4.eml": b"four",
    "mary/build/5.o": b"object",
    "mary/fake-cache/6.dat": b"not a cache: a wrong signature",
    "mary/link-cache/7.dat": b"not a cache: its tag is a symlink",
    "mary/scratch/8.tmp": b"marked",
}


def _tree(root: Path) -> Path:
    for rel, data in TREE.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (root / "john/.cache/CACHEDIR.TAG").write_bytes(SIGNATURE + b"\n# made by a browser\n")
    (root / "mary/build/CACHEDIR.TAG").write_bytes(SIGNATURE)
    (root / "mary/fake-cache/CACHEDIR.TAG").write_bytes(b"Signature: 0000")
    (root / "mary/link-cache/CACHEDIR.TAG").symlink_to(root / "john/.cache/CACHEDIR.TAG")
    (root / "mary/scratch/.nobackup").write_bytes(b"")
    return root


def _entries(repo: Path, part: str) -> dict[str, str]:
    """The paths below `part` in the newest snapshot, with their kinds."""
    r = Repository.open(repo)
    try:
        with r.open_snapshot(r.snapshots("mx1")[-1]) as snap:
            return {path.decode().removeprefix(f"{part}/"): entry.kind.name
                    for path, entry in snap.walk() if path.startswith(f"{part}/".encode())}
    finally:
        r.close()


def _kept(repo: Path, part: str = "mail") -> set[str]:
    """The paths (files and directories) below `part` in the newest snapshot."""
    return set(_entries(repo, part))


def _files(repo: Path, part: str = "mail") -> set[str]:
    """The paths below `part` that are not directories."""
    return {p for p, kind in _entries(repo, part).items() if kind != "DIRECTORY"}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(path), check=0)
    return path


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "h.toml"
    path.write_text(text)
    return path


@pytest.mark.timeout(120)
def test_exclude_from_in_the_config_top_level_and_per_part(tmp_path: Path, repo: Path) -> None:
    """Top-level `exclude_from` applies to every part, a part's adds to it;
    comments, blank lines and surrounding blanks are ignored; a relative
    file name is read from the configuration file's directory."""
    source = _tree(tmp_path / "spool")
    other = _tree(tmp_path / "other")
    (tmp_path / "common.excludes").write_text(
        "# scratch of every mail store\n\n   */tmp/*  \n*.lock\n")
    (tmp_path / "mail.excludes").write_bytes(b"/mary/build\n#/john\n")
    config = _config(tmp_path, f'repository = "{repo}"\nhost = "mx1"\n'
                     'exclude_from = "common.excludes"\n'
                     f'[[part]]\nname = "mail"\npath = "{source}"\n'
                     f'exclude_from = ["{tmp_path}/mail.excludes"]\n'
                     f'[[part]]\nname = "other"\npath = "{other}"\n')
    proc = histfs("backup", "--config", str(config), "--json", check=0)
    summary = json.loads(proc.stdout)
    everything = set(TREE) | {"john/.cache/CACHEDIR.TAG", "mary/build/CACHEDIR.TAG",
                              "mary/fake-cache/CACHEDIR.TAG", "mary/link-cache/CACHEDIR.TAG",
                              "mary/scratch/.nobackup"}
    common_out = {"john/Maildir/tmp/2.eml", "john/notes.lock"}
    assert _files(repo) == everything - common_out - {"mary/build/5.o",
                                                      "mary/build/CACHEDIR.TAG"}
    assert "mary/build" not in _kept(repo)
    assert _files(repo, "other") == everything - common_out
    # Two files of each part, and mail's build directory.
    assert summary["excluded"] == 5


@pytest.mark.timeout(120)
def test_exclude_caches_needs_a_valid_tag(tmp_path: Path, repo: Path) -> None:
    """A directory with a CACHEDIR.TAG that starts with the standard's
    signature is left out whole; a wrong signature or a tag that is a
    symbolic link does not count."""
    source = _tree(tmp_path / "spool")
    config = _config(tmp_path, f'repository = "{repo}"\nhost = "mx1"\n'
                     'exclude_caches = true\n'
                     f'[[part]]\nname = "mail"\npath = "{source}"\n')
    histfs("backup", "--config", str(config), check=0)
    kept = _kept(repo)
    assert "john/.cache" not in kept and "john/.cache/thumbs/3.png" not in kept
    assert "mary/build" not in kept and "mary/build/5.o" not in kept
    assert {"mary/fake-cache/6.dat", "mary/link-cache/7.dat", "john/Maildir/cur/1.eml",
            "mary/scratch/8.tmp"} <= kept
    # On the command line, for NAME=PATH parts; a part may say no to the top level.
    histfs("backup", "--repo", str(repo), "--host", "mx1", "--exclude-caches",
           f"mail={source}", check=0)
    assert "mary/build" not in _kept(repo)
    config = _config(tmp_path, f'repository = "{repo}"\nhost = "mx1"\n'
                     'exclude_caches = true\n'
                     f'[[part]]\nname = "mail"\npath = "{source}"\nexclude_caches = false\n')
    histfs("backup", "--config", str(config), check=0)
    assert "mary/build/5.o" in _kept(repo)


@pytest.mark.timeout(120)
def test_exclude_if_present(tmp_path: Path, repo: Path) -> None:
    source = _tree(tmp_path / "spool")
    (source / "john/Maildir/.Trash").mkdir()
    (source / "john/Maildir/.Trash/9.eml").write_bytes(b"trash")
    (source / "john/Maildir/.Trash/.histfs-skip").symlink_to("nowhere")
    config = _config(tmp_path, f'repository = "{repo}"\nhost = "mx1"\n'
                     'exclude_if_present = ".nobackup"\n'
                     f'[[part]]\nname = "mail"\npath = "{source}"\n'
                     'exclude_if_present = [".histfs-skip"]\n')
    histfs("backup", "--config", str(config), check=0)
    kept = _kept(repo)
    assert "mary/scratch" not in kept and "john/Maildir/.Trash" not in kept
    assert "mary/build/5.o" in kept
    histfs("backup", "--repo", str(repo), "--host", "mx1", "--exclude-if-present", ".nobackup",
           "--exclude-if-present", "CACHEDIR.TAG", f"mail={source}", check=0)
    kept = _kept(repo)
    assert not {"mary/scratch", "mary/build", "john/.cache", "mary/fake-cache"} & kept
    assert "john/Maildir/.Trash/9.eml" in kept


@pytest.mark.timeout(120)
def test_exclude_from_on_the_command_line_applies_to_config_parts(tmp_path: Path,
                                                                 repo: Path) -> None:
    source = _tree(tmp_path / "spool")
    patterns = tmp_path / "ex"
    patterns.write_text("*.eml\n")
    config = _config(tmp_path, f'repository = "{repo}"\nhost = "mx1"\n'
                     f'[[part]]\nname = "mail"\npath = "{source}"\n')
    histfs("backup", "--config", str(config), "--exclude-from", str(patterns), check=0)
    assert not any(p.endswith(".eml") for p in _kept(repo))
    assert "mary/build/5.o" in _kept(repo)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("toml", "args", "message"), [
    ('exclude_from = "missing"\n', (), "exclude file {d}/missing: No such file or directory"),
    ("exclude_from = 3\n", (), "{d}/h.toml: exclude_from: expected a string or a list of "
     "strings, got 3"),
    ('exclude_caches = "yes"\n', (), "{d}/h.toml: exclude_caches: expected bool, got 'yes'"),
    ('exclude_if_present = "a/b"\n', (), "{d}/h.toml: exclude_if_present: expected a file "
     "name without '/', got 'a/b'"),
    ("", ("--exclude-if-present", ".."), "--exclude-if-present: expected a file name "
     "without '/', got '..'"),
    ("", ("--exclude-from", "{d}/borg.ex"), "exclude file {d}/borg.ex, line 2: "
     "'re:^/home/[^/]+/\\\\.cache/': only shell patterns are understood"),
], ids=["missing-file", "not-a-list", "not-bool", "slash", "dotdot", "borg-syntax"])
def test_bad_exclude_settings_are_one_line_and_exit_2(tmp_path: Path, repo: Path, toml: str,
                                                      args: tuple[str, ...],
                                                      message: str) -> None:
    source = _tree(tmp_path / "spool")
    (tmp_path / "borg.ex").write_text("*.tmp\nre:^/home/[^/]+/\\.cache/\n")
    config = _config(tmp_path, f'repository = "{repo}"\nhost = "mx1"\n{toml}'
                     f'[[part]]\nname = "mail"\npath = "{source}"\n')
    proc = histfs("backup", "--config", str(config),
                  *(a.format(d=tmp_path) for a in args), check=2)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("histfs: error: " + message.format(d=tmp_path)), lines[0]
    assert Repository.open(repo).snapshots("mx1") == []


@pytest.fixture
def mounted_inside(tmp_path: Path) -> Iterator[Path]:
    """A source with a tmpfs mounted at `var/spool` inside it (as root),
    unmounted on the way out."""
    source = tmp_path / "root"
    (source / "etc").mkdir(parents=True)
    (source / "etc/hostname").write_bytes(b"mx1\n")
    inner = source / "var/spool"
    inner.mkdir(parents=True)
    (inner / "under-the-mount").write_bytes(b"hidden by the mount")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "histfs-test", str(inner)],
                   check=True)
    try:
        (inner / "imap").mkdir()
        (inner / "imap/1.eml").write_bytes(b"on the other file system")
        assert os.stat(inner).st_dev != os.stat(source).st_dev
        yield source
    finally:
        subprocess.run(["umount", str(inner)], check=True)


@pytest.mark.timeout(120)
def test_one_file_system_keeps_the_mount_point_empty(tmp_path: Path, repo: Path,
                                                     mounted_inside: Path) -> None:
    source = mounted_inside
    histfs("backup", "--repo", str(repo), "--host", "mx1", f"root={source}", check=0)
    assert {"var/spool/imap/1.eml", "etc/hostname"} <= _kept(repo, "root")
    histfs("backup", "--repo", str(repo), "--host", "mx1", "--one-file-system",
           f"root={source}", check=0)
    assert _kept(repo, "root") == {"etc", "etc/hostname", "var", "var/spool"}
    config = _config(tmp_path, f'repository = "{repo}"\nhost = "mx1"\n'
                     f'[[part]]\nname = "root"\npath = "{source}"\none_file_system = true\n')
    histfs("backup", "--config", str(config), check=0)
    assert _kept(repo, "root") == {"etc", "etc/hostname", "var", "var/spool"}
    # A part whose own root is the other file system is backed up whole.
    histfs("backup", "--repo", str(repo), "--host", "mx1", "--one-file-system",
           f"spool={source}/var/spool", check=0)
    assert _kept(repo, "spool") == {"imap", "imap/1.eml"}
