"""prune and gc killed with SIGKILL at random moments never damage anything.

Each trial adds a day of mail (new messages, some deleted, a dump
rewritten), then starts `prune` and `gc` and kills each at a random moment
(or lets it finish, when the moment comes too late). After every kill the
repository passes `check`, every snapshot still listed reads back exactly as
its source was, and the next prune and gc finish the job.
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
from tests.conftest import backup_json, histfs
from tests.trees import snapshot_state, source_state

State = dict[bytes, tuple[object, ...]]


def _mail_day(src: Path, rng: random.Random, day: int) -> None:
    cur = src / "cur"
    cur.mkdir(parents=True, exist_ok=True)
    existing = sorted(cur.iterdir())
    for victim in rng.sample(existing, len(existing) // 10):
        victim.unlink()
    for i in range(60):
        (cur / f"{day:03}-{i:03}:2,S").write_bytes(rng.randbytes(rng.randrange(2_000, 40_000)))
    (src / "dump.sql").write_bytes(rng.randbytes(3_000_000))


def _verify(repo_path: Path, states: dict[str, State]) -> int:
    """Every listed snapshot is a known one and reads back exactly."""
    repo = Repository.open(repo_path)
    try:
        refs = list(repo.snapshots("mx1"))
        for ref in refs:
            assert ref.name in states, ref.name
            with repo.open_snapshot(ref) as snap:
                assert snapshot_state(snap, "mail") == states[ref.name], ref.name
        return len(refs)
    finally:
        repo.close()


class RandomKiller:
    """Runs a command and SIGKILLs it at a random moment of its run: the
    delay is drawn up to the duration of its last uninterrupted run (prune
    and gc of a small repository take a few tenths of a second, most of it
    starting Python), so kills land in every phase, and some runs finish.
    Until one has finished, each kill makes the guess longer: on a loaded
    machine starting Python alone can take longer than the first guess."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.duration: dict[str, float] = {}
        self.guess: dict[str, float] = {}
        self.killed: dict[str, int] = {}

    def run(self, *args: str) -> None:
        command = args[0]
        longest = self.duration.get(command) or self.guess.get(command, 0.3)
        delay = self.rng.uniform(0.05, longest * 1.1)
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "histfs", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL), err
        if proc.returncode == 0:
            self.duration[command] = time.monotonic() - start
        else:
            self.killed[command] = self.killed.get(command, 0) + 1
            self.guess[command] = longest * 1.5


def _trials(tmp_path: Path, trials: int, seed: int, figures) -> None:
    rng = random.Random(seed)
    repo, src = tmp_path / "repo", tmp_path / "src"
    histfs("init", "--encryption", "none", str(repo), check=0)
    states: dict[str, State] = {}
    killer = RandomKiller(rng)
    for day in range(trials + 3):
        _mail_day(src, rng, day)
        states[str(backup_json(repo, f"mail={src}")["snapshot"])] = source_state(src)
        if day < 3:
            continue
        keep = str(rng.randint(2, 4))
        killer.run("prune", "--repo", str(repo), "--keep-last", keep)
        killer.run("gc", "--repo", str(repo), "--grace", "0", "--max-unused", "5%")
        histfs("check", "--repo", str(repo), check=0)
        _verify(repo, states)
    histfs("prune", "--repo", str(repo), "--keep-last", "3", check=0)
    histfs("gc", "--repo", str(repo), "--grace", "0", check=0)
    histfs("check", "--repo", str(repo), "--read-data", check=0)
    assert _verify(repo, states) == 3
    # The next backup works and reads back.
    _mail_day(src, rng, 999)
    states[str(backup_json(repo, f"mail={src}")["snapshot"])] = source_state(src)
    assert _verify(repo, states) == 4
    killed = killer.killed
    assert killed.get("gc", 0) > 0 and killed.get("prune", 0) > 0, killed
    finished = (f"finished the others, up to {max(killer.duration.values()):.2f} s"
                if killer.duration else "none finished")
    figures(f"{trials} trials: prune killed {killed['prune']} times, gc killed "
            f"{killed['gc']} times ({finished}); check and exact reads "
            "of every listed snapshot after each")


@pytest.mark.timeout(600)
def test_prune_and_gc_killed_at_random_moments(tmp_path: Path, figures) -> None:
    _trials(tmp_path, trials=10, seed=1, figures=figures)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_prune_and_gc_killed_at_random_moments_many(tmp_path: Path, figures) -> None:
    _trials(tmp_path, trials=50, seed=2, figures=figures)


@pytest.mark.timeout(300)
def test_gc_killed_while_a_backup_runs(tmp_path: Path) -> None:
    """A backup running beside a gc that is killed still publishes a whole
    snapshot, and the repository stays consistent."""
    rng = random.Random(3)
    repo, src = tmp_path / "repo", tmp_path / "src"
    histfs("init", "--encryption", "none", str(repo), check=0)
    states: dict[str, State] = {}
    for day in range(4):
        _mail_day(src, rng, day)
        states[str(backup_json(repo, f"mail={src}")["snapshot"])] = source_state(src)
    histfs("prune", "--repo", str(repo), "--keep-last", "2", check=0)
    _mail_day(src, rng, 50)
    state = source_state(src)
    backup = subprocess.Popen(
        [sys.executable, "-m", "histfs", "backup", "--repo", str(repo), "--host", "mx1",
         f"mail={src}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ})
    time.sleep(0.3)
    killer = RandomKiller(rng)
    killer.duration["gc"] = 0.6
    killer.run("gc", "--repo", str(repo), "--grace", "0", "--max-unused", "5%")
    _, err = backup.communicate(timeout=120)
    assert backup.returncode == 0, err
    repo_obj = Repository.open(repo)
    new = [r.name for r in repo_obj.snapshots("mx1") if r.name not in states]
    repo_obj.close()
    assert len(new) == 1
    states[new[0]] = state
    histfs("check", "--repo", str(repo), check=0)
    _verify(repo, states)
    histfs("gc", "--repo", str(repo), "--grace", "0", check=0)
    histfs("check", "--repo", str(repo), "--read-data", check=0)
    _verify(repo, states)
