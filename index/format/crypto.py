"""Authenticated encryption of what a repository stores (docs/FORMAT.md §14).

AES-256-GCM from `cryptography` (hardware AES: several GB/s a core, and it
releases the GIL). Blobs are sealed one by one with a random 96-bit nonce;
their header is the associated data, so the encoding, sizes and chunk id
cannot be changed without detection. Snapshot indexes are sealed in 1 MiB
segments (the STREAM construction: a random nonce prefix and the segment
number), each authenticated together with the file's header and its place
in the repository, so a truncated, reordered, spliced or renamed index is
refused.
"""

from __future__ import annotations

import os
import secrets
import struct
from typing import BinaryIO

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from index.errors import RepositoryCorrupt
from index.format.types import ByteSink

NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32

SEALED_INDEX_MAGIC = b"HISTFSEI"
SEALED_INDEX_HEADER = struct.Struct("<8sBBHIQ8s")  # 32 bytes
SEALED_INDEX_VERSION = 1
CIPHER_AES_256_GCM = 1
SEGMENT_SIZE = 1 << 20
_SEGMENT_NONCE = struct.Struct(">8sI")
_SEGMENT_AAD = struct.Struct(">IB")


def derive(master: bytes, purpose: str) -> bytes:
    """A 32-byte subkey of `master` for one purpose (BLAKE3 key derivation),
    so that no key is used for two things."""
    return blake3.blake3(master, derive_key_context=f"histfs 2026-12 {purpose}").digest()


class Cipher:
    """The keys that seal blobs and indexes of one repository."""

    def __init__(self, blob_key: bytes, index_key: bytes) -> None:
        self.blob_key = blob_key
        self.index_key = index_key
        # One AEAD object per key: it only holds the key, and encryption and
        # decryption calls on it are independent (safe from many threads).
        self._blob_aead = AESGCM(blob_key)

    @classmethod
    def from_master(cls, master: bytes) -> Cipher:
        """The cipher of a repository whose encryption key is `master`."""
        return cls(derive(master, "blob"), derive(master, "snapshot index"))

    def __repr__(self) -> str:  # keys never appear in logs or tracebacks
        return "Cipher(<keys hidden>)"

    # -- blobs -------------------------------------------------------------

    def seal_blob(self, header: bytes, payload: bytes | memoryview) -> bytearray:
        """header + nonce + ciphertext + tag of `payload`, authenticated with
        `header`, in one buffer: concatenating megabyte-sized results cost
        four times the encryption itself."""
        nonce = secrets.token_bytes(NONCE_SIZE)
        out = bytearray(len(header) + NONCE_SIZE + len(payload) + TAG_SIZE)
        out[: len(header)] = header
        out[len(header) : len(header) + NONCE_SIZE] = nonce
        self._blob_aead.encrypt_into(nonce, payload, header,
                                     memoryview(out)[len(header) + NONCE_SIZE :])
        return out

    def open_blob(self, header: bytes, sealed: bytes | memoryview, what: str) -> bytes:
        """The payload sealed by `seal_blob`; CorruptChunk-worthy failures
        raise `RepositoryCorrupt` naming `what`."""
        if len(sealed) < NONCE_SIZE + TAG_SIZE:
            raise RepositoryCorrupt(f"{what}: sealed payload too short")
        view = memoryview(sealed)
        try:
            return self._blob_aead.decrypt(view[:NONCE_SIZE], view[NONCE_SIZE:], header)
        except InvalidTag:
            raise RepositoryCorrupt(f"{what}: authentication failed (damaged or "
                                    "tampered with)") from None

    # -- snapshot indexes ----------------------------------------------------

    def seal_index(self, plain: BinaryIO, out: BinaryIO, identity: str) -> bytes:
        """Write the sealed form of the file `plain` (read from its current
        position to its end) to `out`. `identity` is the index's place in the
        repository (its relative path): the file is valid only there.
        Returns the nonce prefix, which names this sealing."""
        start = plain.tell()
        size = os.fstat(plain.fileno()).st_size - start
        prefix = secrets.token_bytes(8)
        header = SEALED_INDEX_HEADER.pack(SEALED_INDEX_MAGIC, SEALED_INDEX_VERSION,
                                          CIPHER_AES_256_GCM, 0, SEGMENT_SIZE, size, prefix)
        out.write(header)
        aead = AESGCM(self.index_key)
        base = header + identity.encode()
        count = _segments(size)
        for i in range(count):
            data = plain.read(SEGMENT_SIZE)
            if len(data) != min(SEGMENT_SIZE, size - i * SEGMENT_SIZE):
                raise OSError(f"{identity}: the index changed while it was sealed")
            aad = base + _SEGMENT_AAD.pack(i, i == count - 1)
            out.write(aead.encrypt(_SEGMENT_NONCE.pack(prefix, i), data, aad))
        return prefix

    def open_index(self, sealed: BinaryIO, out: ByteSink, identity: str) -> None:
        """Write the plain index sealed in `sealed` to `out`; any damage,
        truncation, or a file sealed for another place raises
        `RepositoryCorrupt`."""
        header = sealed.read(SEALED_INDEX_HEADER.size)
        size, _prefix = read_index_header(header, identity)
        aead = AESGCM(self.index_key)
        base = header + identity.encode()
        count = _segments(size)
        for i in range(count):
            want = min(SEGMENT_SIZE, size - i * SEGMENT_SIZE) + TAG_SIZE
            data = sealed.read(want)
            if len(data) != want:
                raise RepositoryCorrupt(f"snapshot index {identity}: truncated")
            aad = base + _SEGMENT_AAD.pack(i, i == count - 1)
            try:
                out.write(aead.decrypt(_SEGMENT_NONCE.pack(_prefix, i), data, aad))
            except InvalidTag:
                raise RepositoryCorrupt(
                    f"snapshot index {identity}: authentication failed (damaged, "
                    "tampered with, or not sealed for this place)") from None
        if sealed.read(1):
            raise RepositoryCorrupt(f"snapshot index {identity}: data after the end")


def read_index_header(header: bytes, identity: str) -> tuple[int, bytes]:
    """(plain size, nonce prefix) from the first 32 bytes of a sealed index."""
    if len(header) != SEALED_INDEX_HEADER.size:
        raise RepositoryCorrupt(f"snapshot index {identity}: truncated")
    magic, version, cipher, _, segment, size, prefix = SEALED_INDEX_HEADER.unpack(header)
    if magic != SEALED_INDEX_MAGIC:
        raise RepositoryCorrupt(f"snapshot index {identity}: not a sealed index")
    if version != SEALED_INDEX_VERSION or cipher != CIPHER_AES_256_GCM \
            or segment != SEGMENT_SIZE:
        raise RepositoryCorrupt(f"snapshot index {identity}: unknown sealing "
                                f"(version {version}, cipher {cipher}, segment {segment})")
    return size, prefix


def _segments(size: int) -> int:
    # An empty file is still one (empty) segment, so that it is authenticated.
    return max(1, -(-size // SEGMENT_SIZE))
