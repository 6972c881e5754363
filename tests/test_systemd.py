"""The units in scripts/systemd: systemd itself finds nothing wrong with them
(`systemd-analyze verify`, with the histfs path pointed at this checkout),
every histfs command line in them parses with today's options, and the
example post-backup hook really places its hold."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from histfs.parser import build_parser
from tests.conftest import ROOT, backup_json, histfs

UNITS = ROOT / "scripts" / "systemd"
INSTALLED = "/usr/local/bin/histfs"


def _exec_lines(unit: Path) -> list[list[str]]:
    env = {}
    lines = []
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "Environment":
            name, _, val = value.partition("=")
            env[name] = val
        elif key.startswith("Exec"):
            for name, val in env.items():
                value = value.replace("${" + name + "}", val)
            lines.append(shlex.split(value))
    return lines


@pytest.mark.timeout(60)
def test_every_histfs_command_in_the_units_parses() -> None:
    commands = [argv for unit in sorted(UNITS.glob("*.service")) for argv in _exec_lines(unit)
                if argv[0] == INSTALLED]
    assert {argv[1] for argv in commands} == {"backup", "prune", "gc", "mount", "umount"}
    for argv in commands:
        build_parser().parse_args(argv[1:])  # exits (SystemExit) on an unknown option
    timer = (UNITS / "histfs-backup.timer").read_text()
    assert "Persistent=true" in timer and "RandomizedDelaySec=" in timer


@pytest.mark.timeout(60)
@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_finds_nothing_wrong(tmp_path: Path) -> None:
    here = str(Path(sys.executable).parent / "histfs")
    assert os.access(here, os.X_OK)
    for unit in UNITS.glob("histfs-*.*"):
        if unit.suffix in (".service", ".timer"):
            (tmp_path / unit.name).write_text(unit.read_text().replace(INSTALLED, here))
    proc = subprocess.run(["systemd-analyze", "verify", *sorted(map(str, tmp_path.iterdir()))],
                          capture_output=True, text=True, timeout=50)
    ours = [line for line in proc.stderr.splitlines() if "histfs" in line]
    assert proc.returncode == 0 and not ours, proc.stderr


@pytest.mark.timeout(120)
def test_example_post_backup_hook_holds_the_new_snapshot(tmp_path: Path) -> None:
    repo, src = tmp_path / "repo", tmp_path / "src"
    src.mkdir()
    (src / "a").write_text("a")
    histfs("init", "--encryption", "none", str(repo), check=0)
    name = str(backup_json(repo, f"mail={src}")["snapshot"])
    env = {**os.environ, "HISTFS_REPO": str(repo), "HISTFS_HOST": "mx1",
           "HISTFS_SNAPSHOT": name, "HISTFS_STATUS": "success",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([str(UNITS / "histfs-post-backup.sh")], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"held mx1/{name} for the tape job" in proc.stdout
    listing = histfs("snapshots", "--repo", str(repo), check=0).stdout
    assert "held: tape" in listing
