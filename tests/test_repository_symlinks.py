"""A repository is untrusted input: whoever can write it (another mail server
sharing it) must not make histfs, run as root, touch anything outside it.

Each test puts a symbolic link in place of one directory of the layout
(`snapshots/`, `snapshots/<host>`, `packs/`, `packs/xx`, `holds/`,
`holds/<host>`, `holds/<host>/<snapshot>`, `tmp/`, `locks/`, `garbage/`) or
of one file (a pack, an index, a hold, a release, a garbage list, a lock,
`config`, `key`), pointing to a "bait" directory outside the repository that
holds files and directories of every name form the format defines, all
three days old. Then it runs backup, snapshots, restore, check, hold,
release, prune (which would delete snapshots and their holds) and gc (with
--grace 0, which would delete packs, garbage lists and old temporary
files) through the command line. Every command either works or fails with
errors naming the link (one line; restore one per file it could not read),
and the bait is byte for byte, name for name and mtime for mtime what it
was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import backup_json, copy_snapshot_index, histfs

HOST = "mx1"
OLD = time.time() - 3 * 86400
# Older than the backups, so that prune keeps the newest and these go
# (but for the held one).
HELD = "2020-01-01T000000Z"
RELEASED = "2020-01-02T000000Z"
PASS = "correct horse battery staple"
PACK_NAME = "ab" + "cd" * 31
HOLD_ID = "20260101T000000.000000000Z-0badc0de"

BAIT_FILES = [
    "config", "README", "key", PACK_NAME, f"{HELD}.idx", f"{RELEASED}.idx",
    f"{HOLD_ID}.hold", f"{HOLD_ID}.release", "20260101T000000Z-0badc0de.json",
    "backup-mx1.lock", "gc.lock", "prune.lock", ".0123456789abcdef01234567.tmp",
    ".backup-mx1.lock.1.0badc0de.tmp",
]
BAIT_DIRS = ["ab", "00", "mx1", "mx2", HELD, RELEASED, "packs", "snapshots", "holds", "tmp"]

State = dict[str, tuple[int, int, str]]


def _bait_content(name: str, where: Path) -> bytes:
    """Content that histfs would accept for a file of that name: a released
    hold, an empty garbage list, a stale lock."""
    stamp = {"time": "2026-01-01T00:00:00Z", "machine": socket.gethostname(), "pid": 1}
    if name.endswith(".hold"):
        doc: dict[str, object] = {"reason": "bait", **stamp}
    elif name.endswith(".release"):
        doc = stamp
    elif name.endswith(".json"):
        doc = {**stamp, "time": OLD, "packs": []}
    elif name.endswith(".lock"):
        doc = {"machine": socket.gethostname(), "pid": 2**22 + 1, "since": stamp["time"],
               "purpose": "bait"}
    else:
        return f"bait {where.name}/{name}\n".encode()
    return json.dumps(doc).encode() + b"\n"


def make_bait(root: Path) -> Path:
    """Files of every name form, and directories named like those of the
    layout holding them again (and one more level), all three days old."""
    bait = root / "bait"
    bait.mkdir()
    # "tree" holds directories only, as a host's holds directory would.
    for where in [bait, *(bait / d for d in BAIT_DIRS), *(bait / "mx1" / d for d in BAIT_DIRS),
                  bait / "tree", *(bait / "tree" / d for d in BAIT_DIRS)]:
        where.mkdir(exist_ok=True)
        if where.name == "tree":
            continue
        for name in BAIT_FILES:
            (where / name).write_bytes(_bait_content(name, where))
    for path in [*bait.rglob("*"), bait]:
        os.utime(path, (OLD, OLD), follow_symlinks=False)
    return bait


def state(root: Path) -> State:
    """Every path below `root`: mode, mtime and a hash of the content."""
    found: State = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            st = path.lstat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest() \
                if stat.S_ISREG(st.st_mode) else ""
            found[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, digest)
    st = root.lstat()
    found["."] = (st.st_mode, st.st_mtime_ns, "")
    return found


def _mail(src: Path, tag: str, n: int) -> None:
    (src / "cur").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (src / "cur" / f"{tag}-{i}:2,S").write_bytes(os.urandom(3000) + tag.encode())


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with what every command has work to do with: snapshots
    of host mx1 whose oldest has an active hold and whose second has a
    released one, a pack only a prunable snapshot uses, an old temporary
    file."""
    root = tmp_path_factory.mktemp("template")
    saved = os.environ.get("HISTFS_CACHE_DIR")
    os.environ["HISTFS_CACHE_DIR"] = str(root / "cache")
    try:
        repo, src = root / "repo", root / "src"
        histfs("init", "--encryption", "none", str(repo), check=0)
        _mail(src, "first", 5)
        backup_json(repo, f"mail={src}")
        shutil.rmtree(src)
        _mail(src, "second", 5)
        second = str(backup_json(repo, f"mail={src}")["snapshot"])
        folder = repo / "snapshots" / HOST
        for name in (HELD, RELEASED):
            copy_snapshot_index(folder / f"{second}.idx", folder / f"{name}.idx")
        r = str(repo)
        histfs("hold", "--repo", r, "--host", HOST, HELD, "--reason", "legal", check=0)
        histfs("hold", "--repo", r, "--host", HOST, RELEASED, "--reason", "tape", check=0)
        histfs("release", "--repo", r, "--host", HOST, RELEASED, "--reason", "tape", check=0)
        leftover = repo / "tmp" / ".fedcba9876543210fedcba98.tmp"
        leftover.write_bytes(b"left by a killed writer")
        os.utime(leftover, (OLD, OLD))
    finally:
        if saved is None:
            del os.environ["HISTFS_CACHE_DIR"]
        else:
            os.environ["HISTFS_CACHE_DIR"] = saved
    return root


@pytest.fixture(scope="module")
def encrypted_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An encrypted repository with one snapshot."""
    root = tmp_path_factory.mktemp("encrypted")
    env = {"HISTFS_CACHE_DIR": str(root / "cache"), "HISTFS_PASSPHRASE": PASS}
    repo, src = root / "repo", root / "src"
    histfs("init", "--encryption", "repokey", str(repo), env=env, check=0)
    _mail(src, "first", 5)
    histfs("backup", "--repo", str(repo), "--host", HOST, f"mail={src}", env=env, check=0)
    return root


def _pack_of(repo: Path) -> Path:
    return sorted((repo / "packs").rglob("?" * 64))[0]


def _first(pattern: str) -> Callable[[Path], Path]:
    return lambda repo: sorted(repo.glob(pattern))[0]


def _garbage_list(repo: Path) -> Path:
    (repo / "garbage").mkdir()
    return repo / "garbage" / "20260102T000000Z-01234567.json"


def _lock(name: str) -> Callable[[Path], Path]:
    return lambda repo: repo / "locks" / f"{name}.lock"


# Each case: which path of the repository becomes a link, and whether it is
# a directory (replaced by a link to the bait) or a file (replaced by a link
# to a bait file of the same name form).
DIRECTORIES: dict[str, Callable[[Path], Path]] = {
    "snapshots": lambda repo: repo / "snapshots",
    "snapshots-host": lambda repo: repo / "snapshots" / HOST,
    "packs": lambda repo: repo / "packs",
    "packs-xx": lambda repo: _pack_of(repo).parent,
    "holds": lambda repo: repo / "holds",
    "holds-host": lambda repo: repo / "holds" / HOST,
    "holds-snapshot": lambda repo: repo / "holds" / HOST / RELEASED,
    "tmp": lambda repo: repo / "tmp",
    "locks": lambda repo: repo / "locks",
    "garbage": lambda repo: repo / "garbage",
}
FILES: dict[str, Callable[[Path], Path]] = {
    "pack": _pack_of,
    "index": _first(f"snapshots/{HOST}/*.idx"),
    "hold": _first(f"holds/{HOST}/{HELD}/*.hold"),
    "release": _first(f"holds/{HOST}/{RELEASED}/*.release"),
    "garbage-list": _garbage_list,
    "backup-lock": _lock("backup-mx1"),
    "prune-lock": _lock("prune"),
    "gc-lock": _lock("gc"),
    "config": lambda repo: repo / "config",
}


def _plant(repo: Path, aside: Path, where: Path, target: Path) -> None:
    """Move what is at `where` out of the repository and put a link to
    `target` there."""
    if os.path.lexists(where):
        aside.mkdir(exist_ok=True)
        shutil.move(where, aside / where.name)
    where.symlink_to(target)


def _bait_file_for(bait: Path, link: Path) -> Path:
    """A bait file of the same name form as `link` (made if need be)."""
    target = bait / link.name
    if not target.exists():
        target.write_bytes(b"bait\n")
        os.utime(target, (OLD, OLD))
    return target


def _commands(repo: Path, tmp_path: Path) -> list[tuple[str, ...]]:
    r = str(repo)
    src = tmp_path / "src"
    _mail(src, "third", 3)
    return [
        ("backup", "--repo", r, "--host", HOST, f"mail={src}"),
        ("snapshots", "--repo", r),
        ("restore", "--repo", r, "--host", HOST, "last", "--target", str(tmp_path / "out")),
        ("check", "--repo", r),
        ("hold", "--repo", r, "--host", HOST, "last", "--reason", "audit"),
        ("release", "--repo", r, "--host", HOST, "last", "--reason", "audit"),
        ("prune", "--repo", r, "--host", HOST, "--keep-last", "1"),
        ("gc", "--repo", r, "--grace", "0", "--wait", "0"),
    ]


def _run_all(commands: list[tuple[str, ...]], link: Path, bait: Path,
             env: dict[str, str] | None = None) -> dict[str, int]:
    """Run each command; each works or fails naming `link`; the bait stays."""
    before = state(bait)
    outcomes: dict[str, int] = {}
    for args in commands:
        if args[0] == "release" and outcomes.get("hold") != 0:
            continue  # nothing to release
        proc = histfs(*args, env=env)
        outcomes[args[0]] = proc.returncode
        what = (args, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, what
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines()
                      if line.startswith("histfs: error:")]
            # One line, or (restore) one per file that could not be read.
            assert proc.returncode == 2 and errors, what
            assert all(str(link) in line for line in errors), what
        assert state(bait) == before, (args, "the bait was changed")
    return outcomes


def _summary(outcomes: dict[str, int]) -> str:
    worked = [c for c, rc in outcomes.items() if rc == 0]
    refused = [c for c, rc in outcomes.items() if rc != 0]
    return (f"worked: {' '.join(worked) or '-'}; refused naming the link: "
            f"{' '.join(refused) or '-'}; bait unchanged")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", sorted(DIRECTORIES))
def test_a_linked_directory_is_never_followed(template: Path, tmp_path: Path, case: str,
                                              figures: Callable[[str], None]) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(template / "repo", repo, symlinks=True)
    bait = make_bait(tmp_path)
    link = DIRECTORIES[case](repo)
    _plant(repo, tmp_path / "aside", link, bait)
    outcomes = _run_all(_commands(repo, tmp_path), link, bait)
    figures(_summary(outcomes))
    assert any(rc == 2 for rc in outcomes.values()), outcomes
    assert os.path.islink(link)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", sorted(FILES))
def test_a_linked_file_is_never_followed(template: Path, tmp_path: Path, case: str,
                                         figures: Callable[[str], None]) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(template / "repo", repo, symlinks=True)
    bait = make_bait(tmp_path)
    link = FILES[case](repo)
    _plant(repo, tmp_path / "aside", link, _bait_file_for(bait, link))
    outcomes = _run_all(_commands(repo, tmp_path), link, bait)
    figures(_summary(outcomes))
    # Refused, not taken for stale and deleted, nor replaced.
    assert any(rc == 2 for rc in outcomes.values()), outcomes
    assert os.path.islink(link)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("case", "command"), [
    ("holds-host", "prune"),
    ("snapshots-host", "prune"),
    ("tmp", "gc"),
    ("garbage", "gc"),
    ("locks", "gc"),
])
def test_prune_and_gc_alone_delete_nothing_through_a_link(
        template: Path, tmp_path: Path, case: str, command: str) -> None:
    """The two commands that delete, each run first on the planted link:
    prune would remove snapshots and the holds of those it prunes; gc
    unused packs, garbage lists, stale locks and old temporary files."""
    repo = tmp_path / "repo"
    shutil.copytree(template / "repo", repo, symlinks=True)
    if command == "gc":
        histfs("prune", "--repo", str(repo), "--keep-last", "1", check=0)
    bait = make_bait(tmp_path)
    link = DIRECTORIES[case](repo)
    _plant(repo, tmp_path / "aside", link, bait / "tree" if command == "prune" else bait)
    args = ("--keep-last", "1") if command == "prune" else ("--grace", "0", "--wait", "0")
    outcomes = _run_all([(command, "--repo", str(repo), *args)], link, bait)
    assert outcomes == {command: 2}


@pytest.mark.timeout(240)
def test_a_linked_key_is_never_followed(encrypted_template: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(encrypted_template / "repo", repo, symlinks=True)
    bait = make_bait(tmp_path)
    link = repo / "key"
    _plant(repo, tmp_path / "aside", link, bait / "key")
    env = {"HISTFS_PASSPHRASE": PASS, "HISTFS_NEW_PASSPHRASE": "another one entirely"}
    commands = [*_commands(repo, tmp_path), ("key", "change-passphrase", "--repo", str(repo)),
                ("key", "export", "--repo", str(repo), str(tmp_path / "exported"))]
    outcomes = _run_all(commands, link, bait, env)
    assert set(outcomes.values()) == {2}, outcomes


@pytest.mark.timeout(240)
def test_gc_deletes_only_temporary_names_in_tmp(template: Path, tmp_path: Path) -> None:
    """gc deletes old files in tmp/ of the form it writes, and nothing else
    there; a directory or a link with such a name is an error naming it."""
    repo = tmp_path / "repo"
    shutil.copytree(template / "repo", repo, symlinks=True)
    bait = make_bait(tmp_path)
    tmp = repo / "tmp"
    (tmp / "notes.txt").write_bytes(b"not ours")
    (tmp / ".0123456789abcdef0123456789.tmp").write_bytes(b"name too long")
    (tmp / "a-dir").mkdir()
    for path in tmp.iterdir():
        os.utime(path, (OLD, OLD))
    before = {p.name for p in tmp.iterdir()}
    proc = histfs("gc", "--repo", str(repo), "--grace", "0", "--json", check=0)
    assert json.loads(proc.stdout)["tmp_deleted"] == 1
    assert {p.name for p in tmp.iterdir()} == before - {".fedcba9876543210fedcba98.tmp"}

    for planted in ("directory", "link"):
        odd = tmp / ".aaaaaaaaaaaaaaaaaaaaaaaa.tmp"
        if planted == "directory":
            odd.mkdir()
        else:
            odd.symlink_to(bait / ".0123456789abcdef01234567.tmp")
        os.utime(odd, (OLD, OLD), follow_symlinks=False)
        outcomes = _run_all([("gc", "--repo", str(repo), "--grace", "0")], odd, bait)
        assert outcomes == {"gc": 2}
        assert os.path.lexists(odd)
        if planted == "directory":
            odd.rmdir()


@pytest.mark.timeout(120)
def test_the_repository_itself_may_be_a_link(template: Path, tmp_path: Path) -> None:
    """/backup -> /srv/backup is the administrator's choice: it works."""
    real = tmp_path / "srv" / "repo"
    real.parent.mkdir()
    shutil.copytree(template / "repo", real, symlinks=True)
    repo = tmp_path / "backup"
    repo.symlink_to(real)
    for args in _commands(repo, tmp_path):
        proc = histfs(*args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    assert not (real / "tmp" / ".fedcba9876543210fedcba98.tmp").exists()


@pytest.mark.timeout(120)
def test_backup_refuses_a_linked_directory_of_a_new_host(tmp_path: Path) -> None:
    """A link planted where a new host's snapshot directory would be
    created: the backup refuses it instead of publishing through it."""
    repo = tmp_path / "repo"
    histfs("init", "--encryption", "none", str(repo), check=0)
    bait = make_bait(tmp_path)
    link = repo / "snapshots" / "mx2"
    link.symlink_to(bait)
    src = tmp_path / "src"
    _mail(src, "x", 2)
    _run_all([("backup", "--repo", str(repo), "--host", "mx2", f"mail={src}")], link, bait)
    assert histfs("snapshots", "--repo", str(repo), "--host", "mx2").returncode == 2
