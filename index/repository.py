"""A repository: its layout, its config, its snapshots and its local cache.

    REPO/
      config                  format version, ids, chunker parameters (JSON)
      README                  a note for people who find the directory
      packs/00 … packs/ff/    pack files, named by their BLAKE3 hash
      snapshots/<host>/       one immutable LMDB index per snapshot
      locks/                  lock files, the only files ever rewritten
      tmp/                    files being written, renamed into place when done
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from index.chunkstore import ChunkStore
from index.config import CONFIG_FILE, RepoConfig
from index.errors import ConfigError, RepositoryExists, RepositoryNotFound, SnapshotNotFound
from index.lock import LOCKS_DIR, RepositoryLock
from index.names import LAST, check_host, is_snapshot_name, snapshot_sort_key, snapshot_time
from index.pack import PACKS_DIR
from index.snapshot_format import SNAPSHOT_SUFFIX, SNAPSHOTS_DIR, snapshot_relpath
from index.snapshot_reader import SnapshotReader
from index.storage import TMP_DIR, LocalStorage, fsync_dir

README_TEXT = b"""This directory is a histfs backup repository.

Do not change or delete files in it by hand: use the histfs command
(histfs snapshots, histfs mount, histfs restore, histfs prune).
"""


@dataclass(frozen=True, slots=True, order=True)
class SnapshotRef:
    """The name of a published snapshot."""

    host: str
    name: str

    @property
    def relpath(self) -> str:
        """Where its index file is."""
        return snapshot_relpath(self.host, self.name)


NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ceph", "glusterfs", "fuse.sshfs",
    "fuse.glusterfs", "9p", "afs", "lustre", "gpfs", "fuse.s3fs", "fuse.rclone",
})


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


def default_cache_root() -> Path:
    """Where local caches live: $HISTFS_CACHE_DIR or the XDG cache directory."""
    env = os.environ.get("HISTFS_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "histfs"


class Repository:
    """An opened repository."""

    def __init__(self, root: Path, config: RepoConfig) -> None:
        self.root = root
        self.storage = LocalStorage(root)
        self.config = config
        self._chunk_store: ChunkStore | None = None

    @classmethod
    def init(cls, root: Path) -> Repository:
        """Create a new, empty repository at `root`."""
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise RepositoryExists(f"{root} exists and is not an empty directory")
        root.mkdir(parents=True, exist_ok=True)
        for sub in (TMP_DIR, LOCKS_DIR, SNAPSHOTS_DIR, PACKS_DIR):
            (root / sub).mkdir(exist_ok=True)
        for i in range(256):
            (root / PACKS_DIR / f"{i:02x}").mkdir(exist_ok=True)
        fsync_dir(root / PACKS_DIR)
        fsync_dir(root)
        config = RepoConfig.new()
        storage = LocalStorage(root)
        storage.write_atomic("README", README_TEXT)
        # The config comes last: a directory without it is not a repository.
        storage.write_atomic(CONFIG_FILE, config.to_json())
        return cls(root, config)

    @classmethod
    def open(cls, root: Path) -> Repository:
        """Open the repository at `root`; raises RepositoryNotFound."""
        try:
            data = (root / CONFIG_FILE).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            raise RepositoryNotFound(f"no histfs repository at {root}") from None
        except PermissionError:
            raise RepositoryNotFound(
                f"cannot read repository at {root}: permission denied"
            ) from None
        return cls(root, RepoConfig.from_json(data))

    @property
    def chunk_store(self) -> ChunkStore:
        """The shared reader of chunks."""
        if self._chunk_store is None:
            self._chunk_store = ChunkStore(self.storage, self.config.chunk_id_key)
        return self._chunk_store

    def cache_dir(self) -> Path:
        """This repository's local cache directory (created on demand).

        LMDB files are written there, so it must not be on a network file
        system: that is refused with a clear message.
        """
        path = default_cache_root() / self.config.repo_id
        path.mkdir(parents=True, exist_ok=True)
        fstype = filesystem_type(path)
        if fstype in NETWORK_FILESYSTEMS:
            raise ConfigError(
                f"the local cache {path} is on a network file system ({fstype}); "
                "set HISTFS_CACHE_DIR to a directory on a local disk"
            )
        return path

    def hosts(self) -> list[str]:
        """Hosts that have at least one snapshot directory."""
        return sorted(self.storage.listdir(SNAPSHOTS_DIR))

    def snapshots(self, host: str | None = None) -> list[SnapshotRef]:
        """Published snapshots, oldest first (per host, hosts sorted)."""
        hosts = [check_host(host)] if host else self.hosts()
        refs: list[SnapshotRef] = []
        for h in hosts:
            for fname in self.storage.listdir(f"{SNAPSHOTS_DIR}/{h}"):
                if fname.endswith(SNAPSHOT_SUFFIX):
                    name = fname[: -len(SNAPSHOT_SUFFIX)]
                    if is_snapshot_name(name):
                        refs.append(SnapshotRef(h, name))
        return sorted(refs, key=lambda r: (r.host, snapshot_sort_key(r.name)))

    def latest(self, host: str) -> SnapshotRef | None:
        """The newest snapshot of `host`, if any."""
        refs = self.snapshots(host)
        return refs[-1] if refs else None

    def select(self, host: str | None, name: str | None = None,
               at: datetime | None = None) -> SnapshotRef:
        """The snapshot a user means: by name (or "last"), or the newest
        taken at or before `at`. `host` may be None when only one host
        fits."""
        refs = self.snapshots(host)
        if name is not None and name != LAST:
            refs = [r for r in refs if r.name == name]
        if at is not None:
            refs = [r for r in refs if snapshot_time(r.name) <= at]
        hosts = {r.host for r in refs}
        if not refs:
            what = f"of host {host}" if host else "in the repository"
            if name not in (None, LAST):
                raise SnapshotNotFound(f"no snapshot {name} {what}")
            if at is not None:
                raise SnapshotNotFound(f"no snapshot {what} taken at or before "
                                       f"{at.strftime('%Y-%m-%d %H:%M:%S UTC')}")
            raise SnapshotNotFound(f"no snapshot {what}")
        if len(hosts) > 1:
            raise ConfigError(f"snapshots of several hosts match ({', '.join(sorted(hosts))}): "
                              "use --host")
        return refs[-1]

    def open_snapshot(self, ref: SnapshotRef) -> SnapshotReader:
        """A reader for a published snapshot."""
        path = self.storage.path(ref.relpath)
        if not path.exists():
            raise SnapshotNotFound(f"no snapshot {ref.name} of host {ref.host}")
        return SnapshotReader(path, self.chunk_store)

    def lock(self, name: str, purpose: str) -> RepositoryLock:
        """A lock on `name` (not yet acquired)."""
        return RepositoryLock(self.root / LOCKS_DIR, name, purpose)

    def close(self) -> None:
        """Release open pack files."""
        if self._chunk_store is not None:
            self._chunk_store.close()
