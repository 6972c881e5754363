"""A repository: its layout, its config, its snapshots and its local cache.

    REPO/
      config                  format version, ids, chunker parameters (JSON)
      key                     encrypted repositories: the key, wrapped by a passphrase
      README                  a note for people who find the directory
      packs/00 … packs/ff/    pack files, named by their BLAKE3 hash
      snapshots/<host>/       one immutable LMDB index per snapshot
      locks/                  lock files, the only files ever rewritten
      tmp/                    files being written, renamed into place when done
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from index import keys
from index.blob import ENCRYPTION_AES_256_GCM
from index.blob import ENCRYPTION_NONE as ENCRYPTION_NONE_BLOB
from index.chunkstore import ChunkStore
from index.config import CONFIG_FILE, ENCRYPTION_NONE, ENCRYPTION_REPOKEY, RepoConfig
from index.crypto import SEALED_INDEX_MAGIC, Cipher
from index.errors import (
    CacheError,
    ConfigError,
    EncryptionMismatch,
    RepositoryCorrupt,
    RepositoryError,
    RepositoryExists,
    RepositoryNotFound,
    SnapshotDamaged,
    SnapshotNotFound,
)
from index.local_space import cache_full, is_full, reporting_full
from index.lock import LOCKS_DIR, RepositoryLock
from index.names import (
    LAST,
    check_host,
    is_host_name,
    is_snapshot_name,
    snapshot_sort_key,
    snapshot_time,
)
from index.pack import PACKS_DIR
from index.passphrase import passphrase_for
from index.private import FILE_MODE, open_private, private_dir, write_private
from index.snapshot_format import SNAPSHOT_SUFFIX, SNAPSHOTS_DIR, check_place, snapshot_relpath
from index.snapshot_reader import SnapshotReader
from index.storage import TMP_DIR, LocalStorage, Storage, replacing

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


ENCRYPTION_MODES = {"none": ENCRYPTION_NONE, "repokey": ENCRYPTION_REPOKEY}
"""`init --encryption` choices and the config value each one writes."""

# Secrets opened in this process, so that a forked mount daemon, or a
# command that opens the repository twice, does not run the KDF again.
_opened: dict[tuple[str, bytes, bytes], keys.RepoSecrets] = {}


def as_location(text: str | Path) -> Path | str:
    """A repository location from a user: a Path for a directory, the URL
    as given for a bucket (a Path would fold `s3://` into `s3:/`)."""
    return str(text) if is_remote(text) else Path(text)


def is_remote(location: str | Path) -> bool:
    """Whether `location` names a bucket (s3://...) rather than a directory."""
    return str(location).startswith("s3://")


def open_storage(location: str | Path, endpoint: str | None = None) -> Storage:
    """The storage backend of a repository location: a directory, or
    `s3://bucket/prefix` (endpoint from `endpoint`, HISTFS_S3_ENDPOINT, or
    the one remembered when the repository was created here)."""
    if not is_remote(location):
        return LocalStorage(Path(location))
    from index.s3 import S3Storage

    url = str(location).rstrip("/")
    endpoints = default_cache_root() / "s3-endpoints.json"
    if endpoint is None and not os.environ.get("HISTFS_S3_ENDPOINT"):
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError):
            endpoint = json.loads(endpoints.read_text()).get(url)
    elif endpoint is not None:
        private_dir(endpoints.parent, own=False)
        known: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            known = json.loads(endpoints.read_text())
        known[url] = endpoint
        write_private(endpoints, (json.dumps(known, indent=1) + "\n").encode())
    spool = private_dir(private_dir(default_cache_root(), own=False) / "spool")
    return S3Storage(url, endpoint, spool)


class Repository:
    """An opened repository."""

    def __init__(self, root: Path | str, config: RepoConfig,
                 repo_secrets: keys.RepoSecrets | None = None,
                 storage: Storage | None = None) -> None:
        self.root = root
        self.storage: Storage = storage or LocalStorage(Path(root))
        self.local_root: Path | None = None if is_remote(root) else Path(root)
        self.cipher: Cipher | None = None
        self._secrets = repo_secrets
        if repo_secrets is not None:
            config = config.with_secrets(repo_secrets.chunk_id_key, repo_secrets.chunker_seed)
            self.cipher = repo_secrets.cipher
        self.config = config
        self._chunk_store: ChunkStore | None = None

    @classmethod
    def init(cls, root: Path | str, encryption: str = "none",
             passphrase: Callable[[], str] | None = None,
             endpoint: str | None = None) -> Repository:
        """Create a new, empty repository at `root` (a directory or an S3
        location); `encryption` is "none" or "repokey" (then `passphrase`
        gives the new passphrase)."""
        mode = ENCRYPTION_MODES.get(encryption)
        if mode is None:
            raise ConfigError(f"unknown encryption {encryption!r}: use "
                              + " or ".join(ENCRYPTION_MODES))
        if is_remote(root):
            return cls._init_remote(str(root), mode, passphrase, endpoint)
        root = Path(root)
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise RepositoryExists(f"{root} exists and is not an empty directory")
        config = RepoConfig.new(mode)
        config_bytes = config.to_json()
        repo_secrets = None
        wrapped = b""
        if config.encrypted:
            repo_secrets = keys.RepoSecrets.new(config_bytes)
            # Asked before anything is created: a refusal leaves no directory.
            phrase = (passphrase or (lambda: _no_passphrase(root)))()
            wrapped = keys.wrap(repo_secrets, phrase, config.repo_id)
        root.mkdir(parents=True, exist_ok=True)
        storage = LocalStorage(root)
        _make_layout(storage)
        storage.write_atomic("README", README_TEXT)
        if wrapped:
            storage.write_atomic(keys.KEY_FILE, wrapped)
        # The config comes last: a directory without it is not a repository.
        storage.write_atomic(CONFIG_FILE, config_bytes)
        repo = cls(root, config, repo_secrets)
        repo._remember_encryption()
        return repo

    @classmethod
    def _init_remote(cls, url: str, mode: str, passphrase: Callable[[], str] | None,
                     endpoint: str | None) -> Repository:
        storage = open_storage(url, endpoint)
        if any(True for _ in storage.listdir("")):
            raise RepositoryExists(f"{url} is not empty")
        config = RepoConfig.new(mode)
        config_bytes = config.to_json()
        repo_secrets = None
        if config.encrypted:
            repo_secrets = keys.RepoSecrets.new(config_bytes)
            phrase = (passphrase or (lambda: _no_passphrase(url)))()
            storage.write_atomic(keys.KEY_FILE, keys.wrap(repo_secrets, phrase,
                                                          config.repo_id))
        storage.write_atomic("README", README_TEXT)
        # The config comes last, and only if no other init got there first.
        if not storage.create_exclusive(CONFIG_FILE, config_bytes):
            raise RepositoryExists(f"{url} was created by another process meanwhile")
        repo = cls(url, config, repo_secrets, storage)
        repo._remember_encryption()
        return repo

    @classmethod
    def open(cls, root: Path | str, passphrase: Callable[[], str] | None = None,
             endpoint: str | None = None) -> Repository:
        """Open the repository at `root` (a directory or an S3 location);
        raises RepositoryNotFound. The passphrase of an encrypted one comes
        from `passphrase`, else from the environment or the terminal
        (index/passphrase.py)."""
        storage = open_storage(root, endpoint)
        if not is_remote(root):
            root = Path(root)
        try:
            data = storage.read(CONFIG_FILE)
        except (FileNotFoundError, NotADirectoryError):
            raise RepositoryNotFound(f"no histfs repository at {root}") from None
        except PermissionError:
            raise RepositoryNotFound(
                f"cannot read repository at {root}: permission denied"
            ) from None
        config = RepoConfig.from_json(data)
        repo = cls(root, config, storage=storage)
        repo._check_encryption_kept()
        if not config.encrypted and storage.exists(keys.KEY_FILE):
            raise EncryptionMismatch(
                f"repository {root} has a key file, but its config says it is not encrypted: "
                "refusing (the config may have been replaced, and anything written now "
                "would be in the clear)")
        if config.encrypted:
            wrapped = repo._read_key()
            where = str(root) if is_remote(root) else str(Path(root).resolve())
            cache_key = (where, data, wrapped)
            repo_secrets = _opened.get(cache_key)
            if repo_secrets is None:
                phrase = passphrase() if passphrase else passphrase_for(str(root))
                repo_secrets = keys.unwrap(wrapped, phrase, config.repo_id)
                repo_secrets.check_config(data)
                _opened[cache_key] = repo_secrets
            repo = cls(root, config, repo_secrets, storage)
            repo._remember_encryption()
        return repo

    def root_stat(self) -> os.stat_result:
        """A stat of the repository's directory, or for a bucket of the local
        cache (the synthetic root of each snapshot takes a few fields)."""
        return os.stat(self.local_root if self.local_root is not None else self.cache_dir())

    def _read_key(self) -> bytes:
        try:
            return self.storage.read(keys.KEY_FILE)
        except FileNotFoundError:
            raise RepositoryError(
                f"the key file of the encrypted repository {self.root} is missing: put "
                "your exported copy back with `histfs key import`") from None

    # -- keys ----------------------------------------------------------------

    def export_key(self) -> bytes:
        """The key file's bytes (still wrapped by the passphrase)."""
        self._need_encryption()
        return self._read_key()

    def change_passphrase(self, new: str) -> None:
        """Wrap the key with a new passphrase; the data stays as it is."""
        self._need_encryption()
        assert self._secrets is not None
        self.storage.write_atomic(keys.KEY_FILE, keys.wrap(self._secrets, new,
                                                           self.config.repo_id))

    def _need_encryption(self) -> None:
        if not self.config.encrypted:
            raise ConfigError(f"repository {self.root} is not encrypted: it has no key")

    # -- the downgrade check ---------------------------------------------------

    def _remember_encryption(self) -> None:
        path = self.cache_dir() / "encryption"
        try:
            if path.read_text() == self.config.encryption:
                return
        except FileNotFoundError:
            pass
        write_private(path, self.config.encryption.encode())

    def _check_encryption_kept(self) -> None:
        """Refuse an unencrypted config where this machine saw an encrypted
        one: the repository's config and key were replaced, and a backup
        would otherwise write in the clear."""
        try:
            seen = (self.cache_dir() / "encryption").read_text()
        except FileNotFoundError:
            return
        if seen != ENCRYPTION_NONE and not self.config.encrypted:
            raise RepositoryError(
                f"repository {self.root} was encrypted when this machine last used it, "
                "and its config now says it is not: refusing (it may have been tampered "
                f"with; if it was recreated on purpose, delete {self.cache_dir()})")

    # -- snapshot index files ---------------------------------------------------

    def index_identity(self, relpath: str) -> str:
        """What identifies the stored index file at `relpath` now: it changes
        when the file is replaced (gc publishes relocated copies under the
        same name, index.snapshot_editor), whatever the storage and encryption."""
        size, identity, _ = self.storage.stat(relpath)
        return f"{identity}-{size:x}"

    def open_index(self, relpath: str, fresh: bool = False) -> tuple[int, Path, str]:
        """A descriptor of a local file of the snapshot index at `relpath`
        that LMDB can open (the caller closes it), the file's path for
        messages, and the stored file's identity (`index_identity`).

        That file is the repository's own when it is on a file system and
        not sealed (opened without following links); otherwise a copy in the
        local cache (opened and authenticated on the way), named by the
        stored file's identity, so that a file replaced or changed in place
        is fetched again. `fresh` makes the copy anew whatever the cache
        holds (for `check`). A copy that cannot be written (a full cache
        disk) raises `CacheError`.

        The identity is taken before the file is read: if it is replaced
        meanwhile, what was read is at least as new as the identity says, so
        a later comparison can only find it changed and read it again, never
        miss a replacement."""
        identity = self.index_identity(relpath)
        fd = self.storage.open_local(relpath) if self.cipher is None else None
        if fd is not None:
            assert self.local_root is not None
            path = self.local_root / relpath
        else:
            path = self._cached_index(relpath, fresh, identity)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if self.cipher is None:
            try:
                sealed = os.pread(fd, len(SEALED_INDEX_MAGIC), 0) == SEALED_INDEX_MAGIC
            except BaseException:
                os.close(fd)
                raise
            if sealed:
                os.close(fd)
                raise EncryptionMismatch(
                    f"snapshot index {relpath} is encrypted, but the config of {self.root} "
                    "says the repository is not: refusing (the config may have been replaced)")
        return fd, path, identity

    def _cached_index(self, relpath: str, fresh: bool, identity: str) -> Path:
        """The local cache's plain copy of the index at `relpath`."""
        try:
            plain = self._plain_path(relpath, identity)
            if not fresh and _used(plain):
                return plain
            with self._writing_plain(plain) as tmp:
                if self.cipher is None:
                    self.storage.download(relpath, tmp)
                    return plain
                spool = None
                sealed_fd = self.storage.open_local(relpath)
                try:
                    if sealed_fd is None:
                        spool = tmp.with_name(f"{tmp.name}.sealed")
                        self.storage.download(relpath, spool)
                        sealed_fd = os.open(spool, os.O_RDONLY | os.O_CLOEXEC)
                    with os.fdopen(sealed_fd, "rb") as sealed:
                        sealed_fd = None
                        with os.fdopen(open_private(tmp), "wb") as out:
                            self.cipher.open_index(sealed, out, relpath)
                finally:
                    if sealed_fd is not None:
                        os.close(sealed_fd)
                    if spool is not None:
                        with contextlib.suppress(FileNotFoundError):
                            spool.unlink()
        except FileNotFoundError:
            raise  # the stored file is gone: pruned meanwhile
        except OSError as exc:
            where = default_cache_root() / self.config.repo_id / "indexes"
            if is_full(exc, where):
                raise cache_full(where, f"the local copy of snapshot index {relpath}",
                                 None) from None
            raise CacheError(f"snapshot index {relpath}: cannot make its local copy in "
                             f"{where}: {exc.strerror or exc}") from None
        return plain

    def publish_index(self, relpath: str, write_plain: Callable[[int], None]) -> None:
        """Publish a snapshot index at `relpath` (tmp/, fsync, rename):
        `write_plain(fd)` writes the LMDB file to a descriptor. Sealed in an
        encrypted repository, whose local cache keeps the plain copy."""
        pending = self.storage.create()
        try:
            if self.cipher is None:
                write_plain(pending.file.fileno())
            else:
                work = private_dir(self.cache_dir() / "indexes") / \
                    f".publish-{secrets.token_hex(8)}"
                try:
                    with os.fdopen(open_private(work, os.O_RDWR | os.O_CREAT | os.O_EXCL),
                                   "w+b") as plain:
                        # A full cache is not a full repository.
                        with reporting_full(work.parent, "the new snapshot index's plain copy"):
                            write_plain(plain.fileno())
                        plain.seek(0)
                        self.cipher.seal_index(plain, pending.file, relpath)
                    pending.commit(relpath)
                    # Kept as the cache's copy: nothing to fetch and open later.
                    target = self._plain_path(relpath, self.index_identity(relpath))
                    os.replace(work, target)
                    self._forget_other_copies(target)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        work.unlink()
                return
            pending.commit(relpath)
        except BaseException:
            pending.abort()
            raise

    def _plain_path(self, relpath: str, identity: str) -> Path:
        stem = relpath.rsplit("/", 2)
        where = private_dir(private_dir(self.cache_dir() / "indexes") / stem[-2])
        name = stem[-1].removesuffix(SNAPSHOT_SUFFIX)
        return where / f"{name}.{identity}{SNAPSHOT_SUFFIX}"

    @contextlib.contextmanager
    def _writing_plain(self, target: Path) -> Iterator[Path]:
        """A temporary path beside `target`, renamed to it if the block ends
        without an error; other copies of the same index then go."""
        with replacing(target, FILE_MODE) as tmp:
            yield tmp
        self._forget_other_copies(target)

    @staticmethod
    def _forget_other_copies(target: Path) -> None:
        """Delete plain copies of earlier sealings of the same index (an
        open reader keeps its copy until it closes it), then the least
        recently used copies beyond the cache's size."""
        name = target.name.split(".", 1)[0]
        for other in target.parent.glob(f"{name}.*{SNAPSHOT_SUFFIX}"):
            if other != target:
                with contextlib.suppress(FileNotFoundError):
                    other.unlink()
        _trim_index_cache(target.parent.parent, keep=target)

    @property
    def blob_encryption(self) -> int:
        """The encryption byte of every blob of this repository (docs/FORMAT.md
        sections 5 and 14)."""
        return ENCRYPTION_AES_256_GCM if self.config.encrypted else ENCRYPTION_NONE_BLOB

    @property
    def chunk_store(self) -> ChunkStore:
        """The shared reader of chunks."""
        if self._chunk_store is None:
            self._chunk_store = ChunkStore(self.storage, self.config.chunk_id_key, self.cipher)
        return self._chunk_store

    def cache_dir(self) -> Path:
        """This repository's local cache directory (created on demand).

        LMDB files are written there, so it must not be on a network file
        system: that is refused with a clear message.
        """
        path = private_dir(private_dir(default_cache_root(), own=False) / self.config.repo_id)
        fstype = filesystem_type(path)
        if fstype in NETWORK_FILESYSTEMS:
            raise ConfigError(
                f"the local cache {path} is on a network file system ({fstype}); "
                "set HISTFS_CACHE_DIR to a directory on a local disk"
            )
        return path

    def chunk_cache_path(self) -> Path:
        """The deduplication cache of this repository instance, in the cache
        directory of its id but named after where the repository is and its
        config file's identity (inode and mtime, or ETag and time): a copy
        (same id) used from this machine never shares it, and a repository
        moved, mounted elsewhere or replaced gets a new one, rebuilt from
        its packs."""
        where = str(self.storage) if is_remote(self.root) else str(Path(self.root).resolve())
        _, identity, mtime = self.storage.stat(CONFIG_FILE)
        instance = hashlib.sha256(f"{where}\0{identity}\0{mtime}".encode()).hexdigest()
        return self.cache_dir() / f"chunks-{instance[:16]}.lmdb"

    def hosts(self) -> list[str]:
        """Hosts that have at least one snapshot directory."""
        return sorted(h for h in self.storage.listdir(SNAPSHOTS_DIR) if is_host_name(h))

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

    def open_snapshot(self, ref: SnapshotRef, fresh: bool = False) -> SnapshotReader:
        """A reader for a published snapshot (`fresh`: see `open_index`).
        An index that cannot be read, or whose metadata names another host or
        snapshot than its place, raises SnapshotDamaged naming it."""
        try:
            fd, path, identity = self.open_index(ref.relpath, fresh)
        except FileNotFoundError:
            raise SnapshotNotFound(f"no snapshot {ref.name} of host {ref.host}") from None
        except (SnapshotDamaged, EncryptionMismatch):
            # A sealed index in a clear repository is not one damaged
            # snapshot: the repository's config was replaced, and nothing
            # may go on as if the others were fine.
            raise
        except RepositoryCorrupt as exc:
            raise SnapshotDamaged(ref.host, ref.name, _reason(exc)) from exc
        try:
            snap = SnapshotReader(path, self.chunk_store, fd=fd, stored_id=identity)
        except RepositoryCorrupt as exc:
            raise SnapshotDamaged(ref.host, ref.name, _reason(exc)) from exc
        try:
            check_place(snap.meta, ref.host, ref.name, ref.relpath)
        except RepositoryCorrupt as exc:
            snap.close()
            raise SnapshotDamaged(ref.host, ref.name, str(exc)) from exc
        except BaseException:
            snap.close()
            raise
        return snap

    def lock(self, name: str, purpose: str) -> RepositoryLock:
        """A lock on `name` (not yet acquired)."""
        return RepositoryLock(self.storage, name, purpose)

    def close(self) -> None:
        """Release open pack files."""
        if self._chunk_store is not None:
            self._chunk_store.close()


def _make_layout(storage: LocalStorage) -> None:
    """The directories of a new repository, in its empty directory: each one
    new (nothing put there meanwhile, such as a link, is used), made durable
    once."""
    top = storage.open_dir("")
    try:
        try:
            for sub in (TMP_DIR, LOCKS_DIR, SNAPSHOTS_DIR, PACKS_DIR):
                os.mkdir(sub, dir_fd=top)
            packs = storage.open_dir(PACKS_DIR)
            try:
                for i in range(256):
                    os.mkdir(f"{i:02x}", dir_fd=packs)
                os.fsync(packs)
            finally:
                os.close(packs)
        except FileExistsError as exc:
            raise RepositoryExists(f"{storage.root} was not empty: {exc.filename} "
                                   "appeared while it was being created") from None
        os.fsync(top)
    finally:
        os.close(top)


def _reason(exc: Exception) -> str:
    # Readers and the cipher name the file ("snapshot index X: ..."); the
    # user knows the snapshot by host and name.
    return re.sub(r"^snapshot index [^:]*: ", "", str(exc))


def _no_passphrase(root: Path | str) -> str:
    raise ConfigError(f"a passphrase is needed to encrypt {root}")


def import_key(root: Path | str, data: bytes,
               passphrase: Callable[[], str] | None = None) -> None:
    """Put a copy of a repository's key file back: it must belong to the
    repository and open with the passphrase."""
    storage = open_storage(root)
    try:
        config_bytes = storage.read(CONFIG_FILE)
    except FileNotFoundError:
        raise RepositoryNotFound(f"no histfs repository at {root}") from None
    cfg = RepoConfig.from_json(config_bytes)
    if not cfg.encrypted:
        raise ConfigError(f"repository {root} is not encrypted: it has no key")
    owner = keys.key_file_repository(data)
    if owner != cfg.repo_id:
        raise ConfigError(f"this key belongs to repository {owner}, not to {root} "
                          f"({cfg.repo_id})")
    phrase = passphrase() if passphrase else passphrase_for(str(root))
    keys.unwrap(data, phrase, cfg.repo_id).check_config(config_bytes)
    storage.write_atomic(keys.KEY_FILE, data)


INDEX_CACHE_MB = 4096
"""Default bound of the local copies of snapshot indexes (HISTFS_INDEX_CACHE_MB)."""


def _used(plain: Path) -> bool:
    """Whether a local copy exists; if so it becomes the most recently used."""
    try:
        os.utime(plain)
    except FileNotFoundError:
        return False
    return True


def _trim_index_cache(indexes: Path, keep: Path) -> None:
    """Delete the least recently used index copies (by mtime, which `_used`
    sets) until they fit HISTFS_INDEX_CACHE_MB. A reader that has a copy open
    keeps reading it: unlinking frees its space only when it is closed."""
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
