"""What the tests of dump parts (command, postgresql, mysql) share: a
repository with a config holding a small directory part `mail` and the
part under test, the JSON of `backup` and `snapshots`, a backup whose dump
is killed midway, and configuration errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import histfs


def config_with_part(tmp_path: Path, part: str) -> Path:
    """tmp_path/histfs.toml for host mx1: the repository tmp_path/repo
    (made if missing), a part `mail` of one file, then the TOML `part`
    (a `[[part]]` table, its last line ended)."""
    root = tmp_path / "repo"
    if not root.exists():
        histfs("init", "--encryption", "none", str(root), check=0)
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "a").write_text("mail\n")
    cfg = tmp_path / "histfs.toml"
    cfg.write_text(f'repository = "{root}"\nhost = "mx1"\n'
                   f'[[part]]\nname = "mail"\npath = "{src}"\n{part}')
    return cfg


def backup_summary(cfg: Path, check: int = 0, timeout: float = 600) -> dict[str, object]:
    """`histfs backup --config CFG --json`, which must exit `check`; its summary."""
    proc = histfs("backup", "--config", str(cfg), "--json", check=check, timeout=timeout)
    summary: dict[str, object] = json.loads(proc.stdout)
    return summary


def snapshot_rows(cfg: Path) -> list[dict[str, object]]:
    """`histfs snapshots --config CFG --json`."""
    rows: list[dict[str, object]] = json.loads(
        histfs("snapshots", "--config", str(cfg), "--json", check=0).stdout)
    return rows


def backup_killing_dump(cfg: Path, is_dump: Callable[[list[bytes]], bool]
                        ) -> tuple[subprocess.CompletedProcess[str], list[int]]:
    """`histfs backup --config CFG --json` while a thread SIGKILLs the first
    process whose argv `is_dump` accepts, once it has run 0.3 s; the
    backup's result and the pids killed (none if the dump ended first)."""
    done, killed = threading.Event(), []

    def kill_when_busy() -> None:
        while not done.is_set():
            for pid in os.listdir("/proc"):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if pid.isdigit() and is_dump(argv):
                    time.sleep(0.3)
                    os.kill(int(pid), signal.SIGKILL)
                    killed.append(int(pid))
                    return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    try:
        proc = histfs("backup", "--config", str(cfg), "--json", timeout=300)
    finally:
        done.set()
        killer.join()
    return proc, killed


def assert_config_errors(tmp_path: Path, part: str, cases: list[tuple[str, str]],
                         hidden: str | None = None) -> None:
    """For each (toml, key) of `cases`: a config whose one part is `part`
    (its first lines) then `toml` makes `backup` exit 2 with one line
    naming that key of part[0], and never saying `hidden`."""
    for i, (extra, key) in enumerate(cases):
        cfg = tmp_path / f"c{i}.toml"
        cfg.write_text(f'repository = "{tmp_path}/repo"\n[[part]]\n{part}{extra}')
        proc = histfs("backup", "--config", str(cfg))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (extra, proc.stderr)
        assert f"{cfg}: part[0].{key}" in lines[0], (extra, lines)
        assert hidden is None or hidden not in lines[0], (extra, lines)
