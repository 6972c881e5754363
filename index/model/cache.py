"""The local cache: every file histfs keeps on this machine about repositories.

    $HISTFS_CACHE_DIR (or $XDG_CACHE_HOME/histfs, ~/.cache/histfs)/
      s3-endpoints.json             the endpoint each bucket was created with
      spool/                        packs of buckets being read or written
      <repository id>/
        encryption                  the encryption mode last seen here
        last-check.json             the result of the last `histfs check`
        chunks-<instance>.lmdb      the deduplication cache of one location
        indexes/<host>/<name>.<identity>.idx   plain copies of snapshot indexes
        staging-<pid>-<hex>.lmdb    work files of running commands, named
        index-<pid>-<hex>.lmdb      by their process so that leftovers of a
        .check-<pack>, .publish-…   dead one can be told and removed

Nothing here is trusted over the repository: a copy is named by the stored
file's identity and made anew when that changes. The cache holds what a
repository keeps secret (decrypted indexes, file names), so all of it is
private (index/store/private.py). LMDB files are written here, so it may not be on
a network file system.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from index.errors import ConfigError
from index.format.snapshot_format import SNAPSHOT_SUFFIX
from index.store.private import FILE_MODE, private_dir, write_private
from index.store.storage import replacing

NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.sshfs",
    "fuse.glusterfs", "9p", "afs", "lustre", "gpfs", "fuse.s3fs", "fuse.rclone",
})

INDEX_CACHE_MB = 4096
"""Default bound of the local copies of snapshot indexes (HISTFS_INDEX_CACHE_MB)."""

WORK_KINDS = ("staging", "index")
"""Prefixes of the work files named `<kind>-<pid>-<hex>.lmdb`."""


def cache_root() -> Path:
    """Where local caches live: $HISTFS_CACHE_DIR or the XDG cache directory."""
    env = os.environ.get("HISTFS_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "histfs"


def filesystem_type(path: Path, mounts: str = "/proc/self/mounts") -> str:
    """The type (as in /proc/mounts) of the file system holding `path`."""
    real = os.path.realpath(path)
    best, fstype = "", "unknown"
    try:
        with open(mounts) as f:
            for line in f:
                fields = line.split()
                if len(fields) < 3:
                    continue
                mnt = fields[1].replace("\\040", " ")
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, fstype = mnt, fields[2]
    except OSError:
        pass
    return fstype


# -- what belongs to no one repository -------------------------------------------

def _endpoints_file() -> Path:
    return cache_root() / "s3-endpoints.json"


def remembered_endpoint(url: str) -> str | None:
    """The endpoint the bucket `url` was created or last opened with here."""
    with contextlib.suppress(FileNotFoundError, ValueError, TypeError, AttributeError):
        endpoint = json.loads(_endpoints_file().read_text()).get(url)
        return endpoint if isinstance(endpoint, str) else None
    return None


def remember_endpoint(url: str, endpoint: str) -> None:
    """Remember the endpoint of the bucket `url` for later commands."""
    path = _endpoints_file()
    private_dir(path.parent, own=False)
    known: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError, ValueError):
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            known = loaded
    if known.get(url) == endpoint:
        return
    known[url] = endpoint
    write_private(path, (json.dumps(known, indent=1) + "\n").encode())


def spool_dir() -> Path:
    """Where packs of buckets are spooled while they are read or written."""
    return private_dir(private_dir(cache_root(), own=False) / "spool")


# -- one repository's cache ---------------------------------------------------------

class LocalCache:
    """The cache directory of one repository (by its id), made and checked
    once, on first use."""

    def __init__(self, repo_id: str) -> None:
        self.repo_id = repo_id
        self._path: Path | None = None

    @property
    def path(self) -> Path:
        """The directory (created 0700 on first use). One on a network file
        system is refused with a clear message."""
        if self._path is None:
            path = private_dir(private_dir(cache_root(), own=False) / self.repo_id)
            fstype = filesystem_type(path)
            if fstype in NETWORK_FILESYSTEMS:
                raise ConfigError(
                    f"the local cache {path} is on a network file system ({fstype}); "
                    "set HISTFS_CACHE_DIR to a directory on a local disk")
            self._path = path
        return self._path

    @property
    def where(self) -> Path:
        """The directory's name, without making it (for messages)."""
        return self._path or cache_root() / self.repo_id

    # The encryption memory: a repository seen encrypted here that now says
    # it is not was tampered with (Repository.open refuses it).

    def remembered_encryption(self) -> str | None:
        """The encryption mode this machine last saw the repository with."""
        try:
            return (self.path / "encryption").read_text()
        except FileNotFoundError:
            return None

    def remember_encryption(self, mode: str) -> None:
        """Record the repository's encryption mode."""
        if self.remembered_encryption() != mode:
            write_private(self.path / "encryption", mode.encode())

    # Named files.

    @property
    def last_check_file(self) -> Path:
        """The result of the last `histfs check` (index/tools/check.py)."""
        return self.path / "last-check.json"

    def chunk_index_file(self, instance: str) -> Path:
        """The deduplication cache of one repository location."""
        return self.path / f"chunks-{instance}.lmdb"

    def work_file(self, kind: str) -> Path:
        """A new work file `kind` (one of WORK_KINDS) of this process; what a
        process that died left behind goes with `remove_stale_work_files`."""
        assert kind in WORK_KINDS, kind
        return self.path / f"{kind}-{os.getpid()}-{secrets.token_hex(4)}.lmdb"

    def pack_copy(self, pack_hex: str) -> Path:
        """Where `check` keeps a pack it reads whole."""
        return self.path / f".check-{pack_hex}"

    def remove_stale_work_files(self) -> int:
        """Delete the work files of processes that died; how many went."""
        removed = 0
        for path in self.path.glob("*-*-*.lmdb*"):
            prefix, _, rest = path.name.partition("-")
            pid = rest.partition("-")[0]
            if prefix not in WORK_KINDS or not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    # Plain copies of snapshot indexes, bounded by HISTFS_INDEX_CACHE_MB.

    @property
    def indexes(self) -> Path:
        """The directory of plain index copies."""
        return private_dir(self.path / "indexes")

    @property
    def indexes_where(self) -> Path:
        """Its name, without making it (for messages)."""
        return self.where / "indexes"

    def index_copy(self, relpath: str, identity: str) -> Path:
        """The copy of the stored index `relpath` whose identity is `identity`."""
        stem = relpath.rsplit("/", 2)
        where = private_dir(self.indexes / stem[-2])
        name = stem[-1].removesuffix(SNAPSHOT_SUFFIX)
        return where / f"{name}.{identity}{SNAPSHOT_SUFFIX}"

    def existing_copy(self, relpath: str, identity: str) -> Path | None:
        """The copy `index_copy` names, if it exists; makes nothing and
        touches nothing (for a run that writes nothing)."""
        stem = relpath.rsplit("/", 2)
        name = stem[-1].removesuffix(SNAPSHOT_SUFFIX)
        copy = self.where / "indexes" / stem[-2] / f"{name}.{identity}{SNAPSHOT_SUFFIX}"
        return copy if copy.is_file() else None

    def publish_work(self) -> Path:
        """A new name for a plain index being written before it is sealed."""
        return self.indexes / f".publish-{secrets.token_hex(8)}"

    @staticmethod
    def use_copy(copy: Path) -> bool:
        """Whether `copy` exists; if so it becomes the most recently used."""
        try:
            os.utime(copy)
        except FileNotFoundError:
            return False
        return True

    @contextlib.contextmanager
    def writing_copy(self, target: Path) -> Iterator[Path]:
        """A temporary path beside `target`, renamed to it if the block ends
        without an error; other copies of the same index then go."""
        with replacing(target, FILE_MODE) as tmp:
            yield tmp
        self.keep_copy(target)

    def keep_copy(self, target: Path) -> None:
        """Delete copies of earlier sealings of the index `target` is a copy
        of (an open reader keeps its copy until it closes it), then the least
        recently used copies beyond the cache's size."""
        name = target.name.split(".", 1)[0]
        for other in target.parent.glob(f"{name}.*{SNAPSHOT_SUFFIX}"):
            if other != target:
                with contextlib.suppress(FileNotFoundError):
                    other.unlink()
        _trim_index_copies(self.indexes, keep=target)


def _trim_index_copies(indexes: Path, keep: Path) -> None:
    """Delete the least recently used index copies (by mtime, which
    `use_copy` sets) until they fit HISTFS_INDEX_CACHE_MB. A reader that has a
    copy open keeps reading it: unlinking frees its space only when it is
    closed."""
    try:
        limit = int(os.environ.get("HISTFS_INDEX_CACHE_MB", INDEX_CACHE_MB)) * 1024 * 1024
    except ValueError:
        limit = INDEX_CACHE_MB * 1024 * 1024
    copies = []
    for path in indexes.glob(f"*/*{SNAPSHOT_SUFFIX}"):
        if path.name.startswith("."):
            continue
        with contextlib.suppress(FileNotFoundError):
            st = path.stat()
            copies.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in copies)
    for _, size, path in sorted(copies, key=lambda c: c[0]):
        if total <= limit:
            break
        if path != keep:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size
