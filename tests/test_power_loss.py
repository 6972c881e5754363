"""The commit order survives a power loss.

After a power loss only what was fsynced is on the disk. A backup is safe
from that only if every object is written and fsynced under a temporary
name, renamed into place and its directory fsynced, and the snapshot index
is published (renamed) only after the packs it names are durable. The test
records the real system calls of `histfs init` and `histfs backup` with
strace and checks that order call by call.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("strace") is None,
                                reason="strace is installed by scripts/setup-env")

SYSCALLS = "fsync,fdatasync,rename,renameat,renameat2"
# 1234 fsync(7</path/to/file>) = 0   or   rename("/a", "/b") = 0   or
# renameat(5</a>, "x", 6</b>, "y") = 0
_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<rc>-?\d+)")
_FD_PATH = re.compile(r"^\d+<(?P<path>.*)>$")
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
# renameat(5</repo/tmp>, ".x.tmp", 6</repo/packs/ab>, "ab…"): a name relative
# to a directory descriptor, which strace -y shows with its path.
_AT_NAME = re.compile(r'(?:\d+<(?P<dir>[^>]*)>|AT_FDCWD),\s*"(?P<name>(?:[^"\\]|\\.)*)"')


@dataclass
class Trace:
    """What a traced run did to a repository, in order."""

    events: list[tuple[str, str, str]] = field(default_factory=list)  # (call, a, b)


def _parse(text: str) -> Trace:
    trace = Trace()
    unfinished: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw
        m = re.match(r"^(\d+)\s+(.*)<unfinished \.\.\.>$", raw)
        if m:
            unfinished[m.group(1)] = m.group(2)
            continue
        m = re.match(r"^(\d+)\s+<\.\.\. \w+ resumed>(.*)$", raw)
        if m:
            # A call interrupted by another thread's call counts when it
            # returns: only then is an fsync's data durable.
            line = f"{m.group(1)} {unfinished.pop(m.group(1))}{m.group(2)}"
        m = _LINE.match(line)
        if not m:
            continue
        call, args, rc = m.group("call"), m.group("args"), int(m.group("rc"))
        if call in ("fsync", "fdatasync"):
            fd = _FD_PATH.match(args.strip())
            assert fd, f"strace did not name the file of {raw!r}"
            assert rc == 0, raw
            trace.events.append(("fsync", fd.group("path"), ""))
        else:
            names = ([os.path.join(m["dir"] or "", m["name"]) for m in _AT_NAME.finditer(args)]
                     if call.startswith("renameat") else _STRING.findall(args))
            assert len(names) == 2, raw
            assert rc == 0, raw
            trace.events.append(("rename", names[0], names[1]))
    assert not unfinished or all("exit" in v for v in unfinished.values()), unfinished
    return trace


def _traced(out: Path, *args: str) -> Trace:
    proc = subprocess.run(
        ["strace", "-f", "-y", "-qq", "-e", f"trace={SYSCALLS}", "-o", str(out),
         sys.executable, "-m", "histfs", *args],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return _parse(out.read_text())


def check_commit_order(trace: Trace, repo: Path) -> dict[str, int]:
    """Fail on any rename into `repo` whose data was not fsynced before it,
    whose directory was not fsynced after it, or a snapshot published while a
    pack renamed before it was not yet durable. Returns counts by kind."""
    root = str(repo)
    synced: set[str] = set()
    # Renamed into place, directory not fsynced yet: final path -> kind.
    pending_dirs: dict[str, str] = {}
    counts: dict[str, int] = {}
    for call, a, b in trace.events:
        if call == "fsync":
            synced.add(a)
            for final in [p for p in pending_dirs if os.path.dirname(p) == a]:
                del pending_dirs[final]
            continue
        if not b.startswith(root + "/"):
            continue
        rel = os.path.relpath(b, root)
        kind = rel.split("/", 1)[0]
        counts[kind] = counts.get(kind, 0) + 1
        assert a in synced, f"{rel} was renamed into place before its data was fsynced"
        synced.discard(a)
        if kind == "snapshots":
            waiting = sorted(os.path.relpath(p, root) for p in pending_dirs)
            assert not waiting, f"{rel} published while {waiting} were not durable"
        pending_dirs[b] = kind
    left = sorted(os.path.relpath(p, root) for p in pending_dirs)
    assert not left, f"the renames of {left} were never made durable"
    return counts


def _source(root: Path, rng: random.Random) -> None:
    for d in range(3):
        box = root / f"box{d}" / "cur"
        box.mkdir(parents=True)
        for i in range(50):
            (box / f"{i}.eml").write_bytes(rng.randbytes(rng.randint(10, 40_000)))
    (root / "dump.sql").write_bytes(rng.randbytes(40 * 1024 * 1024))


@pytest.mark.timeout(600)
def test_backups_make_every_object_durable_before_publishing(tmp_path: Path,
                                                             figures) -> None:
    rng = random.Random(7)
    src = tmp_path / "src"
    _source(src, rng)
    repo = tmp_path / "repo"
    totals: dict[str, int] = {}
    runs: list[tuple[str, ...]] = [("init", "--encryption", "none", str(repo))]
    for _ in range(2):
        runs.append(("backup", "--repo", str(repo), "--host", "mx1", f"data={src}"))
    for i, args in enumerate(runs):
        if i == 2:
            (src / "dump.sql").write_bytes(rng.randbytes(30 * 1024 * 1024))
            (src / "box1" / "cur" / "new.eml").write_bytes(b"new message\n" * 100)
        counts = check_commit_order(_traced(tmp_path / f"trace{i}", *args), repo)
        for k, v in counts.items():
            totals[k] = totals.get(k, 0) + v
    assert totals.get("packs", 0) >= 2 and totals.get("snapshots") == 2, totals
    figures("traced init + 2 backups: " + ", ".join(f"{v} {k}" for k, v in
            sorted(totals.items())) + " renames, each fsynced before and after, "
            "snapshots published after their packs were durable")


def test_the_check_finds_a_missing_directory_fsync(tmp_path: Path) -> None:
    """The checker itself fails on the orders a power loss would break."""
    root = tmp_path / "repo"
    tmp, pack, snap = f"{root}/tmp/.a.tmp", f"{root}/packs/ab/ab1", f"{root}/snapshots/mx1/s"
    good = [("fsync", tmp, ""), ("rename", tmp, pack), ("fsync", f"{root}/packs/ab", ""),
            ("fsync", tmp, ""), ("rename", tmp, snap), ("fsync", f"{root}/snapshots/mx1", "")]
    assert check_commit_order(Trace(good), root) == {"packs": 1, "snapshots": 1}
    no_data = [e for i, e in enumerate(good) if i != 0]
    with pytest.raises(AssertionError, match="before its data"):
        check_commit_order(Trace(no_data), root)
    no_dir = [e for i, e in enumerate(good) if i != 2]
    with pytest.raises(AssertionError, match="published while"):
        check_commit_order(Trace(no_dir), root)
    no_last = good[:-1]
    with pytest.raises(AssertionError, match="never made durable"):
        check_commit_order(Trace(no_last), root)


def test_strace_output_is_parsed_across_threads() -> None:
    text = (
        '11 fsync(5</r/tmp/.x.tmp> <unfinished ...>\n'
        '12 rename("/r/tmp/.y.tmp", "/r/packs/aa/aa2") = 0\n'
        '11 <... fsync resumed>) = 0\n'
        '11 rename("/r/tmp/.x.tmp", "/r/packs/aa/aa1") = 0\n'
        '11 fsync(6</r/packs/aa>) = 0\n'
        '11 +++ exited with 0 +++\n'
    )
    assert _parse(text).events == [
        ("rename", "/r/tmp/.y.tmp", "/r/packs/aa/aa2"),
        ("fsync", "/r/tmp/.x.tmp", ""),
        ("rename", "/r/tmp/.x.tmp", "/r/packs/aa/aa1"),
        ("fsync", "/r/packs/aa", ""),
    ]
