"""Damage a disk could do, seen from every command.

Each case damages a real repository of two snapshots the way a bad disk, a
full disk or a careless administrator would: a flipped byte in a pack, a
truncated pack, a deleted pack, a truncated or garbage snapshot index, a
garbage config. Then:

- `check` finds it, names the snapshots and paths that lose data (and no
  others), and exits 1 (2 when the repository cannot be opened at all);
- the mount serves every intact file, and EIO for the damaged ones;
- `restore` restores what is intact and names what it could not;
- no command ever ends with a traceback.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from index.format.pack import pack_relpath
from index.format.snapshot_format import snapshot_relpath
from tests.conftest import Mount, histfs
from tests.test_check_history import (
    HOST,
    backup,
    chunk_location,
    flip_payload_byte,
    write,
)

A = os.urandom(60_000)
K = b"kept " * 100
B = os.urandom(50_000)


def _no_traceback(*outputs: str) -> None:
    for out in outputs:
        assert "Traceback" not in out, out


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Damaged:
    """A repository with snapshots `first` (a.bin, keep/k.txt) and `second`
    (also b.bin, in its own pack), then damaged."""

    def __init__(self, root: Path, tmp_path: Path) -> None:
        self.root = root
        histfs("init", "--encryption", "none", str(root), check=0)
        src = tmp_path / "src"
        write(src / "a.bin", A)
        write(src / "keep" / "k.txt", K)
        self.first = backup(root, src)
        write(src / "b.bin", B)
        self.second = backup(root, src)
        self.a_pack = root / pack_relpath(chunk_location(root, self.first, "d/a.bin").pack_id)
        self.b_pack = root / pack_relpath(chunk_location(root, self.second, "d/b.bin").pack_id)
        assert self.a_pack != self.b_pack

    def index(self, name: str) -> Path:
        return self.root / snapshot_relpath(HOST, name)


def _rewrite(path: Path, change: Callable[[bytes], bytes]) -> None:
    os.chmod(path, 0o644)
    path.write_bytes(change(path.read_bytes()))


def _flip(r: Damaged) -> None:
    flip_payload_byte(r.root, chunk_location(r.root, r.first, "d/a.bin"))


def _truncate_pack(r: Damaged) -> None:
    _rewrite(r.a_pack, lambda b: b[: len(b) // 2])


def _delete_pack(r: Damaged) -> None:
    r.a_pack.unlink()


def _truncate_index(r: Damaged) -> None:
    _rewrite(r.index(r.first), lambda b: b[: len(b) // 3])


def _garbage_index(r: Damaged) -> None:
    _rewrite(r.index(r.first), lambda b: os.urandom(len(b)))


# damage, check's extra option, {snapshot: damaged paths} (None: the whole
# snapshot is unreadable).
LOSES_A = ["d/a.bin"]
LOSES_PACK = ["d/a.bin", "d/keep/k.txt"]
CASES = {
    "flipped-byte": (_flip, ("--read-data",), {"first": LOSES_A, "second": LOSES_A}),
    "truncated-pack": (_truncate_pack, (), {"first": LOSES_PACK, "second": LOSES_PACK}),
    "deleted-pack": (_delete_pack, (), {"first": LOSES_PACK, "second": LOSES_PACK}),
    "truncated-index": (_truncate_index, (), {"first": None}),
    "garbage-index": (_garbage_index, (), {"first": None}),
}
CONTENT = {"d/a.bin": A, "d/keep/k.txt": K, "d/b.bin": B}


@pytest.mark.timeout(180)
@pytest.mark.parametrize("case", sorted(CASES))
def test_damage_is_found_localized_and_contained(case: str, tmp_path: Path,
                                                 mount_repo: Callable[..., Mount],
                                                 figures) -> None:
    damage, options, expected = CASES[case]
    r = Damaged(tmp_path / "repo", tmp_path)
    damage(r)
    names = {"first": r.first, "second": r.second}
    files = {"first": ["d/a.bin", "d/keep/k.txt"], "second": list(CONTENT)}

    # check: exit 1, the right snapshots and paths.
    proc = histfs("check", "--repo", str(r.root), "--json", *options)
    _no_traceback(proc.stderr)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    report = json.loads(proc.stdout)
    assert report["sound"] is False
    damaged = {k: sorted(v) for k, v in report["damaged"].items()}
    for which, paths in expected.items():
        label = f"{HOST}/{names[which]}"
        if paths is None:
            assert any(label in p for p in report["problems"]), report
        else:
            assert damaged.get(label) == sorted(paths), report
    for which in set(names) - set(expected):
        label = f"{HOST}/{names[which]}"
        assert label not in damaged and not any(label in p for p in report["problems"])

    # The mount: intact files read exactly, damaged ones fail with EIO.
    m = mount_repo(r.root)
    eio = 0
    for which, name in names.items():
        lost = expected.get(which, [])
        for rel in files[which]:
            path = m.path / HOST / name / rel
            if lost is None or rel in lost:
                with pytest.raises(OSError) as exc:
                    path.read_bytes()
                assert exc.value.errno == errno.EIO, exc.value
                eio += 1
            else:
                assert path.read_bytes() == CONTENT[rel], (which, rel)
    m.stop()
    assert "Traceback" not in m.log.read_text()

    # restore: what is intact comes back, the rest is named.
    for which, name in names.items():
        target = tmp_path / f"restore-{which}"
        proc = histfs("restore", "--repo", str(r.root), "--host", HOST, name,
                      "--target", str(target))
        _no_traceback(proc.stderr)
        lost = expected.get(which, [])
        if lost is None:
            assert proc.returncode == 2, proc.stderr
            err = [line for line in proc.stderr.splitlines() if "error" in line]
            assert len(err) == 1 and err[0].startswith("histfs: error: "), proc.stderr
            assert name in err[0], err
            continue
        # Files that could not be restored are errors: exit 2, one line each.
        assert proc.returncode == (2 if lost else 0), (proc.returncode, proc.stderr)
        for rel in files[which]:
            if rel in lost:
                assert rel.split("/")[-1] in proc.stderr, (rel, proc.stderr)
                assert not (target / rel).exists()
            else:
                assert (target / rel).read_bytes() == CONTENT[rel]
    figures(f"{case}: check names it, {eio} damaged file reads gave EIO in the "
            "mount, restore restored the rest")


@pytest.mark.timeout(120)
def test_garbage_config_is_one_clear_error_everywhere(tmp_path: Path) -> None:
    r = Damaged(tmp_path / "repo", tmp_path)
    _rewrite(r.root / "config", lambda b: os.urandom(200))
    repo = str(r.root)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for args in (("check", "--repo", repo), ("snapshots", "--repo", repo),
                 ("backup", "--repo", repo, "--host", HOST, f"d={tmp_path / 'src'}"),
                 ("restore", "--repo", repo, "--host", HOST, "last", "--target",
                  str(tmp_path / "t")),
                 ("mount", "--foreground", "--repo", repo, str(mnt)),
                 ("prune", "--repo", repo, "--keep-last", "1"),
                 ("gc", "--repo", repo)):
        proc = histfs(*args, timeout=60)
        assert proc.returncode == 2, (args, proc.returncode, proc.stderr)
        err = proc.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("histfs: error: "), (args, proc.stderr)
        assert "config" in err[0], (args, err)
    assert not os.path.ismount(mnt)
    assert not (tmp_path / "t").exists()
