"""Source trees for tests, and comparing a tree with a snapshot."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import blake3

from index.format.types import Entry, Kind
from index.model.snapshot_reader import SnapshotReader

GIB = 1024**3

# (mtime_ns) values that break naive code: before 1970, after 2038, odd ns.
OLD_NS = -1_234_567_890_123_456_789
FUTURE_NS = 4_102_444_800_987_654_321
ODD_NS = 1_700_000_000_000_000_001


def make_awkward_tree(root: Path, huge: bool = True) -> None:
    """Every kind of file and metadata a backup must keep (`huge`: with a
    5 GiB sparse file, which tools copying out of a mount read whole)."""
    root.mkdir(parents=True)
    r = os.fsencode(root)
    (root / "plain.txt").write_bytes(b"hello\n")
    (root / "empty").write_bytes(b"")
    os.mkdir(r + b"/dir with spaces")
    os.mkdir(r + b"/empty-dir")
    # Names that are not UTF-8, hold a newline, are 255 bytes long.
    (Path(os.fsdecode(r + b"/latin1-\xe9t\xe9"))).write_bytes(b"latin-1 name\n")
    Path(os.fsdecode(r + b"/new\nline")).write_bytes(b"newline in name\n")
    Path(os.fsdecode(r + b"/" + b"n" * 255)).write_bytes(b"long name\n")
    Path(os.fsdecode(r + b"/dir with spaces/\xff\xfe")).write_bytes(b"\x00" * 100)
    # Modes with setuid, setgid and sticky bits; numeric owners nobody has.
    for name, mode in (("setuid", 0o4755), ("setgid", 0o2750), ("private", 0o600)):
        p = root / name
        p.write_bytes(name.encode() * 10)
        os.chmod(p, mode)
    os.mkdir(root / "sticky")
    os.chmod(root / "sticky", 0o1777)
    os.chown(root / "private", 12345, 54321)
    # Times before 1970, after 2038, with odd nanoseconds.
    for name, ns in (("old", OLD_NS), ("future", FUTURE_NS), ("odd", ODD_NS)):
        p = root / name
        p.write_bytes(name.encode())
        os.utime(p, ns=(ns, ns))
    # Symlinks: relative, absolute, dangling, non-UTF-8 target.
    os.symlink("plain.txt", root / "link-rel")
    os.symlink("/etc/hostname", root / "link-abs")
    os.symlink("does/not/exist", root / "link-dangling")
    os.symlink(b"\xe9\xff-target", r + b"/link-bytes")
    # Hard links, one in another directory.
    (root / "hard-a").write_bytes(b"shared content\n" * 1000)
    os.link(root / "hard-a", root / "hard-b")
    os.link(root / "hard-a", root / "dir with spaces" / "hard-c")
    # Special files.
    os.mkfifo(root / "fifo")
    os.mknod(root / "chardev", 0o620 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "blockdev", 0o660 | stat.S_IFBLK, os.makedev(7, 0))
    # Extended attributes (one empty) and POSIX ACLs.
    x = root / "xattrs"
    x.write_bytes(b"with xattrs")
    os.setxattr(x, "user.mail.flags", b"\\Seen \\Answered")
    os.setxattr(x, "user.empty", b"")
    os.setxattr(x, "user.binary", bytes(range(256)))
    acl = root / "acl"
    acl.write_bytes(b"with an ACL")
    subprocess.run(["setfacl", "-m", "u:12345:rw,g:54321:r", str(acl)], check=True)
    subprocess.run(["setfacl", "-d", "-m", "u:12345:rwx", str(root / "sticky")], check=True)
    # Sparse: a hole in the middle, and a file over 4 GiB that is mostly hole.
    with open(root / "sparse", "wb") as f:
        f.write(os.urandom(300_000))
        f.seek(8 * 1024 * 1024)
        f.write(b"after the hole")
    if huge:
        with open(root / "huge", "wb") as f:
            f.write(b"start")
            f.seek(5 * GIB)
            f.write(os.urandom(1_000_000))
            f.truncate(5 * GIB + 2_000_000)
    # A file large enough for several content-defined chunks.
    (root / "large.bin").write_bytes(os.urandom(9 * 1024 * 1024))
    # Directory metadata too.
    os.chmod(root / "empty-dir", 0o700)
    os.utime(root / "empty-dir", ns=(ODD_NS, ODD_NS))


def _xattrs(path: bytes) -> tuple[tuple[bytes, bytes], ...]:
    names = sorted(os.listxattr(path, follow_symlinks=False))
    return tuple(
        (os.fsencode(n), os.getxattr(path, n, follow_symlinks=False)) for n in names
    )


def _file_digest(path: bytes) -> str:
    """Hash of a file's content; holes are hashed as zeros without reading
    them (reading 5 GiB of hole from ext4 takes many seconds)."""
    h = blake3.blake3()
    zeros = bytes(16 << 20)
    with open(path, "rb") as f:
        fd = f.fileno()
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                data = size
            while pos < data:
                n = min(len(zeros), data - pos)
                h.update(zeros[:n])
                pos += n
            if pos >= size:
                break
            end = os.lseek(fd, pos, os.SEEK_HOLE)
            while pos < end:
                block = os.pread(fd, min(16 << 20, end - pos), pos)
                assert block
                h.update(block)
                pos += len(block)
    return h.hexdigest()


def _snapshot_digest(snap: SnapshotReader, entry: Entry) -> str:
    h = blake3.blake3()
    pos = 0
    while pos < entry.size:
        block = snap.read(entry, pos, 16 << 20)
        assert block, f"short read at {pos} of {entry.size}"
        h.update(block)
        pos += len(block)
    return h.hexdigest()


def without_ctime(state: dict[bytes, tuple[object, ...]]) -> dict[bytes, tuple[object, ...]]:
    """`source_state` without element 6 (ctime), which no restore can set."""
    return {path: values[:6] + values[7:] for path, values in state.items()}


def source_state(root: Path) -> dict[bytes, tuple[object, ...]]:
    """Relative path -> everything a snapshot must reproduce (not atime)."""
    state: dict[bytes, tuple[object, ...]] = {}
    base = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(base):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, base)
            if stat.S_ISREG(st.st_mode):
                content: object = _file_digest(p)
            elif stat.S_ISLNK(st.st_mode):
                content = os.readlink(p)
            else:
                content = None
            size = st.st_size if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode) else 0
            rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else 0
            state[rel] = (stat.S_IFMT(st.st_mode), st.st_mode & 0o7777, st.st_uid, st.st_gid,
                          size, st.st_mtime_ns, st.st_ctime_ns, rdev, _xattrs(p), content)
    return state


_FMT = {Kind.REGULAR: stat.S_IFREG, Kind.DIRECTORY: stat.S_IFDIR, Kind.SYMLINK: stat.S_IFLNK,
        Kind.FIFO: stat.S_IFIFO, Kind.CHAR_DEVICE: stat.S_IFCHR, Kind.BLOCK_DEVICE: stat.S_IFBLK}


def snapshot_state(snap: SnapshotReader, part: str) -> dict[bytes, tuple[object, ...]]:
    """The same view as `source_state`, read back through the index."""
    part_entry = snap.resolve(part)
    state: dict[bytes, tuple[object, ...]] = {}
    for rel, e in snap.walk(part_entry.entry_id):
        if e.kind == Kind.REGULAR:
            content: object = _snapshot_digest(snap, e)
        elif e.kind == Kind.SYMLINK:
            content = e.data
        else:
            content = None
        state[rel] = (_FMT[e.kind], e.mode, e.uid, e.gid, e.size, e.mtime_ns, e.ctime_ns,
                      e.rdev, e.xattrs, content)
    return state
