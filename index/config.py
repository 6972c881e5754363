"""The repository's `config` file: format version, ids, chunker parameters."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from index.errors import FormatTooNew, RepositoryCorrupt

FORMAT_NAME = "histfs-repository"
FORMAT_VERSION = 1
"""The newest repository format this histfs reads and the one it writes."""

CONFIG_FILE = "config"

# Chunker parameters of new repositories; see docs/FORMAT.md for the reasons.
DEFAULT_MIN_SIZE = 256 * 1024
DEFAULT_AVG_SIZE = 1024 * 1024
DEFAULT_MAX_SIZE = 4 * 1024 * 1024
DEFAULT_PACK_SIZE = 32 * 1024 * 1024


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
    def new(cls) -> RepoConfig:
        """A fresh configuration with random keys."""
        return cls(
            version=FORMAT_VERSION,
            repo_id=secrets.token_hex(16),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            chunk_id_key=secrets.token_bytes(32),
            chunker=ChunkerParams(
                min_size=DEFAULT_MIN_SIZE,
                avg_size=DEFAULT_AVG_SIZE,
                max_size=DEFAULT_MAX_SIZE,
                normalized_chunking=1,
                # The gear table is XORed with this; 62 bits keep the
                # chunker's internal shift inside 64 bits.
                seed=secrets.randbits(62),
            ),
            pack_size=DEFAULT_PACK_SIZE,
            encryption="none",
        )

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
        return (json.dumps(doc, indent=2) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes) -> RepoConfig:
        """Decode and check a config file; a newer version is refused."""
        try:
            doc: dict[str, Any] = json.loads(data)
            if doc.get("format") != FORMAT_NAME:
                raise RepositoryCorrupt("config is not a histfs repository config")
            version = int(doc["version"])
            if version > FORMAT_VERSION:
                raise FormatTooNew(
                    f"repository format {version} is newer than this histfs "
                    f"supports ({FORMAT_VERSION}); upgrade histfs"
                )
            chunker = doc["chunker"]
            if chunker.get("algorithm") != "fastcdc2020":
                raise RepositoryCorrupt(f"unknown chunker {chunker.get('algorithm')!r}")
            if doc.get("encryption", "none") != "none":
                raise FormatTooNew(
                    f"repository uses encryption {doc['encryption']!r}, "
                    "which this histfs does not support; upgrade histfs"
                )
            return cls(
                version=version,
                repo_id=str(doc["id"]),
                created=str(doc["created"]),
                chunk_id_key=bytes.fromhex(doc["chunk_id_key"]),
                chunker=ChunkerParams(
                    min_size=int(chunker["min_size"]),
                    avg_size=int(chunker["avg_size"]),
                    max_size=int(chunker["max_size"]),
                    normalized_chunking=int(chunker["normalized_chunking"]),
                    seed=int(chunker["seed"]),
                ),
                pack_size=int(doc["pack_size"]),
                encryption=str(doc.get("encryption", "none")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RepositoryCorrupt(f"damaged repository config: {exc}") from exc
