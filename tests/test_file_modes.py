"""Who can read what histfs writes on this machine: the repository's key file
is 0600 (anyone who reads it can try passphrases offline), and the local
cache, which holds decrypted indexes, staged file names and copies of packs,
has only 0700 directories and 0600 files, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import Mount, histfs

PASS = "correct horse battery staple"


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test, and every command it starts, under the umask given."""
    old = os.umask(request.param)
    try:
        yield int(request.param)
    finally:
        os.umask(old)


def _modes(root: Path) -> dict[str, str]:
    """Every path below `root` (and root itself) that is not private."""
    wrong = {}
    for path in [root, *root.rglob("*")]:
        st = path.lstat()
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if stat.S_IMODE(st.st_mode) != want:
            wrong[str(path.relative_to(root))] = oct(stat.S_IMODE(st.st_mode))
    return wrong


@pytest.mark.timeout(300)
@pytest.mark.parametrize("umask", [0o022, 0o000], indirect=True, ids=["022", "000"])
def test_key_and_cache_are_private_whatever_the_umask(
        umask: int, tmp_path: Path, cache_dir: Path,
        mount_repo: Callable[..., Mount], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTFS_PASSPHRASE", PASS)
    src = tmp_path / "src"
    (src / "cur").mkdir(parents=True)
    for i in range(5):
        (src / "cur" / f"secret-name-{i}:2,S").write_bytes(os.urandom(2000))
    repo, offsite = tmp_path / "repo", tmp_path / "offsite"
    histfs("init", str(repo), check=0)
    histfs("init", str(offsite), check=0)
    r = str(repo)
    histfs("backup", "--repo", r, "--host", "mx1", f"mail={src}", check=0)
    histfs("check", "--repo", r, "--read-data", check=0)
    histfs("restore", "--repo", r, "last", "--target", str(tmp_path / "out"), check=0)
    histfs("copy", "--from", r, "--to", str(offsite), check=0)
    exported = tmp_path / "exported-key"
    histfs("key", "export", "--repo", r, str(exported), check=0)
    histfs("key", "import", "--repo", r, str(exported), check=0)
    histfs("key", "change-passphrase", "--repo", r, check=0,
           env={"HISTFS_NEW_PASSPHRASE": "another passphrase entirely"})
    monkeypatch.setenv("HISTFS_PASSPHRASE", "another passphrase entirely")
    m = mount_repo(repo)
    assert len(list((m.path / "mx1" / "last" / "mail" / "cur").iterdir())) == 5
    m.stop()
    # A backup killed after staging and building its index leaves both in
    # the cache, as they were while it ran.
    (src / "cur" / "one-more:2,S").write_bytes(b"x")
    proc = histfs("backup", "--repo", r, "--host", "mx1", f"mail={src}",
                  env={"HISTFS_TEST_CRASH_AT": "before-publish"})
    assert proc.returncode < 0, proc.stderr
    kinds = {p.name.split("-")[0] for p in cache_dir.rglob("*.lmdb")}
    assert {"chunks", "staging", "index"} <= kinds, kinds
    assert list(cache_dir.rglob("indexes/mx1/*.idx")), "no decrypted index in the cache"

    for key in (repo / "key", offsite / "key", exported):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, (key, oct(key.stat().st_mode))
    assert _modes(cache_dir) == {}
