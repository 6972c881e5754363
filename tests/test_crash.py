"""A backup killed with SIGKILL never damages the repository.

After every kill: earlier snapshots are listed and read back exactly, no
partial snapshot is listed, and the next backup succeeds, reusing the data
the killed one had already made durable.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from index.model.repository import Repository
from tests.conftest import backup_json
from tests.trees import snapshot_state, source_state

MIB = 1024 * 1024


def _make_source(root: Path, rng: random.Random) -> None:
    for d in range(6):
        sub = root / f"box{d}" / "cur"
        sub.mkdir(parents=True)
        for i in range(40):
            (sub / f"msg{i}").write_bytes(rng.randbytes(rng.randint(100, 20000)))
    for i in range(5):
        (root / f"dump{i}.bin").write_bytes(rng.randbytes(12 * MIB))


def _mutate(root: Path, rng: random.Random) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for p in rng.sample(files, 5):
        p.unlink()
    for p in rng.sample(sorted(p for p in root.rglob("*") if p.is_file()), 5):
        p.write_bytes(rng.randbytes(rng.randint(100, 3 * MIB)))
    (root / f"new-{rng.randrange(10**9)}").write_bytes(rng.randbytes(6 * MIB))


def _verify(repo_path: Path, expected: dict[str, dict[bytes, tuple[object, ...]]],
            only: set[str] | None = None) -> None:
    """Every listed snapshot is one we expect, and reads back exactly (all of
    them, or those named in `only`)."""
    repo = Repository.open(repo_path)
    try:
        listed = {ref.name: ref for ref in repo.snapshots("mx1")}
        assert set(listed) == set(expected), (sorted(listed), sorted(expected))
        for name, state in expected.items():
            if only is not None and name not in only:
                continue
            with repo.open_snapshot(listed[name]) as snap:
                assert snapshot_state(snap, "data") == state, name
    finally:
        repo.close()


def _start_backup(repo: Path, src: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "histfs", "backup", "--repo", str(repo), "--host", "mx1",
         "--json", f"data={src}"],
        env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _new_names(repo_path: Path, known: set[str]) -> list[str]:
    repo = Repository.open(repo_path)
    names = [r.name for r in repo.snapshots("mx1") if r.name not in known]
    repo.close()
    return names


@pytest.mark.parametrize("point", ["pack-published", "after-packs", "before-publish",
                                   "after-publish"])
def test_kill_at_each_step_of_the_commit(repo: Repository, tmp_path: Path, point: str) -> None:
    rng = random.Random(point)
    src = tmp_path / "src"
    _make_source(src, rng)
    expected = {}
    first = backup_json(repo.root, f"data={src}")
    expected[str(first["snapshot"])] = source_state(src)
    _mutate(src, rng)
    state = source_state(src)
    proc = _start_backup(repo.root, src, {"HISTFS_TEST_CRASH_AT": point})
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    new = _new_names(repo.root, set(expected))
    if point == "after-publish":
        assert len(new) == 1  # the rename happened: the snapshot is whole
        expected[new[0]] = state
    else:
        assert new == []
    _verify(repo.root, expected)
    # The next backup succeeds and finds what the killed one had stored.
    after = backup_json(repo.root, f"data={src}")
    expected[str(after["snapshot"])] = state
    _verify(repo.root, expected)
    if point in ("after-packs", "before-publish", "after-publish"):
        assert after["bytes_added"] == 0


def _random_kill_trials(repo: Repository, tmp_path: Path, trials: int, seed: int,
                        figures) -> None:
    rng = random.Random(seed)
    src = tmp_path / "src"
    _make_source(src, rng)
    expected: dict[str, dict[bytes, tuple[object, ...]]] = {}
    first = backup_json(repo.root, f"data={src}")
    expected[str(first["snapshot"])] = source_state(src)
    killed_before_publish = 0
    for _ in range(trials):
        _mutate(src, rng)
        state = source_state(src)
        proc = _start_backup(repo.root, src, {})
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        new = _new_names(repo.root, set(expected))
        assert len(new) <= 1
        if new:
            expected[new[0]] = state
        else:
            killed_before_publish += 1
        # The first, the newest and the one just made are read back in full
        # each time; all of them once at the end.
        names = sorted(expected)
        _verify(repo.root, expected, only={names[0], names[-1], *new})
    last = backup_json(repo.root, f"data={src}")
    expected[str(last["snapshot"])] = source_state(src)
    _verify(repo.root, expected)
    figures(f"{trials} kill -9 trials: {killed_before_publish} before publishing, "
            f"{trials - killed_before_publish} after; repository intact after each")
    assert killed_before_publish > 0


def test_kill_at_random_moments(repo: Repository, tmp_path: Path, figures) -> None:
    _random_kill_trials(repo, tmp_path, trials=10, seed=1, figures=figures)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kill_at_random_moments_many(repo: Repository, tmp_path: Path, figures) -> None:
    _random_kill_trials(repo, tmp_path, trials=50, seed=2, figures=figures)
