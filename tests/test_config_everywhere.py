"""`--config FILE` and `HISTFS_CONFIG` for every command that opens a
repository, as borgmatic's users expect: the repository, the host and (for
`mount`) the mount point come from the file when the command line is silent."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import histfs, unmount
from tests.test_cli import assert_error


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    """A config file naming a repository that `init --config` created and
    `HISTFS_CONFIG` backed up into twice; returns (config, repository)."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a").write_text("one\n")
    (src / "sub" / "b").write_text("b\n")
    repo = tmp_path / "repo"
    cfg = tmp_path / "histfs.toml"
    cfg.write_text(f'repository = "{repo}"\nhost = "mx1"\nmountpoint = "{tmp_path / "mnt"}"\n'
                   f'[[part]]\nname = "data"\npath = "{src}"\n')
    out = histfs("init", "--encryption", "none", "--config", str(cfg), check=0).stdout
    assert f"created histfs repository {repo} " in out
    env = {"HISTFS_CONFIG": str(cfg)}
    histfs("backup", env=env, check=0)
    (src / "a").write_text("two\n")
    histfs("backup", "--force", env=env, check=0)
    return cfg, repo


@pytest.mark.timeout(300)
def test_every_repository_command_reads_the_config(setup: tuple[Path, Path],
                                                   tmp_path: Path) -> None:
    cfg, repo = setup
    by_option = ["--config", str(cfg)]
    by_env = {"HISTFS_CONFIG": str(cfg)}
    for how in ("option", "environment"):
        opts, env = (by_option, None) if how == "option" else ([], by_env)
        rows = json.loads(histfs("snapshots", *opts, "--json", env=env, check=0).stdout)
        assert [r["host"] for r in rows] == ["mx1", "mx1"]
        found = json.loads(histfs("versions", *opts, "--json", "data/a", env=env,
                                  check=0).stdout)
        assert [v["changed"] for v in found] == [True, True]
        changes = json.loads(histfs("diff", *opts, "--json", rows[0]["name"], "last",
                                    env=env, check=0).stdout)
        assert changes == [{"status": "changed", "path": "data/a"}]
        assert json.loads(histfs("check", *opts, "--json", env=env, check=0).stdout)["sound"]
        assert 'histfs_snapshots{host="mx1"} 2' in histfs("metrics", *opts, env=env,
                                                           check=0).stdout
        target = tmp_path / f"restored-{how}"
        histfs("restore", *opts, "last", "data/a", "--target", str(target), env=env, check=0)
        assert (target / "data" / "a").read_text() == "two\n"
        # An unencrypted repository has no key: the config found it all the same.
        assert_error(histfs("key", "export", *opts, str(tmp_path / "k"), env=env),
                     str(repo), "not encrypted")
    # copy: the config names the source.
    other = tmp_path / "offsite"
    histfs("init", "--encryption", "none", str(other), check=0)
    out = histfs("copy", "--config", str(cfg), "--to", str(other), check=0).stdout
    assert out.startswith("copied 2 snapshot(s), 0 already there")
    out = histfs("copy", "--to", str(other), env=by_env, check=0).stdout
    assert out.startswith("copied 0 snapshot(s), 2 already there")


def test_command_line_wins_over_the_config(setup: tuple[Path, Path], tmp_path: Path) -> None:
    cfg, _ = setup
    other = tmp_path / "other"
    histfs("init", "--encryption", "none", str(other), check=0)
    out = histfs("snapshots", "--config", str(cfg), "--repo", str(other), check=0).stdout
    assert out == "no snapshots\n"
    env = {"HISTFS_CONFIG": str(cfg), "HISTFS_REPO": str(other)}
    assert histfs("snapshots", env=env, check=0).stdout == "no snapshots\n"
    # --host over the config's host.
    proc = histfs("versions", "--config", str(cfg), "--host", "mx9", "data/a", check=1)
    assert proc.stderr == "data/a: in no snapshot of mx9\n"


def test_bad_config_input(setup: tuple[Path, Path], tmp_path: Path) -> None:
    _, repo = setup
    missing = tmp_path / "missing.toml"
    assert_error(histfs("snapshots", "--config", str(missing)), str(missing),
                 "no such configuration file")
    assert_error(histfs("check", env={"HISTFS_CONFIG": str(missing)}), str(missing))
    assert_error(histfs("copy", "--to", str(tmp_path / "x")),
                 "no repository given: use --from, HISTFS_REPO or a config file")
    assert_error(histfs("init", "--encryption", "none", "--repo", str(tmp_path / "x"),
                        str(tmp_path / "y")), "given twice")
    assert_error(histfs("mount", "--repo", str(repo)), "no mount point given")


@pytest.mark.timeout(120)
def test_mount_takes_the_mount_point_from_the_config(setup: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    cfg, _ = setup
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        histfs("mount", "--config", str(cfg), check=0)
        assert os.path.ismount(mnt)
        assert sorted(os.listdir(mnt / "mx1"))[-1] == "last"
        assert (mnt / "mx1" / "last" / "data" / "a").read_text() == "two\n"
    finally:
        histfs("umount", str(mnt))
        unmount(mnt)
    assert not os.path.ismount(mnt)
