"""Hooks around `histfs backup` and `min_interval`, through the command line
with real shell commands: order, environment, output, failure semantics,
timeouts (the hook's whole process group is killed), and skipping inside the
interval unless --force."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.conftest import histfs

_RECORD = ('echo "$0 status=$HISTFS_STATUS snapshot=$HISTFS_SNAPSHOT host=$HISTFS_HOST '
           'repo=$HISTFS_REPO path=$HISTFS_SNAPSHOT_PATH" >> {log}')


def _setup(tmp_path: Path, hooks: dict[str, str], extra: str = "") -> tuple[Path, Path, Path]:
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a\n")
    histfs("init", "--encryption", "none", str(repo), check=0)
    config = tmp_path / "histfs.toml"
    lines = [f'repository = "{repo}"', 'host = "mx1"', f'mountpoint = "{tmp_path}/mnt"', extra,
             "[hooks]", *(f"{k} = {json.dumps(v)}" for k, v in hooks.items()),
             "[[part]]", 'name = "mail"', f'path = "{src}"']
    config.write_text("\n".join(lines) + "\n")
    return repo, config, tmp_path / "hooks.log"


def _record(log: Path, name: str) -> str:
    return f"sh -c '{_RECORD.format(log=log)}' {name}"


def _snapshots(repo: Path) -> list[str]:
    proc = histfs("snapshots", "--repo", str(repo), "--json", check=0)
    return [row["name"] for row in json.loads(proc.stdout)]


@pytest.mark.timeout(120)
def test_hooks_run_in_order_with_the_backup_in_their_environment(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    repo, config, _ = _setup(tmp_path, {
        "before": _record(log, "before") + " && echo freezing; echo to-stderr >&2",
        "after": _record(log, "after"),
        "after_success": _record(log, "after_success"),
    })
    proc = histfs("backup", "--config", str(config), "--json", check=0)
    name = json.loads(proc.stdout)["snapshot"]
    assert _snapshots(repo) == [name]
    assert log.read_text().splitlines() == [
        f"before status= snapshot= host=mx1 repo={repo} path=",
        f"after status=success snapshot={name} host=mx1 repo={repo} "
        f"path={tmp_path}/mnt/mx1/{name}",
        f"after_success status=success snapshot={name} host=mx1 repo={repo} "
        f"path={tmp_path}/mnt/mx1/{name}",
    ]
    # Hook output goes to the log (stderr), named by hook.
    assert "histfs: hook before: freezing" in proc.stderr
    assert "histfs: hook before: to-stderr" in proc.stderr


@pytest.mark.timeout(120)
def test_failing_before_hook_aborts_the_backup_and_still_runs_after(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    repo, config, _ = _setup(tmp_path, {
        "before": "echo cannot freeze; exit 3",
        "after": _record(log, "after"),
        "after_success": _record(log, "after_success"),
    })
    proc = histfs("backup", "--config", str(config), check=2)
    assert "histfs: hook before: cannot freeze" in proc.stderr
    assert ("histfs: error: hook before exited with status 3: backup not started"
            in proc.stderr)
    assert _snapshots(repo) == []
    assert log.read_text().splitlines() == [
        f"after status=failed snapshot= host=mx1 repo={repo} path="]


@pytest.mark.timeout(120)
def test_failed_backup_runs_after_but_not_after_success(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    repo, config, _ = _setup(tmp_path, {
        "after": _record(log, "after"), "after_success": _record(log, "after_success")})
    config.write_text(config.read_text().replace(f'path = "{tmp_path}/src"',
                                                 f'path = "{tmp_path}/missing"'))
    proc = histfs("backup", "--config", str(config), check=2)
    assert "does not exist" in proc.stderr
    assert log.read_text().splitlines() == [
        f"after status=failed snapshot= host=mx1 repo={repo} path="]


@pytest.mark.timeout(120)
def test_failing_after_success_hook_is_a_warning(tmp_path: Path) -> None:
    repo, config, _ = _setup(tmp_path, {"after_success": "exit 7", "after": "true"})
    proc = histfs("backup", "--config", str(config), check=1)
    assert "histfs: warning: hook after_success exited with status 7" in proc.stderr
    assert len(_snapshots(repo)) == 1


@pytest.mark.timeout(120)
def test_hook_timeout_kills_the_hook_and_what_it_started(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    repo, config, _ = _setup(tmp_path, {
        "before": f"sleep 60 & echo $! > {pidfile}; wait", "timeout": "1s"})
    started = time.monotonic()
    proc = histfs("backup", "--config", str(config), check=2)
    assert time.monotonic() - started < 30
    assert "hook before timed out after 1 s and was killed" in proc.stderr
    assert _snapshots(repo) == []
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        # Reaped by init once killed; until then it may show as a zombie.
        if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the hook's child {child} is still running")


@pytest.mark.timeout(120)
def test_min_interval_skips_unless_forced(tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    repo, config, _ = _setup(tmp_path, {"before": _record(log, "before")},
                             extra='min_interval = "1d"')
    histfs("backup", "--config", str(config), check=0)
    proc = histfs("backup", "--config", str(config), check=0)
    assert "histfs: skipped: the last snapshot mx1/" in proc.stderr
    assert "inside min_interval 1d (--force backs up anyway)" in proc.stderr
    proc = histfs("backup", "--config", str(config), "--json", check=0)
    assert json.loads(proc.stdout)["snapshot"] is None
    assert len(_snapshots(repo)) == 1
    assert len(log.read_text().splitlines()) == 1  # no hooks for a skipped run
    histfs("backup", "--config", str(config), "--force", check=0)
    assert len(_snapshots(repo)) == 2


@pytest.mark.timeout(60)
@pytest.mark.parametrize("text, message", [
    ('min_interval = "daily"', "min_interval: expected a duration"),
    ('[hooks]\nbefore = 3', "hooks.before: expected str"),
    ('[hooks]\nonce = "x"', "hooks.once: unknown key"),
    ('[hooks]\ntimeout = "soon"', "hooks.timeout: expected a duration"),
    ('[retention]\nkeep_daily = -1', "retention.keep_daily: must be 0 or more"),
    ('[retention]\nkeep_dayly = 3', "retention.keep_dayly: unknown key"),
    ('[retention]\nkeep_ages = ["7"]', "retention.keep_ages: expected a duration"),
    ("[retention]", "retention: no rule is set"),
])
def test_bad_settings_are_one_line_errors(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "histfs.toml"
    config.write_text(f'repository = "{tmp_path}/repo"\n{text}\n')
    histfs("init", "--encryption", "none", str(tmp_path / "repo"), check=0)
    for command in ("backup", "prune"):
        proc = histfs(command, "--config", str(config), check=2)
        assert proc.stderr.startswith(f"histfs: error: {config}: ")
        assert message in proc.stderr and proc.stderr.count("\n") == 1
