"""One damaged snapshot index among readable ones, seen from every command.

A real repository gets three snapshots of a host a second apart; then the
middle one's index is damaged, in one of two ways: three KiB of garbage in
place of the index of an unencrypted repository, or one flipped byte in the
sealed index of an encrypted one. Every command goes through the real
`histfs` command line (and the mount through FUSE):

- `snapshots` lists all three, the damaged one flagged with the reason, and
  exits 1 (`--json` too);
- `versions` lists the path in the two readable ones and names the damaged
  one in a warning (exit 1); `diff` of the readable ones works, `diff` or
  `restore` (by `--at`) of the damaged one fails naming it (exit 2);
- `report` and `metrics` show it as damaged; `gc` stops naming it and
  deletes nothing;
- `prune` never removes a readable snapshot because the damaged one holds
  its place, and removes the damaged one once the policy no longer keeps it;
- the mount lists every snapshot, serves the readable ones and gives EIO
  for the damaged one, with a log line naming it;
- a backup whose newest snapshot is damaged still runs, compared with the
  newest readable one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from index.format.names import snapshot_time
from index.format.snapshot_format import snapshot_relpath
from tests.conftest import Mount, histfs
from writer.retention import Policy, plan, plan_around_damage

HOST = "mx1"
PASS = "damaged snapshots passphrase"
KEPT = b"unchanged mail\n" * 200


@dataclass
class Damaged:
    """A repository whose snapshot `names[1]` is damaged."""

    repo: Path
    src: Path
    names: list[str]
    reason: str

    def run(self, *args: str, check: int | None = None) -> subprocess.CompletedProcess[str]:
        proc = histfs(*args[:1], "--repo", str(self.repo), *args[1:], check=check)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    @property
    def bad(self) -> str:
        return self.names[1]


def _content(i: int) -> bytes:
    return b"".join(b"version %d\n" % v for v in range(1, i + 2))


def _three_snapshots(repo: Path, src: Path, encryption: str) -> list[str]:
    histfs("init", "--encryption", encryption, str(repo), check=0)
    (src / "keep").mkdir(parents=True)
    (src / "keep" / "k.txt").write_bytes(KEPT)
    names = []
    for i in range(3):
        if i:
            time.sleep(1.05)  # a second apart, so that --at can pick each one
        (src / "a.txt").write_bytes(_content(i))
        proc = histfs("backup", "--repo", str(repo), "--host", HOST, "--json", f"d={src}",
                      check=0)
        names.append(json.loads(proc.stdout)["snapshot"])
    return names


def _garbage(index: Path) -> None:
    os.chmod(index, 0o644)
    index.write_bytes(os.urandom(3072))


def _flip_byte(index: Path) -> None:
    os.chmod(index, 0o644)
    with open(index, "r+b") as f:
        f.seek(index.stat().st_size // 2)
        old = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([old[0] ^ 0x01]))


CASES = {
    "plain-garbage": ("none", _garbage, "not an index file"),
    "sealed-flipped-byte": ("repokey", _flip_byte, "authentication failed"),
}


@pytest.fixture(params=sorted(CASES))
def damaged(request: pytest.FixtureRequest, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Damaged:
    encryption, damage, reason = CASES[request.param]
    monkeypatch.setenv("HISTFS_PASSPHRASE", PASS)
    repo, src = tmp_path / "repo", tmp_path / "src"
    names = _three_snapshots(repo, src, encryption)
    damage(repo / snapshot_relpath(HOST, names[1]))
    return Damaged(repo, src, names, reason)


def _warnings(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("histfs: warning: ")]


def _one_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("histfs: error: "), proc.stderr
    for word in words:
        assert word in errors[0], errors


@pytest.mark.timeout(240)
def test_listing_commands_flag_the_damaged_snapshot_and_show_the_others(
        damaged: Damaged, tmp_path: Path) -> None:
    d = damaged
    label = f"{HOST}/{d.bad}"

    proc = d.run("snapshots", check=1)
    rows = {line.split()[1]: line for line in proc.stdout.splitlines()[1:]}
    assert list(rows) == d.names, proc.stdout
    assert f"damaged: {d.reason}" in rows[d.bad]
    for name in (d.names[0], d.names[2]):
        assert rows[name].split()[2] == "2" and rows[name].endswith(" d"), rows[name]
    (warning,) = _warnings(proc)
    assert label in warning and d.reason in warning
    listed = json.loads(d.run("snapshots", "--json", check=1).stdout)
    assert [r["name"] for r in listed] == d.names
    assert d.reason in listed[1]["damaged"] and listed[1]["files"] is None
    assert [r["damaged"] for r in (listed[0], listed[2])] == [None, None]
    assert [r["files"] for r in (listed[0], listed[2])] == [2, 2]

    proc = d.run("versions", "d/a.txt", check=1)
    assert [line.split()[0] for line in proc.stdout.splitlines()] == [d.names[0], d.names[2]]
    (warning,) = _warnings(proc)
    assert label in warning and d.reason in warning
    found = json.loads(d.run("versions", "d/a.txt", "--json", check=1).stdout)
    assert [(v["snapshot"], v["size"], v["changed"]) for v in found] == [
        (d.names[0], len(_content(0)), True), (d.names[2], len(_content(2)), True)]

    proc = d.run("diff", d.names[0], d.names[2], check=0)
    assert proc.stdout.split() == ["changed", "d/a.txt"]
    _one_error(d.run("diff", d.names[0], d.bad), label, d.reason)
    _one_error(d.run("diff", d.bad, "last"), label, d.reason)

    page = tmp_path / "report.html"
    config = tmp_path / "histfs.toml"
    config.write_text(f'repository = "{d.repo}"\n[retention]\nkeep_last = 1\n')
    proc = histfs("report", "--config", str(config), "--output", str(page), check=1)
    (warning,) = _warnings(proc)
    assert label in warning
    text = page.read_text()
    assert d.bad in text and d.reason in text and "1 damaged" in text
    assert len(re.findall(r'class="logical"', text)) == 2  # the chart: readable ones only

    proc = d.run("metrics", check=0)
    assert f'histfs_snapshots_damaged{{host="{HOST}"}} 1' in proc.stdout
    assert f'histfs_snapshot_damaged{{host="{HOST}",snapshot="{d.bad}"}} 1' in proc.stdout
    assert f'histfs_snapshots{{host="{HOST}"}} 3' in proc.stdout


@pytest.mark.timeout(240)
def test_restore_of_others_works_and_of_the_damaged_one_fails_naming_it(
        damaged: Damaged, tmp_path: Path) -> None:
    d = damaged
    for i in (0, 2):
        target = tmp_path / f"restored-{i}"
        d.run("restore", "--host", HOST, d.names[i], "--target", str(target), check=0)
        assert (target / "d" / "a.txt").read_bytes() == _content(i)
        assert (target / "d" / "keep" / "k.txt").read_bytes() == KEPT
    at = snapshot_time(d.bad).strftime("%Y-%m-%dT%H:%M:%SZ")
    target = tmp_path / "restored-bad"
    _one_error(d.run("restore", "--at", at, "--target", str(target)), f"{HOST}/{d.bad}",
               d.reason)
    assert not target.exists() or not any(target.iterdir())
    # One second later is still the damaged one; one second earlier the first.
    earlier = (snapshot_time(d.bad) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    d.run("restore", "--at", earlier, "--target", str(tmp_path / "earlier"), check=0)
    assert (tmp_path / "earlier" / "d" / "a.txt").read_bytes() == _content(0)


@pytest.mark.timeout(240)
def test_gc_stops_naming_the_damaged_snapshot_and_prune_never_removes_more(
        damaged: Damaged) -> None:
    d = damaged
    packs = sorted(p for p in (d.repo / "packs").rglob("*") if p.is_file())
    proc = d.run("gc", "--grace", "0", "--wait", "0")
    _one_error(proc, f"{HOST}/{d.bad}", d.reason, "gc stops")
    assert sorted(p for p in (d.repo / "packs").rglob("*") if p.is_file()) == packs

    # keep_last 2: the damaged snapshot counts for the second place, and the
    # first (readable) one is kept as the second readable one.
    proc = d.run("prune", "--keep-last", "2", "--json", check=1)
    decisions = {x["snapshot"]: x for x in json.loads(proc.stdout)}
    assert [decisions[n]["keep"] for n in d.names] == [True, True, True], decisions
    assert d.reason in decisions[d.bad]["damaged"]
    assert any(f"{HOST}/{d.bad}" in w for w in _warnings(proc))
    assert [r["name"] for r in json.loads(d.run("snapshots", "--json").stdout)] == d.names

    # keep_last 1: the damaged one is not kept any more, and goes like any other.
    proc = d.run("prune", "--keep-last", "1", "--dry-run", check=0)
    lines = {next(w for w in line.split() if w[0].isdigit()): line.split()[0]
             for line in proc.stdout.splitlines()}
    assert lines == {d.names[0]: "would", d.bad: "would", d.names[2]: "keep"}, proc.stdout
    d.run("prune", "--keep-last", "1", check=0)
    listed = json.loads(d.run("snapshots", "--json", check=0).stdout)
    assert [r["name"] for r in listed] == [d.names[2]]
    d.run("gc", "--grace", "0", "--wait", "0", check=0)
    d.run("check", check=0)


@pytest.mark.timeout(240)
def test_mount_serves_the_others_and_gives_eio_for_the_damaged_one(
        damaged: Damaged, mount_repo: Callable[..., Mount]) -> None:
    d = damaged
    m = mount_repo(d.repo)
    host = m.path / HOST
    assert sorted(os.listdir(host)) == [*d.names, "last"]
    for i in (0, 2):
        assert (host / d.names[i] / "d" / "a.txt").read_bytes() == _content(i)
        assert (host / d.names[i] / "d" / "keep" / "k.txt").read_bytes() == KEPT
    assert (host / "last" / "d" / "a.txt").read_bytes() == _content(2)
    for attempt in (lambda: os.listdir(host / d.bad),
                    lambda: (host / d.bad / "d" / "a.txt").read_bytes()):
        with pytest.raises(OSError) as info:
            attempt()
        assert info.value.errno == errno.EIO
    m.stop()
    log = m.log.read_text()
    assert "Traceback" not in log
    assert any(f"{HOST}/{d.bad}" in line and d.reason in line for line in log.splitlines()), log


@pytest.mark.timeout(240)
def test_backup_after_a_damaged_newest_snapshot_compares_with_the_one_before(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTFS_PASSPHRASE", PASS)
    repo, src = tmp_path / "repo", tmp_path / "src"
    names = _three_snapshots(repo, src, "none")
    _garbage(repo / snapshot_relpath(HOST, names[2]))
    proc = histfs("backup", "--repo", str(repo), "--host", HOST, "--json", f"d={src}")
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout)
    (warning,) = _warnings(proc)
    assert f"{HOST}/{names[2]}" in warning and "damaged" in warning
    # k.txt is unchanged since the second snapshot and is not read again.
    assert summary["files_unchanged"] == 1 and summary["files_changed"] == 1
    out = tmp_path / "out"
    histfs("restore", "--repo", str(repo), "last", "--target", str(out), check=0)
    assert (out / "d" / "a.txt").read_bytes() == _content(2)
    assert (out / "d" / "keep" / "k.txt").read_bytes() == KEPT


# -- the retention rule itself ---------------------------------------------------------


def _days(n: int) -> list[tuple[str, datetime]]:
    first = datetime(2026, 10, 1, 3, tzinfo=UTC)
    return [(f"s{i}", first + timedelta(days=i)) for i in range(n)]


@pytest.mark.parametrize("policy", [
    Policy(keep_last=3), Policy(keep_daily=2, keep_weekly=2), Policy(keep_ages=(
        timedelta(days=3), timedelta(days=6))), Policy(keep_within=timedelta(days=2))],
    ids=["last", "daily-weekly", "ages", "within"])
@pytest.mark.parametrize("bad", [{"s9"}, {"s8"}, {"s9", "s8", "s5"}, set()],
                         ids=["newest", "second", "three", "none"])
def test_damage_never_removes_what_plain_retention_keeps(policy: Policy,
                                                         bad: set[str]) -> None:
    snaps = _days(10)
    asked: list[str] = []

    def damaged(name: str) -> str | None:
        asked.append(name)
        return "garbage" if name in bad else None

    decisions = plan_around_damage(snaps, policy, {}, damaged)
    kept = {x.name for x in decisions if x.keep}
    plain = {x.name for x in plan(snaps, policy) if x.keep}
    among_readable = {x.name for x in plan([s for s in snaps if s[0] not in bad], policy)
                      if x.keep}
    # Never less than without damage, nor than if the damaged ones did not
    # exist; nothing else.
    assert kept == plain | among_readable
    assert len(asked) == len(set(asked)) and set(asked) >= kept


def test_damaged_newest_keeps_the_newest_readable() -> None:
    asked: list[str] = []

    def damaged(name: str) -> str | None:
        asked.append(name)
        return "garbage" if name == "s4" else None

    decisions = plan_around_damage(_days(5), Policy(keep_last=1), None, damaged)
    assert [x.name for x in decisions if x.keep] == ["s3", "s4"]
    assert decisions[3].reasons == ["last (among readable snapshots)"]
    assert asked == ["s4", "s3"]  # what no rule keeps is not opened
