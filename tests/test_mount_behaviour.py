"""How a real histfs FUSE mount behaves over time, for tools and for users.

Every test backs up real directories with `histfs backup`, mounts the
repository for real (pyfuse3, /dev/fuse) and looks at it only through the
kernel: `os.stat`, `open`/`read`, `readdir` (also through libc with
`telldir`/`seekdir`), extended attributes, GNU tar and `setpriv`. No mocks.

- several snapshots side by side: each dated directory keeps its own state,
  unchanged files keep their metadata, inode numbers are never shared
  between snapshots and readdir's d_ino equals st_ino;
- a backup made while mounted appears without a remount and `last` follows
  it, keeping inode numbers of paths whose type did not change (which is what
  makes `tar --listed-incremental` over `last/` dump only changed files); a
  post-backup hook finds its snapshot and the new `last` at once; the kernel
  keeps what it learns under `last/` long, and forgets, when `last` moves,
  exactly what changed; an idle mount holding paths there uses no CPU; prune
  and gc while mounted leave every kept file readable (plain and encrypted);
- every kind of write fails with EROFS, everywhere in the tree;
- `--allow-other`: other users get in, and stored permissions are enforced;
- inode numbers are below 2^63 and survive a remount; `last` has the mode,
  link count and times of the dated directory it shows; `--host` and
  `--last-symlink`;
- daemon mode: `mount` returns once the mount answers, `umount` ends the
  daemon, mistakes are one `histfs: error:` line with exit status 2, and a
  killed daemon leaves a dead mount point rather than an empty directory;
- big directories list completely, in order, and resume from a `telldir`
  position; a listing under `last/` that spans the arrival of a new snapshot
  lists every surviving name once;
- times before 1970 and after 2038 and empty xattr values are exact;
- a damaged pack fails reads of the damaged file with EIO, logs the snapshot
  and path, and leaves the rest of the mount working; so does a local cache
  too full for a snapshot's index copy.

Daemon-mode tests unmount in `finally` (fusermount3 -u, then -z) and wait for
the daemon recorded in their `--pid-file` to exit; foreground mounts are
undone by the `mount_repo` fixture (or explicitly, in `finally`).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from index.format.blob import BLOB_HEADER
from index.format.pack import pack_relpath
from index.format.types import ChunkId
from index.model.repository import Repository, SnapshotRef
from tests.conftest import Mount, backup_json, histfs, reads_across_gc
from tests.trees import FUTURE_NS, OLD_NS

NOBODY = 65534

# -- helpers ---------------------------------------------------------------


def _backup(repo_root: Path, *parts: str, host: str = "mx1") -> str:
    """Back up `parts` (NAME=PATH) and return the new snapshot's name."""
    summary = backup_json(repo_root, *parts, host=host)
    name = summary["snapshot"]
    assert isinstance(name, str) and name, summary
    return name


def _wait_for(cond: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll `cond` until it returns something true (OSErrors count as false)."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        try:
            value = cond()
        except OSError as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                                 f" (last error: {last_error})")
        time.sleep(0.05)


def _in_mountinfo(path: Path) -> bool:
    """Whether something is mounted at `path`, without touching the mount."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == str(path) for line in f)


def _pid_gone(pid: int) -> bool:
    """Whether process `pid` has exited (a zombie nobody reaps counts)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except FileNotFoundError:
        return True
    return data.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not _pid_gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _fusermount_u(path: Path) -> None:
    """fusermount3 -u, falling back to -z (lazy)."""
    if subprocess.run(["fusermount3", "-u", str(path)], capture_output=True).returncode:
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)


def _cleanup_daemon(mountpoint: Path, pid_file: Path) -> None:
    """Unmount a daemon-mode mount if still there; wait for its daemon."""
    if _in_mountinfo(mountpoint):
        _fusermount_u(mountpoint)
    try:
        pid = int(pid_file.read_text())
    except (FileNotFoundError, ValueError):
        return
    if not _wait_gone(pid, 10):
        os.kill(pid, signal.SIGKILL)  # the daemon this test started and recorded
        _wait_gone(pid, 5)


def _mount_daemon(repo_root: Path, mountpoint: Path, pid_file: Path,
                  *options: str) -> int:
    """`histfs mount` in daemon mode; the daemon's pid."""
    histfs("mount", "--repo", str(repo_root), str(mountpoint), "--pid-file", str(pid_file),
           *options, check=0, timeout=60)
    return int(pid_file.read_text())


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The single `histfs: error:` line of a failed command (exit status 2)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("histfs: error: "), lines[0]
    return lines[0]


def _inodes_below(top: Path) -> dict[str, int]:
    """Relative path -> st_ino of `top` and everything below it."""
    found = {".": os.lstat(top).st_ino}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            found[str(p.relative_to(top))] = os.lstat(p).st_ino
    return found


def _check_dino_equals_stino(directory: Path) -> int:
    """Every readdir d_ino in `directory` equals lstat's st_ino; the count."""
    n = 0
    with os.scandir(directory) as it:
        for de in it:
            assert de.inode() == os.lstat(de.path).st_ino, de.path
            n += 1
    return n


# -- 1. several snapshots side by side -------------------------------------


def test_each_dated_directory_keeps_its_own_state(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "keep.txt").write_bytes(b"never changes\n")
    (src / "sub" / "deep.txt").write_bytes(b"never changes either\n")
    (src / "change.txt").write_bytes(b"version 1\n")
    (src / "gone.txt").write_bytes(b"deleted before the second backup\n")
    (src / "old-name.txt").write_bytes(b"renamed before the second backup\n")
    first = _backup(repo.root, f"data={src}")
    time.sleep(1.1)
    (src / "change.txt").write_bytes(b"version 2, a little longer\n")
    (src / "new.txt").write_bytes(b"only in the second\n")
    (src / "gone.txt").unlink()
    (src / "old-name.txt").rename(src / "new-name.txt")
    second = _backup(repo.root, f"data={src}")
    assert first < second

    m = mount_repo(repo.root)
    host = m.path / "mx1"
    assert os.listdir(m.path) == ["mx1"]
    assert sorted(os.listdir(host)) == [first, second, "last"]
    one, two = host / first / "data", host / second / "data"
    assert sorted(os.listdir(one)) == ["change.txt", "gone.txt", "keep.txt", "old-name.txt",
                                       "sub"]
    assert sorted(os.listdir(two)) == ["change.txt", "keep.txt", "new-name.txt", "new.txt",
                                       "sub"]
    assert (one / "change.txt").read_bytes() == b"version 1\n"
    assert (two / "change.txt").read_bytes() == b"version 2, a little longer\n"
    assert (one / "gone.txt").read_bytes() == b"deleted before the second backup\n"
    assert (one / "old-name.txt").read_bytes() == b"renamed before the second backup\n"
    assert (two / "new-name.txt").read_bytes() == b"renamed before the second backup\n"
    assert (two / "new.txt").read_bytes() == b"only in the second\n"
    for absent in (one / "new.txt", one / "new-name.txt", two / "gone.txt",
                   two / "old-name.txt"):
        with pytest.raises(FileNotFoundError):
            os.stat(absent)
    assert os.stat(one / "change.txt").st_size == len(b"version 1\n")
    assert os.stat(two / "change.txt").st_size == len(b"version 2, a little longer\n")

    # Unchanged files: the same metadata in both (and as in the source) ...
    for rel in ("keep.txt", "sub/deep.txt"):
        a, b, s = os.stat(one / rel), os.stat(two / rel), os.stat(src / rel)
        for field in ("st_size", "st_mode", "st_mtime_ns", "st_ctime_ns", "st_uid", "st_gid"):
            assert getattr(a, field) == getattr(b, field) == getattr(s, field), (rel, field)
        assert (one / rel).read_bytes() == (two / rel).read_bytes() == (src / rel).read_bytes()
        # ... but a different inode number in each snapshot.
        assert a.st_ino != b.st_ino, rel

    # No inode number is shared between the two snapshots, nor inside one.
    inos_one, inos_two = _inodes_below(host / first), _inodes_below(host / second)
    assert len(set(inos_one.values())) == len(inos_one) == 8  # ., data, 4 files, sub, deep
    assert len(set(inos_two.values())) == len(inos_two)
    assert not set(inos_one.values()) & set(inos_two.values())

    # readdir's d_ino is stat's st_ino, at every level, in both and in last.
    counts = [_check_dino_equals_stino(d) for d in (
        m.path, host, host / first, one, one / "sub", host / second, two, two / "sub",
        host / "last", host / "last" / "data", host / "last" / "data" / "sub")]
    assert counts == [1, 3, 1, 5, 1, 1, 5, 1, 1, 5, 1]


# -- 2. a backup made while mounted ------------------------------------------


def test_backup_while_mounted_appears_and_last_follows(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "changes.txt").write_bytes(b"old content\n")
    (src / "same.txt").write_bytes(b"same content\n")
    (src / "same-size.txt").write_bytes(b"AAAA" * 4096)
    first = _backup(repo.root, f"data={src}")
    m = mount_repo(repo.root)
    host = m.path / "mx1"
    last = host / "last" / "data"
    assert sorted(os.listdir(host)) == [first, "last"]
    assert (last / "changes.txt").read_bytes() == b"old content\n"
    # Pages the kernel caches for an inode under last/ ...
    assert (last / "same-size.txt").read_bytes() == b"AAAA" * 4096
    assert (last / "same.txt").read_bytes() == b"same content\n"
    before = {p: os.stat(last / p).st_ino for p in ("changes.txt", "same.txt", ".", "..")}

    new = b"new content, and not the same size\n"
    (src / "changes.txt").write_bytes(new)
    (src / "added.txt").write_bytes(b"added\n")
    # Same size and mtime: only the ctime tells the backup it changed, and
    # nothing in the attributes tells the kernel to drop its cached pages.
    old = os.stat(src / "same-size.txt")
    (src / "same-size.txt").write_bytes(b"BBBB" * 4096)
    os.utime(src / "same-size.txt", ns=(old.st_atime_ns, old.st_mtime_ns))
    second = _backup(repo.root, f"data={src}")
    assert second != first

    _wait_for(lambda: second in os.listdir(host), f"{second} in {host}")
    assert sorted(os.listdir(host)) == sorted([first, second, "last"])
    _wait_for(lambda: (last / "changes.txt").read_bytes() == new, "new content under last/")
    _wait_for(lambda: os.stat(last / "changes.txt").st_size == len(new), "new size under last/")
    _wait_for(lambda: "added.txt" in os.listdir(last), "added.txt under last/")
    # ... are not served once the inode shows other content of the same size.
    assert (last / "same-size.txt").read_bytes() == b"BBBB" * 4096
    assert (last / "same.txt").read_bytes() == b"same content\n"
    assert sorted(os.listdir(last)) == sorted(os.listdir(host / second / "data")) == [
        "added.txt", "changes.txt", "same-size.txt", "same.txt"]
    st = os.stat(last / "changes.txt")
    assert st.st_mtime_ns == os.stat(src / "changes.txt").st_mtime_ns
    # Same path, same type: the same inode number, although the content changed.
    after = {p: os.stat(last / p).st_ino for p in ("changes.txt", "same.txt", ".", "..")}
    assert after == before
    # The older dated directory did not move.
    assert (host / first / "data" / "changes.txt").read_bytes() == b"old content\n"
    assert sorted(os.listdir(host / first / "data")) == [
        "changes.txt", "same-size.txt", "same.txt"]
    assert (host / first / "data" / "same-size.txt").read_bytes() == b"AAAA" * 4096


def test_a_walked_directory_is_read_from_pushed_pages_and_last_still_moves(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    """Opening a file of a directory pushes its neighbours into the page
    cache: reading them asks the daemon for nothing. When `last` moves to
    contents of the same size and times, none of those pages is served."""
    src = tmp_path / "src" / "d"
    src.mkdir(parents=True)
    names = [f"m{i:02d}" for i in range(30)]

    def write(version: bytes) -> None:
        for name in names:
            path = src / name
            old = os.stat(path) if path.exists() else None
            path.write_bytes((version + name.encode()) * 700)
            if old is not None:  # nothing in the attributes tells them apart
                os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))

    write(b"v1-")
    first = _backup(repo.root, f"data={src.parent}")
    m = mount_repo(repo.root, "--debug")
    last = m.path / "mx1" / "last" / "data" / "d"
    assert sorted(os.listdir(last)) == names  # as a walker does: the kernel knows them
    assert (last / names[0]).read_bytes() == b"v1-m00" * 700
    _wait_for(lambda: sum(int(n) for n in re.findall(r"prefill: stored (\d+) files",
                                                     m.log.read_text())) == len(names) - 1,
              "the neighbours pushed into the page cache", timeout=30)
    reads = m.log.read_text().count("read(fh=")
    for name in names[1:]:
        assert (last / name).read_bytes() == (b"v1-" + name.encode()) * 700
    assert m.log.read_text().count("read(fh=") - reads <= 2

    write(b"v2-")
    second = _backup(repo.root, f"data={src.parent}")
    _wait_for(lambda: second in os.listdir(m.path / "mx1"), f"{second} in the mount")
    time.sleep(2.5)  # the mount's list of snapshots is re-read every 2 s
    assert sorted(os.listdir(last)) == names
    for name in names:
        assert (last / name).read_bytes() == (b"v2-" + name.encode()) * 700, name
    # The dated directory of the first snapshot still shows the first content.
    dated = m.path / "mx1" / first / "data" / "d"
    for name in names:
        assert (dated / name).read_bytes() == (b"v1-" + name.encode()) * 700


def _requests(log: Path, *names: str) -> int:
    """How many requests named `names` a `--debug` mount's log holds."""
    text = log.read_text()
    return sum(text.count(f" DEBUG {name}(") for name in names)


def test_last_is_kept_long_and_forgets_what_changed_when_it_moves(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    """The kernel keeps entries and attributes under `last/` as in a dated
    directory: walking it again later asks the daemon nothing. When `last`
    moves, the mount makes the kernel forget what changed, so the new
    snapshot is seen at once, while an unchanged file keeps its pages."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("same.txt", "attrs.txt", "content.txt", "gone.txt", "kind", "sub/deep.txt"):
        (src / name).write_bytes(f"first {name:<12}\n".encode() * 50)
    _backup(repo.root, f"data={src}")
    m = mount_repo(repo.root, "--debug")
    host = m.path / "mx1"
    last = host / "last" / "data"
    names = ["attrs.txt", "content.txt", "gone.txt", "kind", "same.txt", "sub", "sub/deep.txt"]

    def walk() -> dict[str, os.stat_result]:
        return {n: os.stat(last / n) for n in names}

    before = walk()
    assert (last / "same.txt").read_bytes() == (src / "same.txt").read_bytes()
    assert (last / "content.txt").read_bytes() == (src / "content.txt").read_bytes()
    time.sleep(1.5)  # longer than the timeouts under last/ used to be
    seen = len(m.log.read_text())
    assert walk() == before
    # Only the mount's root, the host and `last` itself are asked again
    # (their lists move with every backup): nothing below `last`.
    asked = [line.split(" DEBUG ")[1] for line in m.log.read_text()[seen:].splitlines()
             if " DEBUG lookup(" in line or " DEBUG getattr(" in line]
    assert all(a == "getattr(1,)" or a.endswith((", b'mx1')", ", b'last')")) for a in asked), \
        asked

    (src / "attrs.txt").chmod(0o600)
    old = os.stat(src / "content.txt")
    (src / "content.txt").write_bytes(b"other content.txt \n" * 50)
    os.utime(src / "content.txt", ns=(old.st_atime_ns, old.st_mtime_ns))
    (src / "gone.txt").unlink()
    (src / "kind").unlink()
    (src / "kind").mkdir()
    (src / "new.txt").write_bytes(b"new\n")
    second = _backup(repo.root, f"data={src}")
    os.stat(host / second)  # as a post-backup hook does: `last` moves at once
    assert stat.S_IMODE(os.stat(last / "attrs.txt").st_mode) == 0o600
    assert os.stat(last / "content.txt").st_size == old.st_size
    assert (last / "content.txt").read_bytes() == b"other content.txt \n" * 50
    with pytest.raises(FileNotFoundError):
        os.stat(last / "gone.txt")
    assert stat.S_ISDIR(os.stat(last / "kind").st_mode)
    assert (last / "new.txt").read_bytes() == b"new\n"
    for name in ("same.txt", "attrs.txt", "content.txt", "sub/deep.txt"):
        assert os.stat(last / name).st_ino == before[name].st_ino, name
    # The unchanged file's pages were kept: reading it asks for no READ.
    reads = _requests(m.log, "read")
    assert (last / "same.txt").read_bytes() == (src / "same.txt").read_bytes()
    assert _requests(m.log, "read") == reads


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time process `pid` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_mount_holding_paths_under_last_uses_no_cpu(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    """While the kernel holds paths under `last/`, the mount looks for a
    newer snapshot every second or two; idle, that costs next to nothing."""
    src = tmp_path / "src"
    _tree_of(src, 300)
    _backup(repo.root, f"data={src}")
    m = mount_repo(repo.root)
    assert m.proc is not None
    assert sum(len(files) for _, _, files in os.walk(m.path / "mx1" / "last")) == 300
    time.sleep(0.5)
    before = _cpu_seconds(m.proc.pid)
    time.sleep(4.0)
    assert _cpu_seconds(m.proc.pid) - before < 0.2


def _tree_of(root: Path, files: int) -> None:
    for i in range(files):
        d = root / f"d{i // 50}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"m{i}").write_bytes(b"message %d\n" % i)


@pytest.mark.timeout(300)
def test_post_backup_hook_finds_its_snapshot_and_last_at_once(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    """The hook gets HISTFS_SNAPSHOT_PATH and looks at once, while the
    mount's snapshot list is younger than its refresh interval (the host
    directory was listed just before the backup)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "n").write_text("0000\n")
    _backup(repo.root, f"data={src}")
    m = mount_repo(repo.root)
    seen = tmp_path / "seen"
    hook = ('p="$HISTFS_SNAPSHOT_PATH"; '
            'if stat "$p" >/dev/null 2>&1; then s=found; else s=missing; fi; '
            f'echo "$HISTFS_SNAPSHOT $s $(cat "$(dirname "$p")/last/data/n")" >> {seen}')
    config = tmp_path / "histfs.toml"
    config.write_text(f'repository = "{repo.root}"\nhost = "mx1"\n'
                      f'mountpoint = "{m.path}"\n[hooks]\nafter_success = {json.dumps(hook)}\n'
                      f'[[part]]\nname = "data"\npath = "{src}"\n')
    names = []
    for i in range(1, 21):
        (src / "n").write_text(f"{i:04d}\n")
        assert os.listdir(m.path / "mx1")  # the mount's list is fresh now
        proc = histfs("backup", "--config", str(config), "--json", check=0)
        names.append(json.loads(proc.stdout)["snapshot"])
    assert seen.read_text().splitlines() == [
        f"{name} found {i:04d}" for i, name in enumerate(names, 1)]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("encryption", ["repokey", "none"])
def test_files_stay_readable_across_gc_in_a_mount_that_stays_up(
        tmp_path: Path, mount_repo: Callable[..., Mount], monkeypatch: pytest.MonkeyPatch,
        encryption: str) -> None:
    monkeypatch.setenv("HISTFS_PASSPHRASE", "mount across gc")
    repo = tmp_path / "repo"
    histfs("init", "--encryption", encryption, str(repo), check=0)
    reads_across_gc(str(repo), tmp_path / "src", mount_repo)


# -- 3. GNU tar --listed-incremental over last/ -----------------------------


def test_tar_listed_incremental_over_last_dumps_only_changed_files(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt", "sub/d.txt", "sub/e.txt", "sub/f.txt"):
        (src / name).write_bytes(f"first version of {name}\n".encode())
    _backup(repo.root, f"data={src}")
    m = mount_repo(repo.root)
    last = m.path / "mx1" / "last"
    snar, level0, level1 = tmp_path / "tape.snar", tmp_path / "0.tar", tmp_path / "1.tar"

    def tar_last(archive: Path) -> list[str]:
        proc = subprocess.run(
            ["tar", f"--listed-incremental={snar}", "--no-check-device", "-cf", str(archive),
             "-C", str(last), "."], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "renamed" not in proc.stderr and "changed" not in proc.stderr, proc.stderr
        listed = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True,
                                check=True, timeout=60).stdout.splitlines()
        return sorted(n for n in listed if not n.endswith("/"))

    assert tar_last(level0) == ["./data/a.txt", "./data/b.txt", "./data/c.txt",
                                "./data/sub/d.txt", "./data/sub/e.txt", "./data/sub/f.txt"]
    time.sleep(0.1)  # changes strictly after the level-0 dump started
    (src / "b.txt").write_bytes(b"second version of b.txt, longer\n")
    (src / "sub" / "e.txt").write_bytes(b"second version of e.txt, longer\n")
    second = _backup(repo.root, f"data={src}")
    for rel in ("b.txt", "sub/e.txt"):
        want = os.stat(src / rel).st_mtime_ns
        _wait_for(lambda rel=rel, want=want: os.stat(last / "data" / rel).st_mtime_ns == want,
                  f"last/data/{rel} from {second}")
    assert (last / "data" / "sub" / "e.txt").read_bytes() == b"second version of e.txt, longer\n"

    assert tar_last(level1) == ["./data/b.txt", "./data/sub/e.txt"]


# -- 4. writes fail with EROFS ------------------------------------------------


def _open_close(path: Path, flags: int) -> None:
    os.close(os.open(path, flags, 0o644))


def _write_attempts(where: str, parent: Path, files: list[Path], dirs: list[Path],
                    link_source: Path, attrs_only: tuple[Path, ...] = ()
                    ) -> list[tuple[str, Callable[[], object]]]:
    """Every kind of write: creating in `parent`, changing `files` and `dirs`
    (and the attributes of `attrs_only`, which cannot be renamed or removed)."""
    new = parent / "created-by-test"
    attempts: list[tuple[str, Callable[[], object]]] = [
        ("mkdir", lambda: os.mkdir(new)),
        ("open O_CREAT", lambda: _open_close(new, os.O_WRONLY | os.O_CREAT)),
        ("open O_CREAT|O_EXCL", lambda: _open_close(new, os.O_RDWR | os.O_CREAT | os.O_EXCL)),
        ("symlink", lambda: os.symlink("target", new)),
        ("link", lambda: os.link(link_source, new)),
        ("mknod fifo", lambda: os.mknod(new, stat.S_IFIFO | 0o644)),
        ("mknod regular", lambda: os.mknod(new, stat.S_IFREG | 0o644)),
        ("mknod char device", lambda: os.mknod(new, stat.S_IFCHR | 0o644, os.makedev(1, 3))),
    ]
    for p in [*files, *dirs, *attrs_only]:
        attempts += [
            (f"chmod {p.name}", lambda p=p: os.chmod(p, 0o700)),
            (f"chown {p.name}", lambda p=p: os.chown(p, 1, 1)),
            (f"utime {p.name}", lambda p=p: os.utime(p, ns=(0, 0))),
            (f"utime now {p.name}", lambda p=p: os.utime(p)),
            (f"setxattr {p.name}", lambda p=p: os.setxattr(p, "user.test", b"1")),
            (f"removexattr {p.name}", lambda p=p: os.removexattr(p, "user.test")),
        ]
    for p in files + dirs:
        attempts.append((f"rename {p.name}", lambda p=p: os.rename(p, new)))
    for f in files:
        for label, flags in (("O_WRONLY", os.O_WRONLY), ("O_RDWR", os.O_RDWR),
                             ("O_APPEND", os.O_WRONLY | os.O_APPEND),
                             ("O_TRUNC", os.O_RDONLY | os.O_TRUNC),
                             ("O_WRONLY|O_TRUNC", os.O_WRONLY | os.O_TRUNC),
                             ("O_CREAT existing", os.O_WRONLY | os.O_CREAT)):
            attempts.append((f"open {label} {f.name}",
                             lambda f=f, flags=flags: _open_close(f, flags)))
        attempts += [
            (f"truncate {f.name}", lambda f=f: os.truncate(f, 0)),
            (f"unlink {f.name}", lambda f=f: os.unlink(f)),
        ]
    for d in dirs:
        attempts += [
            (f"rmdir {d.name}", lambda d=d: os.rmdir(d)),
            (f"unlink {d.name}", lambda d=d: os.unlink(d)),
        ]
    return [(f"{where}: {label}", fn) for label, fn in attempts]


def test_every_kind_of_write_fails_with_erofs(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "file.txt").write_bytes(b"read only\n")
    (src / "empty-dir").mkdir()
    snap = _backup(repo.root, f"data={src}")
    m = mount_repo(repo.root)
    host = m.path / "mx1"
    dated, last = host / snap / "data", host / "last" / "data"
    link_source = dated / "file.txt"

    def tree() -> dict[str, object]:
        return {"root": sorted(os.listdir(m.path)), "host": sorted(os.listdir(host)),
                "dated": sorted(os.listdir(dated)), "last": sorted(os.listdir(last)),
                "file": (dated / "file.txt").read_bytes(),
                "stat": [tuple(os.stat(p))[:7] for p in (m.path, host, host / snap, dated,
                                                         dated / "file.txt", last / "file.txt")]}

    before = tree()
    attempts = (
        _write_attempts("dated dir", dated, [dated / "file.txt"],
                        [dated / "sub", dated / "empty-dir"], link_source)
        + _write_attempts("last/", last, [last / "file.txt"],
                          [last / "sub", last / "empty-dir"], link_source)
        + _write_attempts("dated dir itself", host / snap, [], [host / snap / "data"],
                          link_source)
        + _write_attempts("host dir", host, [], [host / snap, host / "last"], link_source)
        + _write_attempts("root", m.path, [], [host], link_source, attrs_only=(m.path,))
    )
    wrong = []
    for label, attempt in attempts:
        try:
            attempt()
        except OSError as exc:
            if exc.errno != errno.EROFS:
                wrong.append(f"{label}: {errno.errorcode.get(exc.errno)} ({exc})")
        else:
            wrong.append(f"{label}: succeeded")
    assert not wrong, "\n".join(wrong)
    assert len(attempts) > 100
    assert tree() == before


# -- 5. other users, --allow-other ----------------------------------------------


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory any user can reach (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="histfs-test-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _as_nobody(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", *cmd],
        capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("setpriv") is None,
                    reason="setpriv (util-linux) is missing: cannot run as another user")
def test_allow_other_enforces_stored_permissions(
        repo: Repository, tmp_path: Path, public_dir: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    src.chmod(0o755)
    (src / "mine").write_bytes(b"nobody's own mail\n")
    os.chown(src / "mine", NOBODY, NOBODY)
    (src / "secret").write_bytes(b"root's secret\n")
    for name in ("mine", "secret"):
        (src / name).chmod(0o600)
    snap = _backup(repo.root, f"data={src}")
    # The user can reach the parent of the mount points: denials are the mount's.
    assert _as_nobody("stat", str(public_dir)).returncode == 0

    shared = Mount(repo.root, public_dir / "shared", "--allow-other")
    private = Mount(repo.root, public_dir / "private")
    try:
        shared.start()
        for base in (shared.path / "mx1" / snap / "data", shared.path / "mx1" / "last" / "data"):
            got = _as_nobody("cat", str(base / "mine"))
            assert (got.returncode, got.stdout) == (0, "nobody's own mail\n"), got.stderr
            denied = _as_nobody("cat", str(base / "secret"))
            assert denied.returncode != 0 and denied.stdout == ""
            assert "Permission denied" in denied.stderr, denied.stderr
            listed = _as_nobody("ls", str(base))
            assert listed.stdout.split() == ["mine", "secret"], listed.stderr
            # Root still reads it: the file is there, the user is refused.
            assert (base / "secret").read_bytes() == b"root's secret\n"

        private.start()
        assert os.listdir(private.path) == ["mx1"]  # root gets in
        refused = _as_nobody("stat", str(private.path))
        assert refused.returncode != 0
        assert "Permission denied" in refused.stderr, refused.stderr
        refused = _as_nobody("cat", str(private.path / "mx1" / "last" / "data" / "mine"))
        assert refused.returncode != 0
        assert "Permission denied" in refused.stderr, refused.stderr
    finally:
        private.stop()
        shared.stop()
    assert not _in_mountinfo(shared.path) and not _in_mountinfo(private.path)


# -- 6. inode numbers, remount, `last`'s own attributes --------------------------


def test_inode_numbers_survive_a_remount(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    (src / "dir" / "deeper").mkdir(parents=True)
    (src / "top.txt").write_bytes(b"top\n")
    (src / "dir" / "inner.txt").write_bytes(b"inner\n")
    (src / "dir" / "deeper" / "leaf.txt").write_bytes(b"leaf\n")
    first = _backup(repo.root, f"data={src}")
    (src / "dir" / "inner.txt").write_bytes(b"inner, changed\n")
    second = _backup(repo.root, f"data={src}", f"etc={src / 'dir'}")
    rels = ["mx1", f"mx1/{first}", f"mx1/{second}", "mx1/last"] + [
        f"mx1/{top}/{p}" for top in (first, second, "last")
        for p in ("data", "data/top.txt", "data/dir", "data/dir/inner.txt",
                  "data/dir/deeper", "data/dir/deeper/leaf.txt")] + [
        f"mx1/{top}/etc/inner.txt" for top in (second, "last")]

    m = mount_repo(repo.root)
    before = {rel: os.stat(m.path / rel).st_ino for rel in rels}
    assert len(set(before.values())) == len(rels)  # all distinct
    m.stop()
    assert not _in_mountinfo(m.path)
    again = mount_repo(repo.root)
    assert again.path == m.path
    # Looked up in another order this time: numbers do not depend on it.
    after = {rel: os.stat(again.path / rel).st_ino for rel in reversed(rels)}
    assert after == before


def test_every_inode_number_is_below_2_63(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    """Catalogs of backup software keep st_ino in signed 64-bit columns."""
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "a.txt").write_bytes(b"a\n")
    os.link(src / "dir" / "a.txt", src / "hard.txt")
    os.symlink("dir/a.txt", src / "link")
    for host in ("mx1", "mx2"):
        _backup(repo.root, f"data={src}", host=host)
    (src / "dir" / "b.txt").write_bytes(b"b\n")
    _backup(repo.root, f"data={src}")
    for m in (mount_repo(repo.root), mount_repo(repo.root, "--host", "mx1", name="single")):
        found = _inodes_below(m.path)
        # readdir's d_ino too (a different path through the kernel).
        for dirpath, _, _ in os.walk(m.path):
            with os.scandir(dirpath) as it:
                found.update({de.path: de.inode() for de in it})
        assert {rel.split("/")[-1] for rel in found} >= {"last", "a.txt", "hard.txt", "link"}
        too_big = {rel: ino for rel, ino in found.items() if not 0 < ino < 2**63}
        assert not too_big
        last = m.path / ("" if m.path.name == "single" else "mx1") / "last" / "data"
        assert os.stat(last / "hard.txt").st_ino == os.stat(last / "dir" / "a.txt").st_ino


def test_last_looks_like_its_dated_twin(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    src.chmod(0o750)
    (src / "f.txt").write_bytes(b"f\n")
    (src / "sub" / "g.conf").write_bytes(b"g\n")
    _backup(repo.root, f"data={src}")
    time.sleep(1.1)
    newest = _backup(repo.root, f"data={src}", f"etc={src / 'sub'}")
    fields = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime_ns",
              "st_mtime_ns", "st_ctime_ns")
    for m in (mount_repo(repo.root), mount_repo(repo.root, "--host", "mx1", name="single")):
        top = m.path if m.path.name == "single" else m.path / "mx1"
        # As `ls -l` shows them (stat), and as a listing hands them out.
        with os.scandir(top) as it:
            listed = {de.name: de.stat(follow_symlinks=False) for de in it}
        for last, dated in ((os.stat(top / "last"), os.stat(top / newest)),
                            (listed["last"], listed[newest])):
            assert last.st_ino != dated.st_ino
            assert {f: getattr(last, f) for f in fields} == \
                {f: getattr(dated, f) for f in fields}
            assert last.st_mode == stat.S_IFDIR | 0o555  # read-only: no write bit
        assert sorted(os.listdir(top / "last")) == sorted(os.listdir(top / newest)) == [
            "data", "etc"]


# -- 7. --host and --last-symlink -------------------------------------------------


def test_host_option_and_last_symlink(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(b"one\n")
    other = _backup(repo.root, f"data={src}", host="mx2")
    time.sleep(1.1)  # mx1's snapshots get other names than mx2's
    first = _backup(repo.root, f"data={src}")
    (src / "f.txt").write_bytes(b"two, newer\n")
    second = _backup(repo.root, f"data={src}")
    assert other < first < second

    single = mount_repo(repo.root, "--host", "mx1", name="single")
    assert sorted(os.listdir(single.path)) == [first, second, "last"]
    last = single.path / "last"
    assert stat.S_ISDIR(os.lstat(last).st_mode)
    assert os.listdir(last) == ["data"]
    assert (last / "data" / "f.txt").read_bytes() == b"two, newer\n"
    assert (single.path / first / "data" / "f.txt").read_bytes() == b"one\n"
    for absent in ("mx1", "mx2", other):
        assert not os.path.lexists(single.path / absent), absent

    links = mount_repo(repo.root, "--last-symlink", name="links")
    assert sorted(os.listdir(links.path)) == ["mx1", "mx2"]
    for host, newest in (("mx1", second), ("mx2", other)):
        link = links.path / host / "last"
        assert stat.S_ISLNK(os.lstat(link).st_mode)
        assert os.readlink(link) == newest
        assert os.path.realpath(link) == str(links.path / host / newest)
        assert os.stat(link).st_ino == os.stat(links.path / host / newest).st_ino
        assert os.listdir(link) == ["data"]
    assert (links.path / "mx1" / "last" / "data" / "f.txt").read_bytes() == b"two, newer\n"
    assert (links.path / "mx2" / "last" / "data" / "f.txt").read_bytes() == b"one\n"

    both = mount_repo(repo.root, "--host", "mx1", "--last-symlink", name="both")
    assert sorted(os.listdir(both.path)) == [first, second, "last"]
    assert os.readlink(both.path / "last") == second
    assert (both.path / "last" / "data" / "f.txt").read_bytes() == b"two, newer\n"


# -- 8. daemon mode and its errors ------------------------------------------------


def test_daemon_mount_answers_at_once_and_umount_ends_it(
        repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(b"served by a daemon\n")
    _backup(repo.root, f"data={src}")
    mp, pid_file = tmp_path / "mp", tmp_path / "mount.pid"
    mp.mkdir()
    try:
        pid = _mount_daemon(repo.root, mp, pid_file)
        # No waiting: the command returned, so the mount answers.
        assert os.listdir(mp) == ["mx1"]
        assert os.path.ismount(mp)
        assert (mp / "mx1" / "last" / "data" / "f.txt").read_bytes() == b"served by a daemon\n"
        assert not _pid_gone(pid)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            assert b"mount" in f.read().split(b"\0")
        proc = histfs("umount", str(mp), check=0, timeout=30)
        assert proc.stderr == ""
        assert _wait_gone(pid, 5), "the daemon did not exit after umount"
        assert not _in_mountinfo(mp)
        assert os.listdir(mp) == []
    finally:
        _cleanup_daemon(mp, pid_file)


def test_mount_errors_are_one_line_with_exit_status_2(
        repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(b"x\n")
    _backup(repo.root, f"data={src}")

    missing = tmp_path / "no-such-dir"
    line = _error_line(histfs("mount", "--repo", str(repo.root), str(missing)))
    assert str(missing) in line and "does not exist" in line, line
    assert not missing.exists()

    full = tmp_path / "full"
    full.mkdir()
    (full / "something").write_bytes(b"")
    line = _error_line(histfs("mount", "--repo", str(repo.root), str(full)))
    assert str(full) in line and "not empty" in line, line
    assert not _in_mountinfo(full)

    empty = tmp_path / "empty"
    empty.mkdir()
    no_repo = tmp_path / "no-repo"
    line = _error_line(histfs("mount", "--repo", str(no_repo), str(empty)))
    assert str(no_repo) in line and "no histfs repository" in line, line
    assert not _in_mountinfo(empty)

    mp, pid_file = tmp_path / "mp", tmp_path / "mount.pid"
    mp.mkdir()
    try:
        pid = _mount_daemon(repo.root, mp, pid_file)
        second_pid = tmp_path / "second.pid"
        line = _error_line(histfs("mount", "--repo", str(repo.root), str(mp),
                                  "--pid-file", str(second_pid)))
        assert str(mp) in line and "mounted" in line, line
        assert not second_pid.exists()
        # The first mount is unharmed.
        assert os.listdir(mp) == ["mx1"]
        assert not _pid_gone(pid)
    finally:
        _cleanup_daemon(mp, pid_file)
    assert not _in_mountinfo(mp)


# -- 9. a killed daemon -----------------------------------------------------


def test_killed_daemon_leaves_a_dead_mount_point(repo: Repository, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(b"x\n")
    _backup(repo.root, f"data={src}")
    mp, pid_file = tmp_path / "mp", tmp_path / "mount.pid"
    mp.mkdir()
    try:
        pid = _mount_daemon(repo.root, mp, pid_file)
        assert os.listdir(mp) == ["mx1"]
        os.kill(pid, signal.SIGKILL)
        assert _wait_gone(pid, 5)
        with pytest.raises(OSError) as info:
            os.listdir(mp)
        assert info.value.errno == errno.ENOTCONN

        def stat_errno() -> int | None:
            try:
                os.stat(mp)
            except OSError as exc:
                return exc.errno
            return None  # the kernel may answer from its 1 s attribute cache

        _wait_for(lambda: stat_errno() is not None, "os.stat to fail", timeout=5)
        assert stat_errno() == errno.ENOTCONN
        # Still mounted: not silently turned into an empty directory.
        assert _in_mountinfo(mp)
        # Mounting again over it is refused, naming the dead mount.
        line = _error_line(histfs("mount", "--repo", str(repo.root), str(mp)))
        assert str(mp) in line and "dead mount" in line, line

        _fusermount_u(mp)
        assert not _in_mountinfo(mp)
        assert stat.S_ISDIR(os.stat(mp).st_mode)
        assert os.listdir(mp) == []
    finally:
        _cleanup_daemon(mp, pid_file)


# -- 10. a big directory, and resuming a listing --------------------------------


class _Dirent(ctypes.Structure):
    """glibc's struct dirent on 64-bit Linux."""

    _fields_ = (("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256))


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.opendir.argtypes = [ctypes.c_char_p]
    libc.opendir.restype = ctypes.c_void_p
    libc.readdir.argtypes = [ctypes.c_void_p]
    libc.readdir.restype = ctypes.POINTER(_Dirent)
    libc.telldir.argtypes = [ctypes.c_void_p]
    libc.telldir.restype = ctypes.c_long
    libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]
    libc.seekdir.restype = None
    libc.closedir.argtypes = [ctypes.c_void_p]
    libc.closedir.restype = ctypes.c_int
    return libc


def _read_names(libc: ctypes.CDLL, dirp: int, count: int | None) -> list[bytes]:
    """Up to `count` names (all if None) from readdir, skipping . and .."""
    names: list[bytes] = []
    while count is None or len(names) < count:
        ctypes.set_errno(0)
        ent = libc.readdir(dirp)
        if not ent:
            err = ctypes.get_errno()
            assert err == 0, os.strerror(err)
            break
        name = ent.contents.d_name
        if name not in (b".", b".."):
            names.append(name)
    return names


def test_big_directory_lists_completely_and_resumes_from_telldir(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    prefixes = (b"a", b"B", b"_", b"\xc3\xa9", b"Z", b"0", b"~", b"b.")
    names = [prefixes[i % len(prefixes)] + b"-%04d" % (2999 - i) + b"x" * (i % 5)
             for i in range(3000)]
    base = os.fsencode(src / "big")
    for n in names:
        os.close(os.open(base + b"/" + n, os.O_WRONLY | os.O_CREAT, 0o644))
    expected = sorted(names)  # bytewise
    assert expected != sorted(names, key=bytes.lower)  # the order is really bytewise
    snap = _backup(repo.root, f"data={src}")
    m = mount_repo(repo.root)
    libc = _libc()

    for big in (m.path / "mx1" / snap / "data" / "big", m.path / "mx1" / "last" / "data" / "big"):
        listed = os.listdir(os.fsencode(big))
        assert len(listed) == 3000
        assert listed == expected, str(big)

        dirp = libc.opendir(os.fsencode(big))
        assert dirp, os.strerror(ctypes.get_errno())
        try:
            head = _read_names(libc, dirp, 100)
            pos = libc.telldir(dirp)
            assert pos != -1
            middle = _read_names(libc, dirp, 50)
            libc.seekdir(dirp, pos)
            again = _read_names(libc, dirp, 50)
            rest = _read_names(libc, dirp, None)
        finally:
            assert libc.closedir(dirp) == 0
        assert head == expected[:100]
        assert middle == expected[100:150]
        assert again == middle
        assert head + again + rest == expected


# -- 11. extreme times and empty xattr values ---------------------------------


def test_times_before_1970_after_2038_and_empty_xattrs_are_exact(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    src = tmp_path / "src"
    (src / "old-dir").mkdir(parents=True)
    for name, ns in (("old", OLD_NS), ("future", FUTURE_NS)):
        (src / name).write_bytes(name.encode())
        os.utime(src / name, ns=(ns, ns))
    x = src / "xattrs"
    x.write_bytes(b"with xattrs")
    os.setxattr(x, "user.empty", b"")
    os.setxattr(x, "user.full", b"\x00value\xff")
    os.utime(src / "old-dir", ns=(OLD_NS, OLD_NS))
    for name, ns in (("old", OLD_NS), ("future", FUTURE_NS), ("old-dir", OLD_NS)):
        assert os.stat(src / name).st_mtime_ns == ns  # the source file system keeps them
    snap = _backup(repo.root, f"data={src}")
    m = mount_repo(repo.root)

    for base in (m.path / "mx1" / snap / "data", m.path / "mx1" / "last" / "data"):
        for name, ns in (("old", OLD_NS), ("future", FUTURE_NS), ("old-dir", OLD_NS)):
            st = os.stat(base / name)
            assert st.st_mtime_ns == ns, (str(base / name), st.st_mtime_ns, ns)
            assert st.st_ctime_ns == os.stat(src / name).st_ctime_ns
        assert (base / "old").read_bytes() == b"old"
        assert sorted(os.listxattr(base / "xattrs")) == ["user.empty", "user.full"]
        assert os.getxattr(base / "xattrs", "user.empty") == b""
        assert os.getxattr(base / "xattrs", "user.full") == b"\x00value\xff"
        with pytest.raises(OSError) as info:
            os.getxattr(base / "xattrs", "user.absent")
        assert info.value.errno == errno.ENODATA
        assert os.listxattr(base / "old") == []


# -- 12. a damaged pack ----------------------------------------------------------


def test_damaged_pack_fails_that_file_with_eio_and_logs_it(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount]) -> None:
    big_src, small_src = tmp_path / "big", tmp_path / "small"
    big_src.mkdir()
    small_src.mkdir()
    payload = os.urandom(9 * 1024 * 1024)  # incompressible, more than two 4 MiB chunks
    (big_src / "big.bin").write_bytes(payload)
    _backup(repo.root, f"big={big_src}")
    (small_src / "small.txt").write_bytes(b"small and intact\n")
    snap = _backup(repo.root, f"big={big_src}", f"small={small_src}")

    with repo.open_snapshot(SnapshotRef("mx1", snap)) as reader:
        big = reader.resolve("big/big.bin")
        extents = reader.extents(big)
        assert len(extents) >= 3 and all(e.chunk_id is not None for e in extents)
        locations = [reader.location(e.chunk_id) for e in extents if e.chunk_id is not None]
        small = reader.resolve("small/small.txt")
        assert isinstance(small.data, bytes)  # one chunk
        small_location = reader.location(ChunkId(small.data))
    big_packs = {loc.pack_id for loc in locations}
    assert len(big_packs) == 1 and small_location.pack_id not in big_packs

    # Flip one byte in the middle of the payload of the middle chunk.
    victim = len(extents) // 2
    extent, loc = extents[victim], locations[victim]
    payload_len = loc.stored_size - BLOB_HEADER.size
    assert payload_len == extent.length  # stored raw: a byte of the pack is a byte of the file
    where = loc.offset + BLOB_HEADER.size + payload_len // 2
    pack = repo.root / pack_relpath(loc.pack_id)
    pack.chmod(0o644)
    with open(pack, "r+b") as f:
        f.seek(where)
        byte = f.read(1)
        f.seek(where)
        f.write(bytes([byte[0] ^ 0xFF]))

    m = mount_repo(repo.root)
    dated = m.path / "mx1" / snap
    for path in (dated / "big" / "big.bin", m.path / "mx1" / "last" / "big" / "big.bin"):
        with open(path, "rb") as f:
            # Undamaged chunks still read, exactly.
            assert os.pread(f.fileno(), 4096, 0) == payload[:4096]
            with pytest.raises(OSError) as info:
                os.pread(f.fileno(), 4096, extent.offset + extent.length // 2)
            assert info.value.errno == errno.EIO
        with pytest.raises(OSError) as info:
            path.read_bytes()
        assert info.value.errno == errno.EIO
    # The other pack's file reads, and the mount still answers.
    assert (dated / "small" / "small.txt").read_bytes() == b"small and intact\n"
    assert (m.path / "mx1" / "last" / "small" / "small.txt").read_bytes() == \
        b"small and intact\n"
    assert sorted(os.listdir(m.path / "mx1"))[-1] == "last"
    assert os.stat(dated / "big" / "big.bin").st_size == len(payload)
    # The log names the snapshot and the path.
    _wait_for(lambda: f"mx1/{snap}/big/big.bin" in m.log.read_text(), "the error in the log",
              timeout=5)



@pytest.mark.parametrize("change", ["entries added before", "entries removed before"])
def test_listing_under_last_survives_a_new_snapshot_midway(
        repo: Repository, tmp_path: Path, mount_repo: Callable[..., Mount],
        change: str) -> None:
    """A copy of last/ that runs while the nightly backup finishes: names
    present in both snapshots are listed exactly once (new ones may or may
    not be), as `Vfs.readdir` promises ("offsets stay meaningful")."""
    src = tmp_path / "src"
    (src / "big").mkdir(parents=True)
    (src / "0-first").mkdir()
    old = [b"m-%04d" % i for i in range(2000)]
    for n in old:
        os.close(os.open(os.fsencode(src / "big") + b"/" + n, os.O_WRONLY | os.O_CREAT, 0o644))
    if change == "entries removed before":
        for i in range(20):
            (src / "0-first" / f"f{i}").write_bytes(b"")
    _backup(repo.root, f"data={src}")
    m = mount_repo(repo.root)
    big = m.path / "mx1" / "last" / "data" / "big"
    first = m.path / "mx1" / "last" / "data" / "0-first"
    libc = _libc()
    dirp = libc.opendir(os.fsencode(big))
    assert dirp, os.strerror(ctypes.get_errno())
    try:
        head = _read_names(libc, dirp, 100)
        # The new snapshot has more (or fewer) entries before big/, so every
        # entry id of big/'s children moves.
        if change == "entries added before":
            for i in range(20):
                (src / "0-first" / f"f{i}").write_bytes(b"")
            (src / "big" / "a-new").write_bytes(b"")
        else:
            for i in range(20):
                (src / "0-first" / f"f{i}").unlink()
        _backup(repo.root, f"data={src}")
        want = 20 if change == "entries added before" else 0
        _wait_for(lambda: len(os.listdir(first)) == want, "the new snapshot under last/")
        rest = _read_names(libc, dirp, None)
    finally:
        assert libc.closedir(dirp) == 0
    listed = head + rest
    assert set(listed) <= {*old, b"a-new"}
    seen = [n for n in listed if n != b"a-new"]
    assert len(seen) == len(set(seen)), f"{len(seen) - len(set(seen))} names listed twice"
    assert sorted(seen) == old, f"{len(set(old) - set(seen))} names missing"


# -- 13. a full local cache ----------------------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted at teardown."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(where)],
                   check=True, capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False, capture_output=True)
        if _in_mountinfo(where):
            subprocess.run(["umount", "-l", str(where)], check=False, capture_output=True)


@pytest.mark.timeout(180)
def test_full_cache_fails_only_the_snapshot_whose_index_does_not_fit(
        tmp_path: Path, small_tmpfs: Path, mount_repo: Callable[..., Mount],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HISTFS_PASSPHRASE", "a full cache")
    repo = tmp_path / "repo"
    histfs("init", str(repo), check=0)  # encrypted: indexes are read from local copies
    many, few = tmp_path / "many", tmp_path / "few"
    many.mkdir()
    few.mkdir()
    for i in range(5000):
        (many / f"message-{i:05d}-with-a-long-name").write_bytes(b"%d\n" % i)
    (few / "small.txt").write_bytes(b"small\n")
    big = _backup(repo, f"data={many}", host="big")
    small = _backup(repo, f"data={few}", host="small")
    # Its LMDB file, as the backup left it in its cache (stored compressed).
    (copy,) = (tmp_path / "cache").rglob(f"indexes/big/{big}.*")
    assert copy.stat().st_size > 1024 * 1024

    monkeypatch.setenv("HISTFS_CACHE_DIR", str(small_tmpfs))
    m = mount_repo(repo)
    assert sorted(os.listdir(m.path)) == ["big", "small"]
    assert sorted(os.listdir(m.path / "big")) == [big, "last"]
    assert os.stat(m.path / "big" / "last").st_mode == stat.S_IFDIR | 0o555
    for _ in range(2):
        for top in (m.path / "big" / big, m.path / "big" / "last"):
            with pytest.raises(OSError) as info:
                os.listdir(top / "data")
            assert info.value.errno == errno.EIO
        # The other snapshot, before and after, and listings: unaffected.
        for top in (m.path / "small" / small, m.path / "small" / "last"):
            assert (top / "data" / "small.txt").read_bytes() == b"small\n"
        assert sorted(os.listdir(m.path / "small")) == [small, "last"]
        time.sleep(2.1)  # and again once the mount tries anew
    assert m.proc is not None and m.proc.poll() is None
    log = m.log.read_text()
    assert f"big/{big}: " in log and "is full" in log, log
    assert "Traceback" not in log, log
    # What a failed copy wrote is gone: nothing but the one copy that fits.
    copies = [p.name for p in small_tmpfs.rglob("*") if p.is_file() and "indexes" in p.parts]
    assert copies == [p.name for p in small_tmpfs.rglob(f"{small}.*")], copies
