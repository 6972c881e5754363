"""Blobs: one stored chunk with a header that says how it is encoded.

The header is `BLOB_HEADER` (44 bytes, little-endian):

    offset size type  field
    0      1    u8    encoding (0 raw, 1 zstd)
    1      1    u8    encryption (0 none, 1 AES-256-GCM: docs/FORMAT.md §14)
    2      2    u16   reserved, 0
    4      4    u32   stored size (bytes after the header)
    8      4    u32   raw size (bytes after decoding)
    12     32   bytes chunk id (keyed BLAKE3 of the raw bytes)
"""

from __future__ import annotations

import struct
import threading

import blake3
import zstandard

from index.errors import CorruptChunk, RepositoryCorrupt
from index.format.crypto import NONCE_SIZE, TAG_SIZE, Cipher
from index.format.types import ChunkId

BLOB_HEADER = struct.Struct("<BBHII32s")
ENCODING_RAW = 0
ENCODING_ZSTD = 1
ENCRYPTION_NONE = 0
ENCRYPTION_AES_256_GCM = 1

MAX_RAW_SIZE = 16 * 1024 * 1024
"""Largest chunk any repository holds: a part's average chunk size is at most
4 MiB and its maximum four times that (docs/FORMAT.md, section 3). A header
that claims more is damaged, and is refused before anything is allocated."""

DEFAULT_LEVEL = 3
"""The zstd level of blobs unless one is chosen (`backup --compression`)."""

# Compression that saves less than this fraction is not worth a decompression
# on every read: the chunk is stored raw.
_MIN_SAVING = 1 / 32

_local = threading.local()


def chunk_id(key: bytes, data: bytes | memoryview) -> ChunkId:
    """The keyed BLAKE3 id of a chunk's raw bytes (multithreaded for big ones)."""
    threads = blake3.blake3.AUTO if len(data) >= 4 * 1024 * 1024 else 1
    return ChunkId(blake3.blake3(data, key=key, max_threads=threads).digest())


def _compressor(level: int) -> zstandard.ZstdCompressor:
    # zstandard objects are not safe to share between threads.
    cache: dict[int, zstandard.ZstdCompressor] = _local.__dict__.setdefault("c", {})
    comp = cache.get(level)
    if comp is None:
        comp = cache[level] = zstandard.ZstdCompressor(level=level)
    return comp


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def encode(cid: ChunkId, data: bytes | memoryview, level: int,
           cipher: Cipher | None = None) -> bytes | bytearray:
    """Header plus payload for `data`, compressed unless that does not pay,
    and sealed with `cipher` in an encrypted repository."""
    raw_size = len(data)
    payload: bytes | memoryview = data
    encoding = ENCODING_RAW
    if level > 0 and raw_size > 64:
        packed = _compressor(level).compress(data)
        if len(packed) < raw_size * (1 - _MIN_SAVING):
            payload, encoding = packed, ENCODING_ZSTD
    if cipher is None:
        header = BLOB_HEADER.pack(encoding, ENCRYPTION_NONE, 0, len(payload), raw_size, cid)
        return header + payload
    header = BLOB_HEADER.pack(encoding, ENCRYPTION_AES_256_GCM, 0,
                              NONCE_SIZE + len(payload) + TAG_SIZE, raw_size, cid)
    return cipher.seal_blob(header, payload)


def decode(blob: bytes | memoryview, expected: ChunkId, key: bytes,
           cipher: Cipher | None = None) -> bytes:
    """The raw bytes of a blob, checked against its header and its id (and
    opened with `cipher` in an encrypted repository)."""
    if len(blob) < BLOB_HEADER.size:
        raise CorruptChunk(f"chunk {expected.hex()}: truncated blob")
    encoding, encryption, _, stored, raw_size, cid = BLOB_HEADER.unpack_from(blob)
    if cid != expected:
        raise CorruptChunk(f"chunk {expected.hex()}: blob header does not match")
    # A blob must be sealed exactly when the repository is encrypted: a
    # plain blob planted in an encrypted repository is refused.
    want = ENCRYPTION_NONE if cipher is None else ENCRYPTION_AES_256_GCM
    if encryption != want:
        raise CorruptChunk(f"chunk {expected.hex()}: encryption {encryption}, "
                           f"expected {want}")
    payload = memoryview(blob)[BLOB_HEADER.size : BLOB_HEADER.size + stored]
    if len(payload) != stored:
        raise CorruptChunk(f"chunk {expected.hex()}: truncated blob")
    if raw_size > MAX_RAW_SIZE:
        raise CorruptChunk(f"chunk {expected.hex()}: raw size {raw_size} is over the maximum")
    body: bytes | memoryview = payload
    if cipher is not None:
        header = bytes(memoryview(blob)[: BLOB_HEADER.size])
        try:
            body = cipher.open_blob(header, payload, f"chunk {expected.hex()}")
        except RepositoryCorrupt as exc:
            raise CorruptChunk(str(exc)) from None
    if encoding == ENCODING_RAW:
        # Decryption made a new bytes object already: no second copy.
        data = body if isinstance(body, bytes) else bytes(body)
    elif encoding == ENCODING_ZSTD:
        try:
            # zstandard allocates whatever size the frame header declares,
            # whatever `max_output_size` says: check the claim first.
            declared = zstandard.frame_content_size(body)
            if declared > raw_size:
                raise CorruptChunk(f"chunk {expected.hex()}: zstd frame is larger "
                                   "than the raw size")
            # Without a declared size, zstandard needs a limit; 0 would mean
            # none, and an empty chunk is never compressed.
            data = _decompressor().decompress(body, max_output_size=max(raw_size, 1))
        except zstandard.ZstdError as exc:
            raise CorruptChunk(f"chunk {expected.hex()}: {exc}") from exc
    else:
        raise CorruptChunk(f"chunk {expected.hex()}: unknown encoding {encoding}")
    if len(data) != raw_size or chunk_id(key, data) != expected:
        raise CorruptChunk(f"chunk {expected.hex()}: content does not match its id")
    return data
