"""Exclude patterns, and the warnings for a part that came out empty or
shrank, through the command line on real trees.

Patterns with '/' are matched against the path inside the part, from its
root (`/john/Maildir/tmp/1.eml`), never against the source's absolute path:
pytest's tmp_path lies below /tmp, so a part there is exactly the case of a
source below a directory named `tmp`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from index.model.repository import Repository
from tests.conftest import histfs

DATA = Path(__file__).parent / "data"

# A Maildir++ spool: tmp/ at the top of the part, in every mailbox, and in a
# subfolder; a lock file; a cache directory at the top and deeper down.
SPOOL = {
    "john/Maildir/cur/1.eml": b"one",
    "john/Maildir/new/2.eml": b"two",
    "john/Maildir/tmp/3.eml": b"half-delivered",
    "john/Maildir/.Sent/cur/4.eml": b"four",
    "john/Maildir/.Sent/tmp/5.eml": b"half-sent",
    "john/Maildir/dovecot.lock": b"lock",
    "mary/Maildir/cur/6.eml": b"six",
    "mary/Maildir/tmp/7.eml": b"half",
    "mary/cache/8.idx": b"deep cache",
    "tmp/9.part": b"top-level scratch",
    "cache/10.idx": b"top-level cache",
    "notes.tmp": b"scratch",
}


def _spool(root: Path, files: dict[str, bytes] = SPOOL) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _config(path: Path, repo: Path, source: Path, exclude: list[str]) -> Path:
    path.write_text(f'repository = "{repo}"\nhost = "mx1"\n[[part]]\nname = "mail"\n'
                    f'path = "{source}"\nexclude = {json.dumps(exclude)}\n')
    return path


def _kept(repo: Path, host: str = "mx1") -> set[str]:
    """The files (not directories) of the host's newest snapshot, below its part."""
    r = Repository.open(repo)
    try:
        with r.open_snapshot(r.snapshots(host)[-1]) as snap:
            return {path.decode().removeprefix("mail/") for path, entry in snap.walk()
                    if entry.kind.name != "DIRECTORY" and path.startswith(b"mail/")}
    finally:
        r.close()


def _backup(config: Path, check: int) -> dict[str, object]:
    proc = histfs("backup", "--config", str(config), "--json", check=check)
    summary: dict[str, object] = json.loads(proc.stdout)
    return summary


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(path), check=0)
    return path


@pytest.mark.timeout(120)
def test_readme_example_below_tmp_leaves_out_only_tmp_contents(tmp_path: Path,
                                                               repo: Path) -> None:
    source = _spool(tmp_path / "tmp" / "spool")
    assert str(source).startswith("/tmp/")
    summary = _backup(_config(tmp_path / "h.toml", repo, source, ["*/tmp/*"]), check=0)
    expected = {rel for rel in SPOOL if "tmp/" not in rel}
    assert _kept(repo) == expected
    assert summary["files_new"] == len(expected)
    assert summary["part_files"] == {"mail": len(expected)}
    assert summary["warnings"] == []


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("patterns", "left_out"), [
    # Anchored at the part's root: only the top-level tmp/ and cache/.
    (["/tmp/*", "/cache"], {"tmp/9.part", "cache/10.idx"}),
    # Not anchored: at any depth, the top level included.
    (["tmp/*"], {"john/Maildir/tmp/3.eml", "john/Maildir/.Sent/tmp/5.eml",
                 "mary/Maildir/tmp/7.eml", "tmp/9.part"}),
    (["Maildir/tmp"], {"john/Maildir/tmp/3.eml", "mary/Maildir/tmp/7.eml"}),
    (["*/cache/*"], {"mary/cache/8.idx", "cache/10.idx"}),
    (["/john/Maildir/.Sent"], {"john/Maildir/.Sent/cur/4.eml",
                               "john/Maildir/.Sent/tmp/5.eml"}),
    # Without '/': the name, anywhere (as ever).
    (["*.tmp", "dovecot.lock", "tmp"], {"notes.tmp", "john/Maildir/dovecot.lock",
                                        "john/Maildir/tmp/3.eml",
                                        "john/Maildir/.Sent/tmp/5.eml",
                                        "mary/Maildir/tmp/7.eml", "tmp/9.part"}),
], ids=["anchored", "any-depth", "any-depth-dir", "star-slash", "anchored-dir", "names"])
def test_anchored_and_unanchored_patterns(tmp_path: Path, repo: Path, patterns: list[str],
                                          left_out: set[str]) -> None:
    source = _spool(tmp_path / "tmp" / "spool")
    _backup(_config(tmp_path / "h.toml", repo, source, patterns), check=0)
    assert _kept(repo) == set(SPOOL) - left_out


@pytest.mark.timeout(120)
def test_patterns_from_the_command_line_and_the_source_path_form(tmp_path: Path,
                                                                 repo: Path) -> None:
    """--exclude for NAME=PATH parts works the same; a pattern that starts
    with the part's own source path (the absolute form) is read from the part's
    root."""
    source = _spool(tmp_path / "tmp" / "spool")
    histfs("backup", "--repo", str(repo), "--host", "mx1", "--exclude", f"{source}/cache",
           "--exclude", "*/tmp/*", f"mail={source}", check=0)
    assert _kept(repo) == {rel for rel in SPOOL
                           if "tmp/" not in rel and not rel.startswith("cache/")}


@pytest.mark.timeout(120)
def test_a_pattern_written_against_the_absolute_path_is_reported(tmp_path: Path,
                                                                 repo: Path) -> None:
    """`*/spool/tmp/*` named the top-level tmp/ of a part at .../spool through
    the absolute path. It now matches nothing there; the run says so (exit
    1, the part and the pattern named) rather than quietly storing more."""
    source = _spool(tmp_path / "tmp" / "spool")
    proc = histfs("backup", "--config",
                  str(_config(tmp_path / "h.toml", repo, source, ["*/spool/tmp/*"])),
                  "--json", check=1)
    (warning,) = json.loads(proc.stdout)["warnings"]
    assert warning.startswith("part mail: exclude pattern '*/spool/tmp/*' no longer leaves "
                              "out /tmp/9.part"), warning
    assert "histfs: warning: part mail: exclude pattern" in proc.stderr
    assert "tmp/9.part" in _kept(repo)


@pytest.mark.timeout(120)
def test_part_without_files_is_a_warning(tmp_path: Path, repo: Path) -> None:
    """An exclude pattern that takes everything, and a source holding only
    empty directories: exit 1, the part named, also in --json."""
    source = _spool(tmp_path / "spool")
    empty = tmp_path / "empty"
    (empty / "a" / "b").mkdir(parents=True)
    config = tmp_path / "h.toml"
    config.write_text(f'repository = "{repo}"\nhost = "mx1"\n'
                      f'[[part]]\nname = "mail"\npath = "{source}"\nexclude = ["/*"]\n'
                      f'[[part]]\nname = "etc"\npath = "{empty}"\n')
    proc = histfs("backup", "--config", str(config), "--json", check=1)
    summary = json.loads(proc.stdout)
    assert summary["exit_status"] == 1 and summary["snapshot"]
    assert summary["part_files"] == {"mail": 0, "etc": 0}
    assert summary["warnings"] == [
        f"part mail: no files at all in {source}; check its exclude patterns ['/*']",
        f"part etc: no files at all in {empty}",
    ]
    assert f"histfs: warning: part mail: no files at all in {source}" in proc.stderr
    assert f"histfs: warning: part etc: no files at all in {empty}" in proc.stderr
    proc = histfs("backup", "--config", str(config))
    assert proc.returncode == 1 and "part etc: no files at all" in proc.stderr


@pytest.mark.timeout(120)
def test_part_that_shrank_by_more_than_half_is_a_warning(tmp_path: Path, repo: Path) -> None:
    source = _spool(tmp_path / "spool")
    other = _spool(tmp_path / "other", {f"{i}.conf": b"x" for i in range(4)})
    config = tmp_path / "h.toml"
    config.write_text(f'repository = "{repo}"\nhost = "mx1"\n'
                      f'[[part]]\nname = "mail"\npath = "{source}"\n'
                      f'[[part]]\nname = "etc"\npath = "{other}"\n')
    histfs("backup", "--config", str(config), check=0)
    # Half of the files gone is not yet a warning; more than half is.
    for rel in list(SPOOL)[:6]:
        (source / rel).unlink()
    histfs("backup", "--config", str(config), "--force", check=0)
    _spool(source)
    histfs("backup", "--config", str(config), "--force", check=0)
    for rel in list(SPOOL)[:7]:
        (source / rel).unlink()
    proc = histfs("backup", "--config", str(config), "--force", "--json", check=1)
    summary = json.loads(proc.stdout)
    (warning,) = summary["warnings"]
    assert warning.startswith("part mail: 5 files, fewer than half of the 12 in the previous "
                              "snapshot 20"), warning
    assert summary["part_files"] == {"mail": 5, "etc": 4}
    assert "histfs: warning: part mail: 5 files, fewer than half" in proc.stderr


@pytest.mark.timeout(120)
def test_shrink_is_measured_against_a_snapshot_of_an_earlier_version(tmp_path: Path) -> None:
    """Snapshots written before parts recorded their file count: the
    previous snapshot's part is counted."""
    shutil.copytree(DATA / "repo-v1", tmp_path / "repo")
    expected = json.loads((DATA / "repo-v1.json").read_text())["snapshots"]
    had = len([k for k, v in expected["2026-11-22T010916Z"].items()
               if bytes.fromhex(k) != b"" and v[0] != 0o040000])
    assert had >= 2
    src = _spool(tmp_path / "src", {"only.eml": b"1"})
    proc = histfs("backup", "--repo", str(tmp_path / "repo"), "--host", "mx1", "--json",
                  f"data={src}", check=1)
    (warning,) = json.loads(proc.stdout)["warnings"]
    assert warning == (f"part data: 1 files, fewer than half of the {had} in the previous "
                       "snapshot 2026-11-22T010916Z")
