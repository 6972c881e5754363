"""Shared fixtures: a private cache directory, repositories, CLI runners."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from index.repository import Repository

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own local cache directory."""
    path = tmp_path / "cache"
    monkeypatch.setenv("HISTFS_CACHE_DIR", str(path))
    monkeypatch.delenv("HISTFS_REPO", raising=False)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    """A new, empty repository."""
    r = Repository.init(tmp_path / "repo")
    yield r
    r.close()


def histfs(*args: str, env: dict[str, str] | None = None, check: int | None = None,
           timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `histfs` command in a subprocess, as a user would."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "histfs", *args], capture_output=True, text=True,
        env=full_env, timeout=timeout, cwd=cwd,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def backup_json(repo_path: Path, *parts: str, host: str = "mx1", check: int = 0,
                extra: tuple[str, ...] = ()) -> dict[str, object]:
    """`histfs backup --json` and its decoded summary."""
    proc = histfs("backup", "--repo", str(repo_path), "--host", host, "--json",
                  *extra, *parts, check=check)
    summary: dict[str, object] = json.loads(proc.stdout)
    return summary
