"""What the tests of dump parts (command, postgresql, mysql) share: a
repository with a config holding a small directory part `mail` and the
part under test, and the JSON of `backup` and `snapshots`."""

from __future__ import annotations

import json
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
