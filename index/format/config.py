"""The repository's `config` file: format version, ids, chunker parameters."""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from index.errors import FormatTooNew, RepositoryCorrupt, shown
from index.format.blob import MAX_RAW_SIZE

FORMAT_NAME = "histfs-repository"
FORMAT_VERSION = 3
"""The newest repository format this histfs reads and the one it writes
(docs/FORMAT.md, section 1)."""
ENCRYPTION_VERSION = 2
"""The first version with encryption (section 14)."""
COMPRESSED_INDEX_VERSION = 3
"""The first version whose snapshot indexes are stored compressed
(section 8); a repository of an earlier version keeps plain ones."""
ENCRYPTION_NONE = "none"
ENCRYPTION_REPOKEY = "repokey-aes-256-gcm"

CONFIG_FILE = "config"

# Chunker parameters of new repositories; see docs/FORMAT.md for the reasons.
DEFAULT_MIN_SIZE = 256 * 1024
DEFAULT_AVG_SIZE = 1024 * 1024
DEFAULT_MAX_SIZE = 4 * 1024 * 1024
DEFAULT_PACK_SIZE = 32 * 1024 * 1024

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    """FastCDC 2020 parameters; they fix every chunk boundary forever."""

    min_size: int
    avg_size: int
    max_size: int
    normalized_chunking: int
    seed: int


@dataclass(frozen=True, slots=True)
class RepoConfig:
    """The decoded `config` file."""

    version: int
    repo_id: str
    created: str
    chunk_id_key: bytes
    chunker: ChunkerParams
    pack_size: int
    encryption: str

    @classmethod
    def new(cls, encryption: str = ENCRYPTION_NONE) -> RepoConfig:
        """A fresh configuration with random keys. An encrypted repository's
        id key and chunker seed live in its key file instead (placeholders
        here, filled in by `with_secrets`)."""
        encrypted = encryption != ENCRYPTION_NONE
        return cls(
            version=FORMAT_VERSION,
            repo_id=secrets.token_hex(16),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            chunk_id_key=b"" if encrypted else secrets.token_bytes(32),
            chunker=ChunkerParams(
                min_size=DEFAULT_MIN_SIZE,
                avg_size=DEFAULT_AVG_SIZE,
                max_size=DEFAULT_MAX_SIZE,
                normalized_chunking=1,
                # The gear table is XORed with this; 62 bits keep the
                # chunker's internal shift inside 64 bits.
                seed=0 if encrypted else secrets.randbits(62),
            ),
            pack_size=DEFAULT_PACK_SIZE,
            encryption=encryption,
        )

    @property
    def encrypted(self) -> bool:
        """Whether blobs and indexes are sealed (section 14)."""
        return self.encryption != ENCRYPTION_NONE

    def with_secrets(self, chunk_id_key: bytes, chunker_seed: int) -> RepoConfig:
        """This config with the secrets an encrypted repository keeps in its key."""
        return replace(self, chunk_id_key=chunk_id_key,
                       chunker=replace(self.chunker, seed=chunker_seed))

    def to_json(self) -> bytes:
        """The file's bytes."""
        doc = {
            "format": FORMAT_NAME,
            "version": self.version,
            "id": self.repo_id,
            "created": self.created,
            "chunk_id_key": self.chunk_id_key.hex(),
            "chunker": {"algorithm": "fastcdc2020", **asdict(self.chunker)},
            "pack_size": self.pack_size,
            "encryption": self.encryption,
        }
        if self.encrypted:
            del doc["chunk_id_key"]
            del doc["chunker"]["seed"]  # type: ignore[attr-defined]
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> RepoConfig:
        """Decode and check a config file; a newer version is refused."""
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            # RecursionError: arrays or objects nested thousands deep.
            raise RepositoryCorrupt(f"damaged repository config: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise RepositoryCorrupt("config is not a histfs repository config")
        version = _field(doc, "version", int)
        if version > FORMAT_VERSION:
            raise FormatTooNew(
                f"repository format {version} is newer than this histfs "
                f"supports ({FORMAT_VERSION}); upgrade histfs"
            )
        if version < 1:
            raise RepositoryCorrupt(f"damaged repository config: version {version}")
        chunker = _field(doc, "chunker", dict)
        if chunker.get("algorithm") != "fastcdc2020":
            raise RepositoryCorrupt(f"unknown chunker {shown(chunker.get('algorithm'))}")
        encryption = doc.get("encryption", ENCRYPTION_NONE)
        if encryption not in (ENCRYPTION_NONE, ENCRYPTION_REPOKEY):
            raise FormatTooNew(
                f"repository uses encryption {shown(encryption)}, "
                "which this histfs does not support; upgrade histfs"
            )
        encrypted = encryption != ENCRYPTION_NONE
        if encrypted and version < ENCRYPTION_VERSION:
            raise RepositoryCorrupt(f"damaged repository config: encryption in version {version}")
        repo_id = _field(doc, "id", str)
        # The id names a directory of the local cache: nothing but hex.
        if not _HEX_ID.fullmatch(repo_id):
            raise RepositoryCorrupt(f"damaged repository config: id {shown(repo_id)}")
        # Secrets of an encrypted repository are in its key file.
        key_hex = "" if encrypted else _field(doc, "chunk_id_key", str)
        if not encrypted and not _HEX_KEY.fullmatch(key_hex):
            raise RepositoryCorrupt("damaged repository config: chunk_id_key is not "
                                    "64 hex digits")
        params = ChunkerParams(
            min_size=_field(chunker, "min_size", int),
            avg_size=_field(chunker, "avg_size", int),
            max_size=_field(chunker, "max_size", int),
            normalized_chunking=_field(chunker, "normalized_chunking", int),
            seed=0 if encrypted else _field(chunker, "seed", int),
        )
        # The sizes bound every chunk a writer makes and so the memory of
        # each chunk in flight; blobs above MAX_RAW_SIZE are unreadable.
        if not (0 < params.min_size <= params.avg_size <= params.max_size <= MAX_RAW_SIZE
                and 0 <= params.normalized_chunking <= 3 and 0 <= params.seed < 1 << 62):
            raise RepositoryCorrupt(f"damaged repository config: chunker {params}")
        pack_size = _field(doc, "pack_size", int)
        if not 0 < pack_size < 1 << 63:
            raise RepositoryCorrupt(f"damaged repository config: pack_size {pack_size}")
        return cls(
            version=version,
            repo_id=repo_id,
            created=_field(doc, "created", str),
            chunk_id_key=bytes.fromhex(key_hex),
            chunker=params,
            pack_size=pack_size,
            encryption=encryption,
        )


_HEX_ID = re.compile(r"[0-9a-f]{32}")
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")


def _field(doc: dict[str, Any], key: str, kind: type[_T]) -> _T:
    """`doc[key]` if it is of type `kind` (a bool is not an int)."""
    value = doc.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        what = "missing" if key not in doc else f"not {kind.__name__}: {shown(value)}"
        raise RepositoryCorrupt(f"damaged repository config: {key} {what}")
    return value
