"""`histfs restore`: snapshots and chosen paths come back as they were, and
nothing in a repository, however damaged or hostile, makes it write outside
the target.

Every test runs the real command (`python -m histfs`) against real trees,
real repositories and real snapshot indexes; damaged and hostile repositories
are made by editing real pack files and LMDB indexes, never by mocking.

- a full restore of the awkward tree (every file type, odd names, modes,
  owners, times, hard links, xattrs, ACLs, a 5 GiB sparse file) equals the
  source, and the `--json` summary counts what was restored;
- `--at DATE` picks the newest snapshot at or before DATE and a path argument
  restores only that path, at its place part/dir/... below the target;
- existing files are never replaced without `--overwrite`, and are with it;
  a path that is not in the snapshot is one error line;
- a damaged chunk fails only the files that use it: they are absent from the
  target (not half-written) and named, everything else is restored intact;
- hostile index entries (unsafe names, a directory turned into a symlink with
  children, a directory that contains itself) and symlinks already in the
  target never make a restore write outside the target.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import secrets
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import lmdb
import pytest

from index.format.blob import BLOB_HEADER
from index.format.names import snapshot_time
from index.format.pack import pack_relpath
from index.format.snapshot_format import (
    DB_DIRENTS,
    DB_ENTRIES,
    ID_KEY,
    decode_entry,
    dirent_key,
    encode_entry,
    id_key,
)
from index.format.types import ROOT_ID, Kind
from index.model.repository import Repository, SnapshotRef
from tests.conftest import backup_json, histfs, plain_index, set_snapshot_place
from tests.trees import GIB, make_awkward_tree, source_state, without_ctime

HOSTILE_NAME = "2030-01-01T000000Z"

State = dict[bytes, tuple[object, ...]]


# -- helpers ---------------------------------------------------------------


def restore(repo: Path, *args: str, check: int | None = None) -> subprocess.CompletedProcess[str]:
    """`histfs restore --repo REPO ARGS...`; never a traceback."""
    proc = histfs("restore", "--repo", str(repo), *args, check=check)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    """The `histfs: error:` lines of a run."""
    return [line for line in proc.stderr.splitlines() if line.startswith("histfs: error: ")]


def tree_listing(root: Path, *skip: Path) -> dict[str, tuple[int, int, int]]:
    """Every path below `root` (not below any of `skip`) with type, size and
    mtime. (Tests skip the local cache: histfs keeps copies of the indexes
    it reads there.)"""
    found: dict[str, tuple[int, int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if Path(dirpath, d) not in skip]
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = os.lstat(p)
            found[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), st.st_size,
                                               st.st_mtime_ns)
    return found


def getfacl(root: Path, paths: list[bytes]) -> bytes:
    """`getfacl` of `paths` (relative to `root`), numeric, as bytes."""
    proc = subprocess.run(["getfacl", "-n", "-p", "--", *paths], cwd=root,
                          capture_output=True, check=True)
    return proc.stdout


def snapshot_names(repo: Path) -> list[str]:
    """Snapshot names from `histfs snapshots --json`, oldest first."""
    proc = histfs("snapshots", "--repo", str(repo), "--json", check=0)
    return [row["name"] for row in json.loads(proc.stdout)]


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Create `root` holding `files` (relative path -> content)."""
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def damage_chunk(repo: Repository, ref: SnapshotRef, path: str, which: int = 0) -> int:
    """Flip one byte in the middle of the payload of `path`'s chunk number
    `which` (negative: from the end); returns how many chunks `path` has."""
    with repo.open_snapshot(ref) as snap:
        entry = snap.resolve(path)
        chunks = [x.chunk_id for x in snap.extents(entry) if x.chunk_id is not None]
        chunk = chunks[which]
        assert chunk is not None
        loc = snap.location(chunk)
    pack = repo.root / pack_relpath(loc.pack_id)
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        header = os.pread(f.fileno(), BLOB_HEADER.size, loc.offset)
        _, _, _, stored, _, cid = BLOB_HEADER.unpack(header)
        assert cid == chunk and BLOB_HEADER.size + stored == loc.stored_size
        where = loc.offset + BLOB_HEADER.size + stored // 2
        byte = os.pread(f.fileno(), 1, where)
        os.pwrite(f.fileno(), bytes([byte[0] ^ 0xFF]), where)
    return len(chunks)


def craft_snapshot(repo: Repository, edit: Callable[[lmdb.Transaction, Any, Any], None]) -> str:
    """Copy the newest snapshot index of mx1 to HOSTILE_NAME and let `edit`
    change the copy in one write transaction: edit(txn, entries_db, dirents_db)."""
    ref = repo.latest("mx1")
    assert ref is not None
    source = repo.root / ref.relpath
    copy = source.with_name(f"{HOSTILE_NAME}.idx")
    shutil.copyfile(source, copy)
    with plain_index(copy, write=True) as plain:
        env = lmdb.open(str(plain), subdir=False, max_dbs=8, lock=False)
        try:
            with env.begin(write=True) as txn:
                entries = env.open_db(DB_ENTRIES, txn=txn, create=False)
                dirents = env.open_db(DB_DIRENTS, txn=txn, create=False)
                edit(txn, entries, dirents)
        finally:
            env.close()
    set_snapshot_place(copy, "mx1", HOSTILE_NAME)
    return HOSTILE_NAME


def lookup(txn: lmdb.Transaction, dirents: Any, parent: int, name: bytes) -> int:
    raw = txn.get(dirent_key(parent, name), db=dirents)
    assert raw is not None, name
    return int(ID_KEY.unpack(raw)[0])


def make_symlink_entry(txn: lmdb.Transaction, entries: Any, entry_id: int,
                       target: bytes) -> None:
    """Turn entry `entry_id` (a directory) into a symlink to `target`."""
    old = decode_entry(entry_id, txn.get(id_key(entry_id), db=entries))
    assert old.kind == Kind.DIRECTORY
    new = dataclasses.replace(old, kind=Kind.SYMLINK, data=target, size=len(target),
                              mode=0o777, nlink=1, xattrs=())
    txn.put(id_key(entry_id), encode_entry(new), db=entries)


# -- 1. a full restore equals the source -----------------------------------


def test_full_restore_of_the_awkward_tree_equals_the_source(tmp_path: Path,
                                                             repo: Repository) -> None:
    src = tmp_path / "src"
    make_awkward_tree(src, huge=True)
    summary = backup_json(repo.root, f"mail={src}")
    assert summary["exit_status"] == 0, summary
    target = tmp_path / "restored"
    proc = restore(repo.root, "last", "--target", str(target), "--json", check=0)
    out = target / "mail"
    assert sorted(os.listdir(target)) == ["mail"]

    # Names, types, modes, owners, sizes, mtimes, rdevs, xattrs, content.
    expected = source_state(src)
    assert without_ctime(source_state(out)) == without_ctime(expected)
    # The part directory itself too.
    s, r = os.lstat(src), os.lstat(out)
    assert (r.st_mode, r.st_uid, r.st_gid, r.st_mtime_ns) == (
        s.st_mode, s.st_uid, s.st_gid, s.st_mtime_ns)

    # Hard links: one inode, three names.
    links = [os.lstat(out / p) for p in ("hard-a", "hard-b", "dir with spaces/hard-c")]
    assert len({st.st_ino for st in links}) == 1
    assert [st.st_nlink for st in links] == [3, 3, 3]
    assert os.lstat(out / "plain.txt").st_ino != links[0].st_ino
    assert os.lstat(out / "plain.txt").st_nlink == 1

    # ACLs (access and default) as getfacl shows them, and plain xattrs.
    not_links = sorted(p for p, v in expected.items() if v[0] != stat.S_IFLNK)
    assert getfacl(out, not_links) == getfacl(src, not_links)
    assert b"user:12345:rw-" in getfacl(out, [b"acl"])
    assert b"default:user:12345:rwx" in getfacl(out, [b"sticky"])
    assert os.getxattr(out / "xattrs", "user.binary") == bytes(range(256))
    assert os.getxattr(out / "xattrs", "user.empty") == b""
    assert os.stat(out / "setuid").st_mode & 0o7777 == 0o4755
    assert (os.stat(out / "private").st_uid, os.stat(out / "private").st_gid) == (12345, 54321)

    # Holes stay holes.
    huge, sparse = os.stat(out / "huge"), os.stat(out / "sparse")
    assert huge.st_size == 5 * GIB + 2_000_000
    assert huge.st_blocks * 512 < 16 * 1024 * 1024
    assert sparse.st_size == 8 * 1024 * 1024 + len(b"after the hole")
    assert sparse.st_blocks * 512 < 1024 * 1024
    with open(out / "huge", "rb") as f:
        assert f.read(5) == b"start"
        f.seek(5 * GIB)
        with open(src / "huge", "rb") as g:
            g.seek(5 * GIB)
            assert f.read(1_000_000) == g.read(1_000_000)

    # The summary counts what is in the tree; bytes are data, not holes,
    # and each hard-linked inode's data once.
    report = json.loads(proc.stdout)
    kinds = [v[0] for v in expected.values()]
    with repo.open_snapshot(repo.snapshots()[0]) as snap:
        data_bytes = {e.inode_id: e.stored_bytes for _, e in snap.walk()
                      if e.kind == Kind.REGULAR}
    assert report["exit_status"] == 0
    assert report["snapshot"] == repo.snapshots()[0].name and report["host"] == "mx1"
    assert report["target"] == str(target)
    assert report["files"] == kinds.count(stat.S_IFREG) == 20
    assert report["directories"] == kinds.count(stat.S_IFDIR) + 1  # and the part itself
    assert report["other"] == len(kinds) - kinds.count(stat.S_IFREG) - kinds.count(
        stat.S_IFDIR) == 7
    assert report["bytes"] == sum(data_bytes.values()) == summary["bytes_read"]
    assert report["errors"] == [] and report["warnings"] == []
    assert f"mx1/{report['snapshot']}" in proc.stderr


# -- 2. --at and one path ------------------------------------------------------


def test_partial_restore_at_a_date_between_two_snapshots(tmp_path: Path,
                                                         repo: Repository) -> None:
    src = write_tree(tmp_path / "src", {
        "inbox/cur/1": b"first version\n",
        "inbox/new/2": b"two\n",
        "archive/old": b"not asked for\n",
        "top.txt": b"not asked for either\n",
    })
    backup_json(repo.root, f"mail={src}")
    (first,) = snapshot_names(repo.root)
    # Names have whole seconds: let two of them pass so that a time with
    # seconds lies strictly between the snapshots.
    while time.time() < snapshot_time(first).timestamp() + 2.05:
        time.sleep(0.1)
    (src / "inbox/cur/1").write_bytes(b"second version, longer\n")
    (src / "inbox/cur/3").write_bytes(b"new in the second snapshot\n")
    backup_json(repo.root, f"mail={src}")
    names = snapshot_names(repo.root)
    assert names[0] == first and len(names) == 2
    second = names[1]
    between = snapshot_time(first) + timedelta(seconds=1)
    assert snapshot_time(first) < between < snapshot_time(second)
    when = between.strftime("%Y-%m-%dT%H:%M:%S")

    target = tmp_path / "restored"
    proc = restore(repo.root, "--at", when, "mail/inbox", "--target", str(target), check=0)
    assert f"mx1/{first}" in proc.stderr and second not in proc.stderr
    assert sorted(os.listdir(target)) == ["mail"]
    assert sorted(os.listdir(target / "mail")) == ["inbox"]
    assert (target / "mail/inbox/cur/1").read_bytes() == b"first version\n"
    assert sorted(os.listdir(target / "mail/inbox/cur")) == ["1"]
    assert (target / "mail/inbox/new/2").read_bytes() == b"two\n"
    assert os.stat(target / "mail/inbox/cur/1").st_mtime_ns < os.stat(
        src / "inbox/cur/1").st_mtime_ns

    # The same path at the second snapshot's time is the newer state.
    newer = tmp_path / "newer"
    proc = restore(repo.root, "--at", snapshot_time(second).strftime("%Y-%m-%dT%H:%M:%S"),
                   "mail/inbox/cur", "--target", str(newer), check=0)
    assert f"mx1/{second}" in proc.stderr
    assert (newer / "mail/inbox/cur/1").read_bytes() == b"second version, longer\n"
    assert sorted(os.listdir(newer / "mail/inbox")) == ["cur"]

    # Before the first snapshot there is nothing to restore.
    early = (snapshot_time(first) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    proc = restore(repo.root, "--at", early, "mail/inbox", "--target", str(tmp_path / "none"),
                   check=2)
    (line,) = error_lines(proc)
    assert "no snapshot" in line
    assert not (tmp_path / "none").exists()


# -- 3. existing files -----------------------------------------------------


def test_existing_files_are_kept_unless_overwrite(tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "src"
    make_awkward_tree(src, huge=False)
    backup_json(repo.root, f"mail={src}")
    target = tmp_path / "restored"
    restore(repo.root, "last", "--target", str(target), check=0)
    plain = target / "mail/plain.txt"
    plain.write_bytes(b"edited after the restore\n")
    before = os.lstat(plain)

    # One existing file: named, an error, untouched.
    proc = restore(repo.root, "last", "mail/plain.txt", "--target", str(target), check=2)
    (line,) = error_lines(proc)
    assert "mail/plain.txt" in line and "--overwrite" in line
    assert plain.read_bytes() == b"edited after the restore\n"
    after = os.lstat(plain)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    # Everything again: the existing part directory is named, nothing changes.
    proc = restore(repo.root, "last", "--target", str(target), check=2)
    assert error_lines(proc) == ["histfs: error: mail: exists (use --overwrite)"]
    assert plain.read_bytes() == b"edited after the restore\n"

    # With --overwrite the file comes back as it was.
    restore(repo.root, "last", "mail/plain.txt", "--target", str(target), "--overwrite",
            check=0)
    assert plain.read_bytes() == b"hello\n"
    assert os.lstat(plain).st_mtime_ns == os.lstat(src / "plain.txt").st_mtime_ns

    # And the whole tree too, over local changes of several kinds.
    plain.write_bytes(b"edited again\n")
    (target / "mail/hard-b").unlink()
    (target / "mail/hard-b").write_bytes(b"no longer a link\n")
    os.unlink(target / "mail/link-rel")
    os.symlink("elsewhere", target / "mail/link-rel")
    os.chmod(target / "mail/setuid", 0o600)
    proc = restore(repo.root, "last", "--target", str(target), "--overwrite", "--json",
                   check=0)
    assert json.loads(proc.stdout)["errors"] == []
    assert without_ctime(source_state(target / "mail")) == without_ctime(source_state(src))
    links = {os.lstat(target / "mail" / p).st_ino
             for p in ("hard-a", "hard-b", "dir with spaces/hard-c")}
    assert len(links) == 1 and os.lstat(target / "mail/hard-a").st_nlink == 3


def test_path_not_in_the_snapshot_is_one_error_line(tmp_path: Path, repo: Repository) -> None:
    src = write_tree(tmp_path / "src", {"a.txt": b"a\n"})
    backup_json(repo.root, f"mail={src}")
    target = tmp_path / "restored"
    for path, words in (("mail/no-such-file", ["mail/no-such-file", "not in snapshot"]),
                        ("mail/../../etc", ["mail/../../etc", "not a path inside"])):
        proc = restore(repo.root, "last", path, "--target", str(target), check=2)
        (line,) = error_lines(proc)
        assert all(w in line for w in words), line
        # Besides the error only the line saying what is being restored.
        assert [x for x in proc.stderr.splitlines() if x != line] == [
            f"restoring mx1/{snapshot_names(repo.root)[0]} into {target}"]
        assert proc.stdout == ""
        assert not target.exists()


# -- 4. damaged data -------------------------------------------------------


DAMAGE_FILES = {
    "a.txt": b"alpha\n" * 100,
    "sub/big.bin": os.urandom(5_000_000),
    "sub/small.txt": b"small\n",
    "z.txt": b"last of all\n",
}


# A small file is written by the restoring thread, a large one (several
# chunks, the last one damaged: its start is written before the damage is
# found) by a worker.
@pytest.mark.parametrize("victim_size", [200_000, 6_000_000], ids=["small", "large"])
def test_damaged_chunk_fails_only_its_file(tmp_path: Path, repo: Repository,
                                           victim_size: int) -> None:
    files = {**DAMAGE_FILES, "m-victim.bin": os.urandom(victim_size)}
    src = write_tree(tmp_path / "src", files)
    backup_json(repo.root, f"d={src}")
    ref = repo.snapshots()[0]
    chunks = damage_chunk(repo, ref, "d/m-victim.bin", which=-1)
    # Below the chunker's 256 KiB minimum a file is always one chunk, above
    # its 4 MiB maximum always several.
    assert chunks == 1 if victim_size < 256 * 1024 else chunks > 1

    target = tmp_path / "restored"
    proc = restore(repo.root, "last", "--target", str(target), check=2)
    errors = error_lines(proc)
    assert len(errors) == 1 and "d/m-victim.bin" in errors[0], proc.stderr
    assert "not restored" in errors[0]
    assert not os.path.lexists(target / "d/m-victim.bin")
    expected = without_ctime(source_state(src))
    del expected[b"m-victim.bin"]
    assert without_ctime(source_state(target / "d")) == expected

    # Paths that do not use the damaged chunk restore cleanly.
    clean = tmp_path / "clean"
    restore(repo.root, "last", "d/sub", "d/a.txt", "--target", str(clean), check=0)
    assert (clean / "d/sub/big.bin").read_bytes() == files["sub/big.bin"]
    assert (clean / "d/a.txt").read_bytes() == files["a.txt"]
    assert sorted(os.listdir(clean / "d")) == ["a.txt", "sub"]
    # And the victim alone fails, leaving nothing behind.
    alone = tmp_path / "alone"
    proc = restore(repo.root, "last", "d/m-victim.bin", "--target", str(alone), check=2)
    assert "d/m-victim.bin" in error_lines(proc)[0]
    assert os.listdir(alone / "d") == []


def test_counts_are_of_what_was_restored(tmp_path: Path, repo: Repository) -> None:
    """Files that failed are not counted as restored, nor their bytes: with
    every file damaged, "restored 0 files … 0 B", and "failed 2"."""
    src = write_tree(tmp_path / "src", {"a-small.bin": os.urandom(200_000),
                                        "b-large.bin": os.urandom(6_000_000)})
    backup_json(repo.root, f"d={src}")
    ref = repo.snapshots()[0]
    damage_chunk(repo, ref, "d/a-small.bin")
    damage_chunk(repo, ref, "d/b-large.bin", which=-1)  # its start is written first
    proc = restore(repo.root, "last", "--target", str(tmp_path / "all"), check=2)
    assert len(error_lines(proc)) == 2, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("restored   0 files, 1 directories, 0 other, 0 B in "), lines
    assert lines[1] == "failed     2 (see above)"
    summary = json.loads(restore(repo.root, "last", "--target", str(tmp_path / "json"),
                                 "--json", check=2).stdout)
    assert (summary["files"], summary["bytes"], len(summary["errors"])) == (0, 0, 2)

    # One of three damaged: the other two, and exactly their bytes.
    (src / "c.txt").write_bytes(b"c" * 1000)
    (src / "a-small.bin").write_bytes(b"a" * 3000)
    backup_json(repo.root, f"d={src}")
    summary = json.loads(restore(repo.root, "last", "--target", str(tmp_path / "some"),
                                 "--json", check=2).stdout)
    assert (summary["files"], summary["bytes"]) == (2, 4000), summary
    (error,) = summary["errors"]
    assert error.startswith("d/b-large.bin: not restored: "), error


def test_damaged_hard_linked_file_leaves_none_of_its_links(tmp_path: Path,
                                                           repo: Repository) -> None:
    src = write_tree(tmp_path / "src", {"a-victim": os.urandom(1_500_000), "z.txt": b"z\n"})
    os.link(src / "a-victim", src / "b-link")
    (src / "sub").mkdir()
    os.link(src / "a-victim", src / "sub" / "c-link")
    backup_json(repo.root, f"d={src}")
    damage_chunk(repo, repo.snapshots()[0], "d/a-victim")
    target = tmp_path / "restored"
    proc = restore(repo.root, "last", "--target", str(target), check=2)
    assert (target / "d/z.txt").read_bytes() == b"z\n"
    assert "d/a-victim" in proc.stderr
    left = [p for p in ("a-victim", "b-link", "sub/c-link")
            if os.path.lexists(target / "d" / p)]
    assert left == [], f"links of a damaged file left behind: {left}"


# -- 5. hostile indexes and targets ----------------------------------------


UNSAFE = [b"..", b"../../escape", b"a/b", b"", b"x\x00y", b"."]


def hostile_tree(tmp_path: Path, repo: Repository) -> Path:
    src = write_tree(tmp_path / "src", {
        "plain.txt": b"plain\n",
        "dir/child.txt": b"child\n",
        "dir/sub/deep.txt": b"deep\n",
        "dir2/child2.txt": b"child2\n",
        "zz.txt": b"zz\n",
    })
    backup_json(repo.root, f"mail={src}")
    return src


def test_hostile_index_cannot_escape_the_target(tmp_path: Path, repo: Repository) -> None:
    hostile_tree(tmp_path, repo)
    outside = Path(f"/tmp/outside-{secrets.token_hex(8)}")
    relative_up = b"../../.."

    def edit(txn: lmdb.Transaction, entries: Any, dirents: Any) -> None:
        mail = lookup(txn, dirents, ROOT_ID, b"mail")
        plain = lookup(txn, dirents, mail, b"plain.txt")
        for name in UNSAFE:
            # Unsafe names for a file in the part, and for the part directory
            # itself at the top (restored there it would be the target's parent).
            txn.put(dirent_key(mail, name), id_key(plain), db=dirents)
            txn.put(dirent_key(ROOT_ID, name), id_key(mail), db=dirents)
        # Directories turned into symlinks that keep (and gain) children.
        for dname, link, planted in ((b"dir", os.fsencode(outside), b"planted"),
                                     (b"dir2", relative_up, b"planted2")):
            d = lookup(txn, dirents, mail, dname)
            make_symlink_entry(txn, entries, d, link)
            txn.put(dirent_key(d, planted), id_key(plain), db=dirents)

    name = craft_snapshot(repo, edit)
    box = tmp_path / "box"
    target = box / "inner" / "target"
    fresh = box / "fresh"
    # Both exist, empty, beforehand: creating them would change their parents.
    target.mkdir(parents=True)
    fresh.mkdir()
    (box / "sentinel").write_bytes(b"sentinel\n")
    # ../../.. from target/mail is `box`: watch it, and everything else here.
    assert (target / "mail" / os.fsdecode(relative_up)).resolve() == box.resolve()
    before = tree_listing(tmp_path, tmp_path / "cache", target, fresh)

    proc = restore(repo.root, name, "--target", str(target))
    assert proc.returncode == 2, proc.stderr
    unsafe = [line for line in error_lines(proc) if "unsafe name" in line]
    assert len(unsafe) == 2 * len(UNSAFE), proc.stderr
    assert len(error_lines(proc)) == len(unsafe), proc.stderr

    # Nothing outside the target changed or appeared.
    assert tree_listing(tmp_path, tmp_path / "cache", target, fresh) == before
    assert not os.path.lexists(outside)
    # Inside: exactly the safe names; the symlinks are just symlinks.
    assert os.listdir(target) == ["mail"]
    mail = target / "mail"
    assert sorted(os.listdir(mail)) == ["dir", "dir2", "plain.txt", "zz.txt"]
    assert os.readlink(mail / "dir") == str(outside)
    assert os.readlink(mail / "dir2") == os.fsdecode(relative_up)
    assert (mail / "plain.txt").read_bytes() == b"plain\n"
    assert (mail / "zz.txt").read_bytes() == b"zz\n"
    assert not (box / "planted2").exists() and not (box / "child2.txt").exists()

    # A path through a restored symlink, into the same target, even with
    # --overwrite: an error naming the symlink, nothing written through it.
    for path, link in (("mail/dir/planted", "dir"), ("mail/dir2/planted2", "dir2")):
        proc = restore(repo.root, name, path, "--target", str(target), "--overwrite", check=2)
        (line,) = error_lines(proc)
        assert link in line and "not a directory" in line
        assert tree_listing(tmp_path, tmp_path / "cache", target, fresh) == before
        assert not os.path.lexists(outside)
        assert os.path.islink(mail / link)

    # Into a fresh target the symlink's "children" land in a real directory.
    restore(repo.root, name, "mail/dir/planted", "--target", str(fresh))
    assert not os.path.lexists(outside)
    assert not os.path.islink(fresh / "mail/dir") and (fresh / "mail/dir").is_dir()
    assert (fresh / "mail/dir/planted").read_bytes() == b"plain\n"
    assert tree_listing(tmp_path, tmp_path / "cache", target, fresh) == before


def test_directory_that_contains_itself_is_an_error_not_a_crash(tmp_path: Path,
                                                               repo: Repository) -> None:
    hostile_tree(tmp_path, repo)

    def edit(txn: lmdb.Transaction, entries: Any, dirents: Any) -> None:
        mail = lookup(txn, dirents, ROOT_ID, b"mail")
        d = lookup(txn, dirents, mail, b"dir")
        txn.put(dirent_key(d, b"again"), id_key(mail), db=dirents)

    name = craft_snapshot(repo, edit)
    target = tmp_path / "box" / "target"
    target.mkdir(parents=True)
    before = tree_listing(tmp_path, tmp_path / "cache", target)
    proc = histfs("restore", "--repo", str(repo.root), name, "--target", str(target))
    assert tree_listing(tmp_path, tmp_path / "cache", target) == before
    assert proc.returncode == 2, proc.stderr[-300:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert any("mail/dir/again" in line for line in error_lines(proc)), proc.stderr
    # The rest of the snapshot is restored.
    assert (target / "mail/zz.txt").read_bytes() == b"zz\n"


def test_symlinks_in_the_target_are_not_followed(tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "src"
    make_awkward_tree(src, huge=False)
    backup_json(repo.root, f"mail={src}")
    elsewhere = write_tree(tmp_path / "elsewhere", {"keep.txt": b"keep\n"})
    before = tree_listing(elsewhere)

    # The part directory is a symlink to a directory outside.
    target = tmp_path / "t1"
    target.mkdir()
    os.symlink(elsewhere, target / "mail")
    for extra in ((), ("--overwrite",)):
        proc = restore(repo.root, "last", "--target", str(target), *extra, check=2)
        assert any("mail" in line for line in error_lines(proc)), proc.stderr
        assert tree_listing(elsewhere) == before
        assert os.readlink(target / "mail") == str(elsewhere)
        assert os.listdir(target) == ["mail"]

    target = tmp_path / "t2"
    restore(repo.root, "last", "--target", str(target), check=0)
    mail = target / "mail"
    # A file that is a symlink to a file outside: kept without --overwrite,
    # replaced (not written through) with it.
    (mail / "plain.txt").unlink()
    os.symlink(elsewhere / "keep.txt", mail / "plain.txt")
    proc = restore(repo.root, "last", "mail/plain.txt", "--target", str(target), check=2)
    assert "mail/plain.txt" in error_lines(proc)[0]
    assert os.path.islink(mail / "plain.txt")
    restore(repo.root, "last", "mail/plain.txt", "--target", str(target), "--overwrite",
            check=0)
    assert not os.path.islink(mail / "plain.txt")
    assert (mail / "plain.txt").read_bytes() == b"hello\n"
    assert tree_listing(elsewhere) == before
    assert (elsewhere / "keep.txt").read_bytes() == b"keep\n"

    # A subdirectory that is a symlink to a directory outside: restoring it,
    # or a path below it, is an error naming it, and nothing goes through it.
    shutil.rmtree(mail / "dir with spaces")
    os.symlink(elsewhere, mail / "dir with spaces")
    for path in ("mail/dir with spaces", "mail/dir with spaces/hard-c", None):
        args = ("last", path) if path else ("last",)
        proc = restore(repo.root, *args, "--target", str(target), "--overwrite")
        assert proc.returncode == 2, proc.stderr
        assert any("dir with spaces" in line for line in error_lines(proc)), proc.stderr
        assert tree_listing(elsewhere) == before, path
        assert os.readlink(mail / "dir with spaces") == str(elsewhere)


def test_symlinked_directory_in_the_target_fails_only_that_directory(
        tmp_path: Path, repo: Repository) -> None:
    src = tmp_path / "src"
    make_awkward_tree(src, huge=False)
    backup_json(repo.root, f"mail={src}")
    elsewhere = write_tree(tmp_path / "elsewhere", {"keep.txt": b"keep\n"})
    before = tree_listing(elsewhere)
    target = tmp_path / "t"
    restore(repo.root, "last", "--target", str(target), check=0)
    shutil.rmtree(target / "mail/dir with spaces")
    os.symlink(elsewhere, target / "mail/dir with spaces")
    (target / "mail/plain.txt").unlink()
    os.symlink(elsewhere / "keep.txt", target / "mail/plain.txt")
    (target / "mail/zz-after").mkdir()

    proc = restore(repo.root, "last", "--target", str(target), "--overwrite")
    assert proc.returncode == 2, proc.stderr
    assert tree_listing(elsewhere) == before
    assert any("mail/dir with spaces" in line for line in error_lines(proc)), proc.stderr
    # Entries after the obstacle (in name order) are still restored.
    assert not os.path.islink(target / "mail/plain.txt")
    assert (target / "mail/plain.txt").read_bytes() == b"hello\n"
    assert (elsewhere / "keep.txt").read_bytes() == b"keep\n"


def test_hostile_index_through_the_mount_and_absurd_sizes(
        tmp_path: Path, repo: Repository, mount_repo: Callable[..., Any]) -> None:
    """The mount serves no unsafe name, and files that claim absurd sizes
    (beyond what a file system holds, beyond what off_t holds) give errors
    for those files only, in the mount and in restore."""
    hostile_tree(tmp_path, repo)
    claims = {b"huge.txt": 1 << 62, b"beyond-off-t.txt": (1 << 64) - 1}

    def edit(txn: lmdb.Transaction, entries: Any, dirents: Any) -> None:
        mail = lookup(txn, dirents, ROOT_ID, b"mail")
        plain = lookup(txn, dirents, mail, b"plain.txt")
        for name in UNSAFE:
            txn.put(dirent_key(mail, name), id_key(plain), db=dirents)
        old = decode_entry(plain, txn.get(id_key(plain), db=entries))
        next_id = max(ID_KEY.unpack(k)[0] for k, _ in txn.cursor(db=entries)) + 1
        for name, size in claims.items():
            new = dataclasses.replace(old, entry_id=next_id, inode_id=next_id, name=name,
                                      size=size, nlink=1)
            txn.put(id_key(next_id), encode_entry(new), db=entries)
            txn.put(dirent_key(mail, name), id_key(next_id), db=dirents)
            next_id += 1

    name = craft_snapshot(repo, edit)
    m = mount_repo(repo.root)
    mail = m.path / "mx1" / name / "mail"
    listed = subprocess.run(["ls", "-1fa", str(mail)], capture_output=True, check=True,
                            text=True).stdout.split("\n")
    # The unsafe names are not served, nor is the entry whose size is
    # beyond off_t (it is damage: `check` reports it).
    assert sorted(n for n in listed if n) == ["dir", "dir2", "huge.txt", "plain.txt", "zz.txt"]
    assert (mail / "plain.txt").read_bytes() == b"plain\n"
    for claimed in claims:
        path = mail / os.fsdecode(claimed)
        try:
            with open(path, "rb") as f:
                f.seek(-4096, os.SEEK_END)
                f.read(4096)
        except OSError as exc:
            assert exc.errno in (errno.EIO, errno.EFBIG, errno.EOVERFLOW, errno.EINVAL), exc
    # The daemon still answers.
    assert (mail / "zz.txt").read_bytes() == b"zz\n"
    assert m.proc is not None and m.proc.poll() is None

    target = tmp_path / "target"
    target.mkdir()
    proc = restore(repo.root, name, "--target", str(target))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = error_lines(proc)
    assert all(any(k in line for k in ("unsafe name", "huge.txt", "beyond-off-t.txt"))
               for line in errors), errors
    assert any("beyond-off-t.txt" in line for line in errors), errors
    assert any("huge.txt" in line for line in errors), errors
    assert (target / "mail" / "zz.txt").read_bytes() == b"zz\n"
