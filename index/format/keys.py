"""The key of an encrypted repository, wrapped with a passphrase
(docs/FORMAT.md §14).

The repository's secrets are random: a 32-byte encryption key (blob and
index keys are derived from it), the 32-byte key of chunk ids and the
chunker's seed. They are stored in the file `key`, encrypted with AES-256-GCM
under a key derived from the passphrase by Argon2id, whose parameters and
salt are recorded beside it. The wrapped secrets also hold the SHA-256 of
the repository's config, so a changed config is detected once the key is
open. `key export` copies the file; `key import` puts a copy back.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from index.errors import HistfsError, RepositoryCorrupt
from index.format.crypto import KEY_SIZE, NONCE_SIZE, Cipher

KEY_FILE = "key"
KEY_FORMAT = "histfs-key"
KEY_VERSION = 1

# Argon2id as RFC 9106's second recommendation (64 MiB, 3 passes), with the
# two lanes this kind of machine has: about 0.4 s here, once per command.
ARGON2_TIME_COST = 3
ARGON2_MEMORY_KIB = 64 * 1024
ARGON2_PARALLELISM = 2
# Bounds on what a key file may ask for: a damaged or hostile file must not
# make `histfs` spend minutes or gigabytes before it says "wrong passphrase".
_MAX_TIME_COST = 64
_MAX_MEMORY_KIB = 4 * 1024 * 1024
_MAX_PARALLELISM = 64


class WrongPassphrase(HistfsError):
    """The passphrase does not open the repository's key."""


@dataclass(frozen=True)
class RepoSecrets:
    """What the key file protects."""

    encryption_key: bytes
    chunk_id_key: bytes
    chunker_seed: int
    config_sha256: bytes

    @classmethod
    def new(cls, config_bytes: bytes) -> RepoSecrets:
        """Fresh random secrets for a repository whose config is `config_bytes`."""
        return cls(secrets.token_bytes(KEY_SIZE), secrets.token_bytes(KEY_SIZE),
                   secrets.randbits(62), hashlib.sha256(config_bytes).digest())

    @property
    def cipher(self) -> Cipher:
        """The cipher of blobs and indexes."""
        return Cipher.from_master(self.encryption_key)

    def check_config(self, config_bytes: bytes) -> None:
        """Refuse a config that is not the one the key was made with."""
        if hashlib.sha256(config_bytes).digest() != self.config_sha256:
            raise RepositoryCorrupt("the repository config does not match its key: "
                                    "it was changed or replaced")

    def __repr__(self) -> str:
        return "RepoSecrets(<hidden>)"

    def _to_json(self) -> bytes:
        return json.dumps({
            "encryption_key": self.encryption_key.hex(),
            "chunk_id_key": self.chunk_id_key.hex(),
            "chunker_seed": self.chunker_seed,
            "config_sha256": self.config_sha256.hex(),
        }).encode()

    @classmethod
    def _from_json(cls, data: bytes) -> RepoSecrets:
        doc = json.loads(data)
        seed = doc["chunker_seed"]
        if not isinstance(seed, int) or not 0 <= seed < 1 << 62:
            raise ValueError("chunker_seed")
        found = cls(bytes.fromhex(doc["encryption_key"]), bytes.fromhex(doc["chunk_id_key"]),
                    seed, bytes.fromhex(doc["config_sha256"]))
        if len(found.encryption_key) != KEY_SIZE or len(found.chunk_id_key) != KEY_SIZE \
                or len(found.config_sha256) != 32:
            raise ValueError("key sizes")
        return found


def _kek(passphrase: str, salt: bytes, time_cost: int, memory_kib: int,
         parallelism: int) -> bytes:
    return hash_secret_raw(passphrase.encode(), salt, time_cost=time_cost,
                           memory_cost=memory_kib, parallelism=parallelism,
                           hash_len=KEY_SIZE, type=Type.ID)


def wrap(repo_secrets: RepoSecrets, passphrase: str, repo_id: str) -> bytes:
    """The content of a key file holding `repo_secrets` under `passphrase`."""
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(NONCE_SIZE)
    kek = _kek(passphrase, salt, ARGON2_TIME_COST, ARGON2_MEMORY_KIB, ARGON2_PARALLELISM)
    sealed = AESGCM(kek).encrypt(nonce, repo_secrets._to_json(), _aad(repo_id))
    doc = {
        "format": KEY_FORMAT,
        "version": KEY_VERSION,
        "repository": repo_id,
        "kdf": {"algorithm": "argon2id", "time_cost": ARGON2_TIME_COST,
                "memory_kib": ARGON2_MEMORY_KIB, "parallelism": ARGON2_PARALLELISM,
                "salt": salt.hex()},
        "cipher": "aes-256-gcm",
        "nonce": nonce.hex(),
        "sealed": sealed.hex(),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def key_file_repository(data: bytes) -> str:
    """The repository id a key file belongs to (RepositoryCorrupt if the
    bytes are not a key file)."""
    return _parse(data)[0]


def unwrap(data: bytes, passphrase: str, repo_id: str) -> RepoSecrets:
    """The secrets in key file `data`; WrongPassphrase if it does not open."""
    owner, kdf, nonce, sealed = _parse(data)
    if owner != repo_id:
        raise RepositoryCorrupt(f"the key belongs to repository {owner}, not {repo_id}")
    kek = _kek(passphrase, kdf["salt"], kdf["time_cost"], kdf["memory_kib"],
               kdf["parallelism"])
    try:
        plain = AESGCM(kek).decrypt(nonce, sealed, _aad(repo_id))
    except InvalidTag:
        raise WrongPassphrase("wrong passphrase (or a damaged key file)") from None
    try:
        return RepoSecrets._from_json(plain)
    except (ValueError, KeyError, TypeError) as exc:
        raise RepositoryCorrupt(f"the repository key holds damaged secrets: {exc}") from None


def _aad(repo_id: str) -> bytes:
    return f"{KEY_FORMAT} {KEY_VERSION} {repo_id}".encode()


def _parse(data: bytes) -> tuple[str, dict[str, Any], bytes, bytes]:
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != KEY_FORMAT:
            raise ValueError("not a histfs key file")
        if doc.get("version") != KEY_VERSION or doc.get("cipher") != "aes-256-gcm":
            raise ValueError(f"unknown key version {doc.get('version')!r}")
        raw = doc["kdf"]
        if raw.get("algorithm") != "argon2id":
            raise ValueError(f"unknown key derivation {raw.get('algorithm')!r}")
        kdf: dict[str, Any] = {"salt": bytes.fromhex(raw["salt"])}
        for name, top in (("time_cost", _MAX_TIME_COST), ("memory_kib", _MAX_MEMORY_KIB),
                          ("parallelism", _MAX_PARALLELISM)):
            value = raw[name]
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
                raise ValueError(f"{name} {value!r}")
            kdf[name] = value
        if not 8 * kdf["parallelism"] <= kdf["memory_kib"] or len(kdf["salt"]) < 8:
            raise ValueError("memory_kib or salt")
        nonce = bytes.fromhex(doc["nonce"])
        if len(nonce) != NONCE_SIZE:
            raise ValueError("nonce")
        repo = doc["repository"]
        if not isinstance(repo, str):
            raise ValueError("repository")
        return repo, kdf, nonce, bytes.fromhex(doc["sealed"])
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise RepositoryCorrupt(f"damaged key file: {exc}") from None
