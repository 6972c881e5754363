"""`histfs check`, `histfs versions` and `histfs diff` against real repositories.

Every test backs up real directories with `python -m histfs backup`, then
damages the repository the way a disk would (one byte flipped inside a
chunk's payload, a pack file deleted) or changes the source tree, and runs
the commands in a subprocess like a user. No mocks: pack offsets come from
the snapshot index (`SnapshotReader.location`), and the results are compared
with what the repository really holds.

- `check` on a healthy repository: exit 0, "repository is sound", counts that
  match the repository, `--read-data` reading every pack;
- a flipped payload byte: the structure check still passes, `--read-data`
  exits 1 and names exactly the snapshots and paths that use the chunk (a
  deduplicated copy and a hard link included, untouched files not);
- a deleted pack: the structure check alone exits 1 and names the snapshots
  and paths that lose data;
- `--read-data-subset K/N`: the N runs together read every pack exactly once;
  bad values are one `histfs: error:` line and exit 2;
- a deleted local cache: `check` rebuilds it, and the next backup of touched
  but unchanged files stores nothing;
- `versions` and `diff` over a three-snapshot history with renames, edits,
  deletions, chmod, new and removed directories and a retargeted symlink.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from index.format.blob import BLOB_HEADER
from index.format.pack import pack_relpath
from index.format.types import ChunkLocation, PackId
from index.model.chunk_index import ChunkIndex
from index.model.repository import Repository
from index.store.packs import list_packs
from tests.conftest import backup_json, histfs

HOST = "mx1"


# -- helpers ------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    """Create `path` (and its parents) holding `data`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def backup(repo_path: Path, src: Path) -> str:
    """Back `src` up as part "d" of HOST; the new snapshot's name."""
    summary = backup_json(repo_path, f"d={src}", host=HOST)
    name = summary["snapshot"]
    assert isinstance(name, str)
    return name


def check_json(repo_path: Path, *options: str, status: int) -> dict[str, object]:
    """`histfs check --json` with the expected exit status; its decoded report."""
    proc = histfs("check", "--repo", str(repo_path), "--json", *options, check=status)
    report: dict[str, object] = json.loads(proc.stdout)
    assert report["sound"] is (status == 0), report
    return report


def packs_of(repo_path: Path) -> set[PackId]:
    """The packs a repository holds, listed afresh."""
    repo = Repository.open(repo_path)
    try:
        return set(list_packs(repo.storage))
    finally:
        repo.close()


def chunk_location(repo_path: Path, snapshot: str, path: str) -> ChunkLocation:
    """Where the one chunk of small regular file `path` of a snapshot is stored."""
    repo = Repository.open(repo_path)
    try:
        with repo.open_snapshot(repo.select(HOST, snapshot)) as snap:
            extents = snap.extents(snap.resolve(path))
            assert len(extents) == 1 and extents[0].chunk_id is not None, extents
            return snap.location(extents[0].chunk_id)
    finally:
        repo.close()


def chunk_references(repo_path: Path) -> int:
    """Chunk references summed over every snapshot (what `check` counts)."""
    repo = Repository.open(repo_path)
    try:
        total = 0
        for ref in repo.snapshots():
            with repo.open_snapshot(ref) as snap:
                total += sum(1 for _ in snap.chunk_ids())
        return total
    finally:
        repo.close()


def flip_payload_byte(repo_path: Path, loc: ChunkLocation) -> Path:
    """Invert one byte in the middle of a blob's payload (after its 44-byte
    header) in place, as a bad disk would; the pack's path."""
    pack = repo_path / pack_relpath(loc.pack_id)
    payload = loc.stored_size - BLOB_HEADER.size
    assert payload > 0
    pos = loc.offset + BLOB_HEADER.size + payload // 2
    os.chmod(pack, 0o644)
    with open(pack, "r+b") as f:
        f.seek(pos)
        old = f.read(1)
        f.seek(pos)
        f.write(bytes([old[0] ^ 0xFF]))
    with open(pack, "rb") as f:
        f.seek(pos)
        assert f.read(1) != old
    return pack


def lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """stdout split into lines."""
    return proc.stdout.splitlines()


def assert_one_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit status 2, one `histfs: error:` line holding `words`, no stdout."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.splitlines()
    assert len(err) == 1, proc.stderr
    assert err[0].startswith("histfs: error: "), err
    for word in words:
        assert word in err[0], (word, err[0])
    assert proc.stdout == ""


# -- check on a healthy repository ------------------------------------------------


@pytest.fixture
def two_snapshots(repo: Repository, tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """A repository with two snapshots of part "d" (the second adds a file, so
    two packs); the repository path, the source and the snapshot names."""
    src = tmp_path / "src"
    write(src / "a.bin", os.urandom(60_000))
    write(src / "sub" / "b.txt", b"bravo " * 5000)
    first = backup(repo.root, src)
    write(src / "c.bin", os.urandom(40_000))
    second = backup(repo.root, src)
    assert first != second
    return repo.root, src, [first, second]


def test_check_of_a_healthy_repository(two_snapshots: tuple[Path, Path, list[str]]) -> None:
    repo_path, _, _ = two_snapshots
    packs = packs_of(repo_path)
    assert len(packs) == 2
    refs = chunk_references(repo_path)
    assert refs == 2 + 3  # a.bin and b.txt, then a.bin, b.txt and c.bin

    proc = histfs("check", "--repo", str(repo_path), check=0)
    out = lines(proc)
    assert out[0] == f"checked    2 snapshots, 2 packs, {refs} chunk references"
    assert out[1] == "cache      deduplication cache up to date"
    assert out[-1] == "repository is sound"
    assert not any(line.startswith(("problem", "damaged")) for line in out), out
    assert proc.stderr == ""  # nothing to say when no data is read

    report = check_json(repo_path, status=0)
    assert report == {"sound": True, "packs": 2, "packs_read": 0, "snapshots": 2,
                      "chunks": refs, "bytes_read": 0, "problems": [], "damaged": {},
                      "damaged_paths": {},
                      "cache": "deduplication cache up to date"}

    sizes = sum((repo_path / pack_relpath(p)).stat().st_size for p in packs)
    report = check_json(repo_path, "--read-data", status=0)
    assert (report["packs"], report["packs_read"], report["bytes_read"]) == (2, 2, sizes)
    assert (report["snapshots"], report["chunks"]) == (2, refs)
    assert report["problems"] == [] and report["damaged"] == {}

    proc = histfs("check", "--repo", str(repo_path), "--read-data", check=0)
    assert lines(proc)[0].startswith(f"checked    2 snapshots, 2 packs, {refs} chunk "
                                     "references; read 2 packs (")
    assert lines(proc)[-1] == "repository is sound"
    assert "reading 2 of 2 packs" in proc.stderr


# -- a damaged chunk -----------------------------------------------------------------


def test_flipped_byte_is_found_only_by_reading_data(repo: Repository, tmp_path: Path) -> None:
    """One chunk used by two files and a hard link, in two snapshots."""
    src = tmp_path / "src"
    victim_data = os.urandom(70_000)
    write(src / "victim.bin", victim_data)
    write(src / "copy.bin", victim_data)  # same bytes, other inode: the same chunk
    os.link(src / "victim.bin", src / "hardlink.bin")
    write(src / "other.bin", os.urandom(50_000))
    write(src / "sub" / "note.txt", b"unrelated " * 300)
    first = backup(repo.root, src)
    write(src / "later.bin", os.urandom(30_000))  # the second snapshot's own pack
    second = backup(repo.root, src)

    loc = chunk_location(repo.root, first, "d/victim.bin")
    assert chunk_location(repo.root, second, "d/victim.bin") == loc
    assert chunk_location(repo.root, second, "d/copy.bin") == loc
    assert chunk_location(repo.root, first, "d/other.bin").pack_id == loc.pack_id
    assert chunk_location(repo.root, second, "d/later.bin").pack_id != loc.pack_id
    flip_payload_byte(repo.root, loc)

    # The pack's table is intact: the structure check has nothing to say.
    proc = histfs("check", "--repo", str(repo.root), check=0)
    assert lines(proc)[-1] == "repository is sound"

    affected = ["d/copy.bin", "d/hardlink.bin", "d/victim.bin"]
    proc = histfs("check", "--repo", str(repo.root), "--read-data", check=1)
    out = proc.stdout
    assert lines(proc)[-1] == "repository is DAMAGED"
    assert f"problem    pack {loc.pack_id.hex()}: 1 damaged chunk(s)" in lines(proc)
    for name in (first, second):
        assert f"problem    snapshot {HOST}/{name}: 1 chunk(s) missing or damaged" in out
        assert f"damaged    {HOST}/{name}: 3 path(s)" in out
    for path in affected:
        assert sum(line.strip() == path for line in lines(proc)) == 2, out
    for path in ("d/other.bin", "d/later.bin", "d/sub/note.txt"):
        assert path not in out

    report = check_json(repo.root, "--read-data", status=1)
    damaged = report["damaged"]
    assert isinstance(damaged, dict)
    assert {k: sorted(v) for k, v in damaged.items()} == {
        f"{HOST}/{first}": affected, f"{HOST}/{second}": affected}
    assert report["problems"] == [
        f"pack {loc.pack_id.hex()}: 1 damaged chunk(s)",
        f"snapshot {HOST}/{first}: 1 chunk(s) missing or damaged",
        f"snapshot {HOST}/{second}: 1 chunk(s) missing or damaged",
    ]
    assert report["packs_read"] == report["packs"] == 2


# -- a deleted pack --------------------------------------------------------------------


@pytest.mark.parametrize("which", ["first", "second"])
def test_deleted_pack_is_found_by_the_structure_check(which: str, repo: Repository,
                                                      tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", os.urandom(50_000))
    write(src / "keep" / "k.txt", b"kept " * 100)
    first = backup(repo.root, src)
    write(src / "b.bin", os.urandom(50_000))
    second = backup(repo.root, src)
    a_pack = chunk_location(repo.root, first, "d/a.bin").pack_id
    b_pack = chunk_location(repo.root, second, "d/b.bin").pack_id
    assert a_pack != b_pack and packs_of(repo.root) == {a_pack, b_pack}
    assert chunk_location(repo.root, first, "d/keep/k.txt").pack_id == a_pack

    if which == "first":
        (repo.root / pack_relpath(a_pack)).unlink()
        # a.bin and keep/k.txt are in both snapshots; b.bin is intact.
        expected = {f"{HOST}/{first}": ["d/a.bin", "d/keep/k.txt"],
                    f"{HOST}/{second}": ["d/a.bin", "d/keep/k.txt"]}
        intact = ["d/b.bin"]
    else:
        (repo.root / pack_relpath(b_pack)).unlink()
        expected = {f"{HOST}/{second}": ["d/b.bin"]}
        intact = ["d/a.bin", "d/keep/k.txt"]

    proc = histfs("check", "--repo", str(repo.root), check=1)
    out = proc.stdout
    assert lines(proc)[0].startswith("checked    2 snapshots, 1 packs, ")
    assert lines(proc)[-1] == "repository is DAMAGED"
    for label, paths in expected.items():
        assert f"damaged    {label}: {len(paths)} path(s)" in out
        for path in paths:
            assert f"           {path}" in lines(proc)
    for path in intact:
        assert path not in out
    if which == "second":
        assert f"{HOST}/{first}:" not in out  # the first snapshot is whole

    # A second run: the cache forgot the pack the first run found gone.
    report = check_json(repo.root, status=1)
    assert report["damaged"] == expected
    assert report["cache"] == "deduplication cache up to date"
    assert report["packs"] == 1


def test_deleted_pack_is_forgotten_by_the_cache(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.bin", os.urandom(20_000))
    name = backup(repo.root, src)
    (repo.root / pack_relpath(chunk_location(repo.root, name, "d/a.bin").pack_id)).unlink()
    report = check_json(repo.root, status=1)
    assert report["cache"] == "deduplication cache updated: 0 packs added, 1 forgotten"
    assert report["damaged"] == {f"{HOST}/{name}": ["d/a.bin"]}


# -- --read-data-subset ------------------------------------------------------------------


def test_read_data_subsets_read_every_pack_once(repo: Repository, tmp_path: Path) -> None:
    """Five backups of new data: five packs; the three subsets of 3 together
    read each of them exactly once, shown by damaging a chunk in every pack."""
    src = tmp_path / "src"
    names: list[str] = []
    for i in range(5):
        write(src / f"f{i}.bin", os.urandom(20_000 + i))
        names.append(backup(repo.root, src))
    locs = [chunk_location(repo.root, names[i], f"d/f{i}.bin") for i in range(5)]
    all_packs = packs_of(repo.root)
    assert len(all_packs) == 5 and {loc.pack_id for loc in locs} == all_packs

    read = [check_json(repo.root, "--read-data-subset", f"{k}/3", status=0)["packs_read"]
            for k in (1, 2, 3)]
    assert sum(read) == 5, read  # type: ignore[arg-type]

    for loc in locs:
        flip_payload_byte(repo.root, loc)
    seen: list[str] = []
    for k in (1, 2, 3):
        proc = histfs("check", "--repo", str(repo.root), "--json",
                      "--read-data-subset", f"{k}/3")
        report = json.loads(proc.stdout)
        named = [p.split()[1].rstrip(":") for p in report["problems"]
                 if p.startswith("pack ")]
        assert report["packs_read"] == len(named) == read[k - 1]
        assert proc.returncode == (1 if named else 0), (k, proc.stdout, proc.stderr)
        assert report["packs"] == 5
        # Exactly the files whose chunk is in a pack of this subset, in every
        # snapshot from the one that added them on.
        expected: dict[str, list[str]] = {}
        for j, name in enumerate(names):
            paths = [f"d/f{i}.bin" for i in range(j + 1) if locs[i].pack_id.hex() in named]
            if paths:
                expected[f"{HOST}/{name}"] = paths
        assert report["damaged"] == expected
        seen += named
    assert sorted(seen) == sorted(p.hex() for p in all_packs)  # each exactly once


@pytest.mark.parametrize("value", ["0/3", "4/3", "x", "1/0", "3", "1/x", "-1/3"])
def test_bad_read_data_subset(value: str, repo: Repository) -> None:
    proc = histfs("check", "--repo", str(repo.root), f"--read-data-subset={value}")
    assert_one_error(proc, "--read-data-subset", value)


# -- the local cache ---------------------------------------------------------------------


def test_check_rebuilds_a_deleted_cache(repo: Repository, tmp_path: Path,
                                        cache_dir: Path) -> None:
    src = tmp_path / "src"
    files = {f"m{i}.eml": os.urandom(30_000) for i in range(4)}
    files["big.bin"] = os.urandom(700_000)  # several chunks
    for rel, data in files.items():
        write(src / rel, data)
    backup(repo.root, src)
    cache = repo.chunk_cache_path()
    assert cache.exists()
    packs = packs_of(repo.root)

    for child in cache_dir.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    assert not cache.exists()

    report = check_json(repo.root, status=0)
    assert report["cache"] == f"deduplication cache rebuilt from {len(packs)} packs"
    assert cache.exists()
    index = ChunkIndex(cache)
    try:
        assert index.known_packs() == packs
    finally:
        index.close()
    assert check_json(repo.root, status=0)["cache"] == "deduplication cache up to date"

    # Touched, not changed: every file is read again and nothing is stored.
    later = time.time_ns() + 5_000_000_000
    for rel in files:
        os.utime(src / rel, ns=(later, later))
    summary = backup_json(repo.root, f"d={src}", host=HOST)
    assert summary["files_changed"] == len(files)
    assert summary["files_unchanged"] == 0
    assert summary["bytes_read"] == sum(len(d) for d in files.values())
    assert (summary["bytes_added"], summary["chunks_added"]) == (0, 0)
    assert packs_of(repo.root) == packs


# -- versions and diff -----------------------------------------------------------------


EDITED_V1 = b"first version\n" * 100
EDITED_V2 = b"second, longer version\n" * 150


@pytest.fixture
def history(repo: Repository, tmp_path: Path) -> tuple[Path, list[str], list[int]]:
    """Three snapshots of part "d"; the repository, the snapshot names and
    d/edited.txt's mtime in each."""
    src = tmp_path / "src"
    write(src / "keep.txt", b"never changes\n")
    write(src / "old_name.txt", b"to be renamed\n" * 10)
    write(src / "edited.txt", EDITED_V1)
    write(src / "doomed.txt", b"to be deleted\n")
    write(src / "perm.txt", b"to be chmod-ed\n")
    os.chmod(src / "perm.txt", 0o644)
    write(src / "gone_dir" / "inner.txt", b"in a directory to be removed\n")
    write(src / "sub" / "deep.txt", b"deep v1\n")
    os.symlink("keep.txt", src / "link")
    mtimes = [(src / "edited.txt").stat().st_mtime_ns]
    names = [backup(repo.root, src)]

    time.sleep(1.1)
    os.rename(src / "old_name.txt", src / "new_name.txt")
    write(src / "edited.txt", EDITED_V2)
    (src / "doomed.txt").unlink()
    os.chmod(src / "perm.txt", 0o600)
    write(src / "new_file.txt", b"brand new\n")
    write(src / "newdir" / "a.txt", b"in a new directory\n")
    shutil.rmtree(src / "gone_dir")
    mtimes.append((src / "edited.txt").stat().st_mtime_ns)
    names.append(backup(repo.root, src))

    time.sleep(1.1)
    os.unlink(src / "link")
    os.symlink("perm.txt", src / "link")
    touched = mtimes[-1] + 3_000_000_000
    os.utime(src / "edited.txt", ns=(touched, touched))  # same bytes, new mtime
    write(src / "newdir" / "b.txt", b"another\n")
    write(src / "sub" / "deep.txt", b"deep v2\n")
    mtimes.append(touched)
    names.append(backup(repo.root, src))
    assert len(set(names)) == 3
    return repo.root, names, mtimes


S1_TO_S2 = [
    ("removed", "d/doomed.txt"),
    ("changed", "d/edited.txt"),
    ("removed", "d/gone_dir"),
    ("removed", "d/gone_dir/inner.txt"),
    ("added", "d/new_file.txt"),
    ("added", "d/new_name.txt"),
    ("added", "d/newdir"),
    ("added", "d/newdir/a.txt"),
    ("removed", "d/old_name.txt"),
    ("meta", "d/perm.txt"),
]
S2_TO_S3 = [
    ("meta", "d/edited.txt"),
    ("changed", "d/link"),
    ("added", "d/newdir/b.txt"),
    ("changed", "d/sub/deep.txt"),
]
S1_TO_S3 = [
    ("removed", "d/doomed.txt"),
    ("changed", "d/edited.txt"),
    ("removed", "d/gone_dir"),
    ("removed", "d/gone_dir/inner.txt"),
    ("changed", "d/link"),
    ("added", "d/new_file.txt"),
    ("added", "d/new_name.txt"),
    ("added", "d/newdir"),
    ("added", "d/newdir/a.txt"),
    ("added", "d/newdir/b.txt"),
    ("removed", "d/old_name.txt"),
    ("meta", "d/perm.txt"),
    ("changed", "d/sub/deep.txt"),
]


def diff_json(repo_path: Path, first: str, second: str) -> list[tuple[str, str]]:
    proc = histfs("diff", "--repo", str(repo_path), "--json", first, second, check=0)
    return [(row["status"], row["path"]) for row in json.loads(proc.stdout)]


def diff_text(repo_path: Path, first: str, second: str) -> list[tuple[str, str]]:
    proc = histfs("diff", "--repo", str(repo_path), "--host", HOST, first, second, check=0)
    assert proc.stderr == ""
    return [(line.split(maxsplit=1)[0], line.split(maxsplit=1)[1]) for line in lines(proc)]


def test_diff_of_a_history(history: tuple[Path, list[str], list[int]]) -> None:
    repo_path, (s1, s2, s3), _ = history
    assert diff_json(repo_path, s1, s2) == S1_TO_S2
    assert diff_text(repo_path, s2, s3) == S2_TO_S3
    assert diff_json(repo_path, s2, s3) == S2_TO_S3
    assert diff_json(repo_path, s1, "last") == S1_TO_S3
    assert diff_text(repo_path, s1, s3) == S1_TO_S3
    # Backwards, every addition is a removal and the other way round.
    swap = {"added": "removed", "removed": "added", "changed": "changed", "meta": "meta"}
    assert diff_json(repo_path, s2, s1) == [(swap[s], p) for s, p in S1_TO_S2]
    assert_one_error(histfs("diff", "--repo", str(repo_path), s1, "2001-01-01T000000Z"),
                     "2001-01-01T000000Z")


def versions_json(repo_path: Path, path: str) -> list[dict[str, object]]:
    proc = histfs("versions", "--repo", str(repo_path), "--json", path, check=0)
    rows: list[dict[str, object]] = json.loads(proc.stdout)
    return rows


def test_versions_of_a_history(history: tuple[Path, list[str], list[int]]) -> None:
    repo_path, (s1, s2, s3), mtimes = history
    assert versions_json(repo_path, "d/edited.txt") == [
        {"snapshot": s1, "type": "regular", "size": len(EDITED_V1), "mtime_ns": mtimes[0],
         "changed": True},
        {"snapshot": s2, "type": "regular", "size": len(EDITED_V2), "mtime_ns": mtimes[1],
         "changed": True},
        # Touched only: a new mtime, the same content.
        {"snapshot": s3, "type": "regular", "size": len(EDITED_V2), "mtime_ns": mtimes[2],
         "changed": False},
    ]
    keep = versions_json(repo_path, "/d/keep.txt")
    assert [(v["snapshot"], v["changed"], v["size"]) for v in keep] == [
        (s1, True, 14), (s2, False, 14), (s3, False, 14)]
    assert [(v["snapshot"], v["changed"]) for v in versions_json(repo_path, "d/link")] == [
        (s1, True), (s2, False), (s3, True)]
    assert {v["type"] for v in versions_json(repo_path, "d/link")} == {"symlink"}
    assert [(v["snapshot"], v["changed"]) for v in versions_json(
        repo_path, "d/new_name.txt")] == [(s2, True), (s3, False)]
    assert [v["snapshot"] for v in versions_json(repo_path, "d/old_name.txt")] == [s1]
    assert [v["snapshot"] for v in versions_json(repo_path, "d/gone_dir/inner.txt")] == [s1]
    assert [(v["snapshot"], v["type"]) for v in versions_json(repo_path, "d/newdir")] == [
        (s2, "directory"), (s3, "directory")]

    proc = histfs("versions", "--repo", str(repo_path), "d/edited.txt", check=0)
    rows = [line.split() for line in lines(proc)]
    assert [row[0] for row in rows] == [s1, s2, s3]
    assert [row[-1] == "changed" for row in rows] == [True, True, False]

    proc = histfs("versions", "--repo", str(repo_path), "d/never-there.txt", check=1)
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"d/never-there.txt: in no snapshot of {HOST}"


@pytest.mark.parametrize("same", ["name", "last"])
def test_diff_of_a_snapshot_with_itself_is_empty(same: str, repo: Repository,
                                                 tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "a.txt", b"alpha\n")
    name = backup(repo.root, src)
    # `diff NEWEST last` is what a script comparing with today's snapshot runs.
    assert diff_json(repo.root, name, name if same == "name" else "last") == []


def test_diff_lists_the_contents_of_a_path_that_changed_type(repo: Repository,
                                                             tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src / "x", b"a file that becomes a directory\n")
    write(src / "y" / "z.txt", b"in a directory that becomes a file\n")
    s1 = backup(repo.root, src)
    (src / "x").unlink()
    write(src / "x" / "w.txt", b"inside the new directory\n")
    shutil.rmtree(src / "y")
    write(src / "y", b"now a file\n")
    s2 = backup(repo.root, src)
    assert sorted(diff_json(repo.root, s1, s2)) == sorted([
        ("removed", "d/x"), ("added", "d/x"), ("added", "d/x/w.txt"),
        ("removed", "d/y"), ("removed", "d/y/z.txt"), ("added", "d/y"),
    ])
