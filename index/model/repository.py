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

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from index.errors import (
    ConfigError,
    EncryptionMismatch,
    RepositoryCorrupt,
    RepositoryError,
    RepositoryExists,
    RepositoryNotFound,
    SnapshotDamaged,
    SnapshotNotFound,
)
from index.format import keys
from index.format.blob import ENCRYPTION_AES_256_GCM
from index.format.blob import ENCRYPTION_NONE as ENCRYPTION_NONE_BLOB
from index.format.config import (
    COMPRESSED_INDEX_VERSION,
    CONFIG_FILE,
    ENCRYPTION_NONE,
    ENCRYPTION_REPOKEY,
    RepoConfig,
)
from index.format.crypto import Cipher
from index.format.names import (
    LAST,
    check_host,
    is_host_name,
    is_snapshot_name,
    snapshot_sort_key,
    snapshot_time,
)
from index.format.snapshot_format import (
    SNAPSHOT_SUFFIX,
    SNAPSHOTS_DIR,
    check_place,
    snapshot_relpath,
)
from index.model.cache import LocalCache
from index.model.chunkstore import ChunkStore
from index.model.index_files import IndexFiles
from index.model.location import is_remote, open_storage
from index.model.snapshot_reader import SnapshotReader
from index.store.local_storage import LocalStorage
from index.store.lock import RepositoryLock
from index.store.storage import Storage

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


ENCRYPTION_MODES = {"none": ENCRYPTION_NONE, "repokey": ENCRYPTION_REPOKEY}
"""`init --encryption` choices and the config value each one writes."""

# Secrets opened in this process, so that a forked mount daemon, or a
# command that opens the repository twice, does not run the KDF again.
_opened: dict[tuple[str, bytes, bytes], keys.RepoSecrets] = {}


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
        self.cache = LocalCache(config.repo_id)
        self.indexes = IndexFiles(root, self.storage, self.cipher, self.cache, self.local_root,
                                  compress=config.version >= COMPRESSED_INDEX_VERSION)
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
        remote = is_remote(root)
        storage = open_storage(root, endpoint)
        if remote:
            if any(True for _ in storage.listdir("")):
                raise RepositoryExists(f"{root} is not empty")
        else:
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
        if isinstance(storage, LocalStorage):
            Path(root).mkdir(parents=True, exist_ok=True)
            storage.make_layout()
        storage.write_atomic("README", README_TEXT)
        if wrapped:
            storage.write_atomic(keys.KEY_FILE, wrapped)
        # The config comes last: a place without it is not a repository. A
        # bucket has no empty directory to make first, so there the config
        # is created only if no other init got there meanwhile.
        if isinstance(storage, LocalStorage):
            storage.write_atomic(CONFIG_FILE, config_bytes)
        elif not storage.create_exclusive(CONFIG_FILE, config_bytes):
            raise RepositoryExists(f"{root} was created by another process meanwhile")
        repo = cls(root, config, repo_secrets, storage)
        repo.cache.remember_encryption(config.encryption)
        return repo

    @classmethod
    def open(cls, root: Path | str, passphrase: Callable[[], str] | None = None,
             endpoint: str | None = None) -> Repository:
        """Open the repository at `root` (a directory or an S3 location);
        raises RepositoryNotFound. The passphrase of an encrypted one comes
        from `passphrase`, called only when the key is not open in this
        process already (where a passphrase comes from is the caller's
        business: the command line asks histfs/passphrase.py)."""
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
                phrase = (passphrase or (lambda: _passphrase_needed(root)))()
                repo_secrets = keys.unwrap(wrapped, phrase, config.repo_id)
                repo_secrets.check_config(data)
                _opened[cache_key] = repo_secrets
            repo = cls(root, config, repo_secrets, storage)
            repo.cache.remember_encryption(repo.config.encryption)
        return repo

    def root_stat(self) -> os.stat_result:
        """A stat of the repository's directory, or for a bucket of the local
        cache (the synthetic root of each snapshot takes a few fields)."""
        return os.stat(self.local_root if self.local_root is not None else self.cache.path)

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

    def _check_encryption_kept(self) -> None:
        """Refuse an unencrypted config where this machine saw an encrypted
        one: the repository's config and key were replaced, and a backup
        would otherwise write in the clear."""
        seen = self.cache.remembered_encryption()
        if seen is not None and seen != ENCRYPTION_NONE and not self.config.encrypted:
            raise RepositoryError(
                f"repository {self.root} was encrypted when this machine last used it, "
                "and its config now says it is not: refusing (it may have been tampered "
                f"with; if it was recreated on purpose, delete {self.cache.path})")

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
        return self.cache.chunk_index_file(instance[:16])

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

    def open_snapshot(self, ref: SnapshotRef, fresh: bool = False,
                      keep: bool = True) -> SnapshotReader:
        """A reader for a published snapshot (`fresh`, `keep`: see `IndexFiles.open`).
        An index that cannot be read, or whose metadata names another host or
        snapshot than its place, raises SnapshotDamaged naming it."""
        try:
            fd, path, identity = self.indexes.open(ref.relpath, fresh, keep)
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

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reason(exc: Exception) -> str:
    # Readers and the cipher name the file ("snapshot index X: ..."); the
    # user knows the snapshot by host and name.
    return re.sub(r"^snapshot index [^:]*: ", "", str(exc))


def _no_passphrase(root: Path | str) -> str:
    raise ConfigError(f"a passphrase is needed to encrypt {root}")


def _passphrase_needed(root: Path | str) -> str:
    raise ConfigError(f"repository {root} is encrypted: a passphrase is needed")


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
    phrase = (passphrase or (lambda: _passphrase_needed(root)))()
    keys.unwrap(data, phrase, cfg.repo_id).check_config(config_bytes)
    storage.write_atomic(keys.KEY_FILE, data)
