"""`histfs prune`, `hold` and `release` through the command line, on a real
repository. Snapshots at chosen dates are copies of a real snapshot index
under dated names (with their metadata naming their new places), so a month
of history takes a second."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from index.format.names import snapshot_name
from tests.conftest import backup_json, copy_snapshot_index, histfs


def _history(tmp_path: Path, days: int, host: str = "mx1") -> tuple[Path, list[str]]:
    """A repository with one real snapshot of `host` copied to `days` daily names."""
    repo = tmp_path / "repo"
    src = tmp_path / "src"
    (src / "cur").mkdir(parents=True)
    (src / "cur" / "1:2,S").write_text("hello\n")
    histfs("init", "--encryption", "none", str(repo), check=0)
    real = backup_json(repo, f"mail={src}", host=host)["snapshot"]
    folder = repo / "snapshots" / host
    first = datetime(2026, 10, 1, 3, tzinfo=UTC)
    names = [snapshot_name(first + timedelta(days=i)) for i in range(days)]
    for name in names:
        copy_snapshot_index(folder / f"{real}.idx", folder / f"{name}.idx")
    (folder / f"{real}.idx").unlink()
    return repo, names


def _listed(repo: Path, host: str = "mx1") -> list[str]:
    proc = histfs("snapshots", "--repo", str(repo), "--host", host, "--json", check=0)
    return [row["snapshot"] if "snapshot" in row else row["name"]
            for row in json.loads(proc.stdout)]


@pytest.mark.timeout(120)
def test_dry_run_shows_rules_and_prune_removes_the_rest(tmp_path: Path) -> None:
    repo, names = _history(tmp_path, 31)  # 2026-10-01 .. 2026-10-31
    config = tmp_path / "histfs.toml"
    config.write_text(f'repository = "{repo}"\nhost = "mx1"\n'
                      "[retention]\nkeep_daily = 3\nkeep_weekly = 2\n"
                      'keep_ages = ["14d"]\n')
    proc = histfs("prune", "--config", str(config), "--dry-run", check=0)
    lines = {next(word for word in line.split() if word.startswith("2026-")): line
             for line in proc.stdout.splitlines()}
    assert lines[names[-1]].startswith("keep") and "daily 2026-10-31" in lines[names[-1]]
    # 2026-10-25 is the Sunday ending ISO week 43.
    assert "weekly 2026-W43" in lines[snapshot_name(datetime(2026, 10, 25, 3, tzinfo=UTC))]
    assert "age 14d" in lines[snapshot_name(datetime(2026, 10, 17, 3, tzinfo=UTC))]
    assert lines[names[0]].startswith("would remove")
    assert "5 kept, 26 would be removed" in proc.stderr
    assert _listed(repo) == names  # a dry run removes nothing

    proc = histfs("prune", "--config", str(config), "--json", check=0)
    decisions = json.loads(proc.stdout)
    kept = [d["snapshot"] for d in decisions if d["keep"]]
    assert len(kept) == 5 and _listed(repo) == kept
    # Whatever is left still reads.
    histfs("check", "--repo", str(repo), check=0)
    out = tmp_path / "out"
    histfs("restore", "--repo", str(repo), "--host", "mx1", kept[0], "--target", str(out),
           check=0)
    assert (out / "mail" / "cur" / "1:2,S").read_text() == "hello\n"


@pytest.mark.timeout(120)
def test_command_line_rules_override_and_empty_policy_is_refused(tmp_path: Path) -> None:
    repo, names = _history(tmp_path, 6)
    proc = histfs("prune", "--repo", str(repo), check=2)
    assert proc.stderr.startswith("histfs: error: the retention policy is empty")
    assert _listed(repo) == names
    proc = histfs("prune", "--repo", str(repo), "--keep-daily", "x", check=2)
    assert "invalid int value" in proc.stderr
    proc = histfs("prune", "--repo", str(repo), "--keep-within", "2 days", check=2)
    assert "--keep-within: expected a duration" in proc.stderr
    assert _listed(repo) == names
    # keep_within counts back from the newest snapshot: 2d keeps three of them.
    histfs("prune", "--repo", str(repo), "--keep-within", "2d", check=0)
    assert _listed(repo) == names[-3:]
    # Prune never removes the newest snapshot of a host.
    histfs("prune", "--repo", str(repo), "--keep-ages", "400d", check=2)
    histfs("prune", "--repo", str(repo), "--keep-age", "400d", check=0)
    assert _listed(repo) == names[-1:]


@pytest.mark.timeout(120)
def test_held_snapshot_survives_prune_until_released(tmp_path: Path) -> None:
    repo, names = _history(tmp_path, 10)
    victim = names[2]
    r = str(repo)
    proc = histfs("hold", "--repo", r, "--host", "mx1", victim, "--reason", "tape", check=0)
    assert proc.stdout.startswith(f"held       mx1/{victim} (tape)")
    histfs("hold", "--repo", r, "--host", "mx1", victim, "--reason", "legal", check=0)
    proc = histfs("snapshots", "--repo", r, check=0)
    assert any(victim in line and "held: tape, legal" in line for line in proc.stdout.splitlines())

    histfs("prune", "--repo", r, "--keep-last", "2", check=0)
    assert _listed(repo) == [victim, *names[-2:]]
    histfs("release", "--repo", r, "--host", "mx1", victim, "--reason", "tape", check=0)
    # Released already: nothing to do, and no error (see test_release_again).
    proc = histfs("release", "--repo", r, "--host", "mx1", victim, "--reason", "tape", check=0)
    assert "has no hold with reason 'tape'" in proc.stderr
    proc = histfs("prune", "--repo", r, "--keep-last", "2", "--dry-run", check=0)
    assert proc.stdout.splitlines()[0].split() == \
        ["keep", "mx1", victim, "hold:", "legal"]
    histfs("release", "--repo", r, "--host", "mx1", victim, "--reason", "legal", check=0)
    histfs("prune", "--repo", r, "--keep-last", "2", check=0)
    assert _listed(repo) == names[-2:]
    # The removed snapshot's holds went with it; holds are refused on what is gone.
    assert not (repo / "holds" / "mx1" / victim).exists()
    proc = histfs("hold", "--repo", r, "--host", "mx1", victim, "--reason", "tape", check=2)
    assert f"no snapshot {victim}" in proc.stderr
    proc = histfs("hold", "--repo", r, "--host", "mx1", "last", "--reason", "", check=2)
    assert "invalid hold reason" in proc.stderr


@pytest.mark.timeout(120)
def test_prune_works_per_host(tmp_path: Path) -> None:
    repo, names = _history(tmp_path, 4, host="mx1")
    src = tmp_path / "src"
    backup_json(repo, f"mail={src}", host="mx2")
    backup_json(repo, f"mail={src}", host="mx2")
    histfs("prune", "--repo", str(repo), "--host", "mx1", "--keep-last", "1", check=0)
    assert _listed(repo, "mx1") == names[-1:]
    assert len(_listed(repo, "mx2")) == 2
    histfs("prune", "--repo", str(repo), "--keep-last", "1", check=0)
    assert len(_listed(repo, "mx2")) == 1


def test_a_backup_in_the_second_of_pruned_ones_still_comes_last(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Snapshots of one second are T, T-2, T-3...; after prune removed T and
    T-2, the next backup of that second is T-4, not T again (which would
    sort before T-3, and `last` would not be the newest backup)."""
    import writer.backup
    from index.model.repository import Repository
    from writer.backup import run_backup
    from writer.parts import Part
    from writer.prune import prune
    from writer.retention import Policy

    fixed = datetime(2026, 12, 2, 3, 0, 0, tzinfo=UTC)

    class FrozenClock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> FrozenClock:  # type: ignore[override]
            return fixed  # type: ignore[return-value]

    monkeypatch.setattr(writer.backup, "datetime", FrozenClock)
    src = tmp_path / "src"
    src.mkdir()
    repo = Repository.init(tmp_path / "repo")
    try:
        for i in range(3):
            (src / "day").write_text(str(i))
            run_backup(repo, "mx1", [Part("data", src)])
        base = snapshot_name(fixed)
        assert [r.name for r in repo.snapshots("mx1")] == [base, f"{base}-2", f"{base}-3"]
        prune(repo, Policy(keep_last=1))
        (src / "day").write_text("newest")
        run_backup(repo, "mx1", [Part("data", src)])
        names = [r.name for r in repo.snapshots("mx1")]
        assert names == [f"{base}-3", f"{base}-4"]
        latest = repo.latest("mx1")
        assert latest is not None
        with repo.open_snapshot(latest) as snap:
            assert snap.read(snap.resolve("data/day"), 0, 10) == b"newest"
    finally:
        repo.close()


def test_hold_and_release_take_repository_and_host_from_the_config(tmp_path: Path) -> None:
    """With two hosts in the repository, `hold --config` holds the config's
    host's snapshot (no --repo, no --host needed)."""
    repo, _ = _history(tmp_path, 2, host="mx2")
    src = tmp_path / "src"
    backup_json(repo, f"mail={src}", host="mx1")
    config = tmp_path / "histfs.toml"
    config.write_text(f'repository = "{repo}"\nhost = "mx2"\n')
    proc = histfs("hold", "--config", str(config), "last", "--reason", "tape", check=0)
    assert proc.stdout.startswith("held       mx2/")
    proc = histfs("release", "--config", str(config), "last", "--reason", "tape", check=0)
    assert proc.stdout.startswith("released   mx2/")


@pytest.mark.timeout(120)
def test_release_again_succeeds_with_a_note(tmp_path: Path) -> None:
    """A tape job's completion script may run `release` twice (it retries
    after a timeout), or after prune removed the snapshot its first release
    freed: both are exit 0 with a note. A host or snapshot name that cannot
    be right is still an error."""
    repo, names = _history(tmp_path, 5)
    r = str(repo)
    victim = names[1]
    histfs("hold", "--repo", r, "--host", "mx1", victim, "--reason", "tape", check=0)
    proc = histfs("release", "--repo", r, "--host", "mx1", victim, "--reason", "tape", check=0)
    assert proc.stdout == f"released   mx1/{victim} (tape)\n"
    proc = histfs("release", "--repo", r, "--host", "mx1", victim, "--reason", "tape", check=0)
    assert proc.stdout == ""
    assert proc.stderr == (f"histfs: mx1/{victim} has no hold with reason 'tape': "
                           "nothing to release\n")
    # --quiet leaves out the note.
    proc = histfs("--quiet", "release", "--repo", r, "--host", "mx1", victim, "--reason",
                  "tape", check=0)
    assert proc.stdout == proc.stderr == ""

    histfs("prune", "--repo", r, "--keep-last", "1", check=0)
    assert victim not in _listed(repo)
    proc = histfs("release", "--repo", r, "--host", "mx1", victim, "--reason", "tape", check=0)
    assert proc.stderr == (f"histfs: there is no snapshot mx1/{victim} (pruned?): "
                           "nothing to release\n")

    for args, words in ((["--host", "mx9", victim], "no snapshot"),
                        (["--host", "mx1", "2026-13-01T000000Z"], "no snapshot"),
                        (["--host", "mx1", "../../etc"], "no snapshot")):
        proc = histfs("release", "--repo", r, *args, "--reason", "tape")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("histfs: error: ") and words in proc.stderr, proc.stderr
        assert len(proc.stderr.splitlines()) == 1
    # A hold still needs its snapshot.
    proc = histfs("hold", "--repo", r, "--host", "mx1", victim, "--reason", "tape", check=2)
    assert f"no snapshot {victim}" in proc.stderr
