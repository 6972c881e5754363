"""All msgpack encoding and decoding goes through here, with fixed options.

Strings are never used for file names or link targets: those are msgpack
`bin` so that any byte sequence round-trips.
"""

from __future__ import annotations

from typing import Any

import msgpack

from index.errors import RepositoryCorrupt


def pack(obj: Any) -> bytes:
    """Encode `obj` (ints, bytes, str, lists, dicts, None) as msgpack."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def unpack(data: bytes | memoryview, what: str = "record") -> Any:
    """Decode msgpack produced by `pack`; damage raises RepositoryCorrupt."""
    # A header may declare up to 2**32 items or bytes in five bytes: no
    # length may exceed the input's, so memory stays proportional to it
    # (msgpack's current defaults, made explicit so that they stay).
    n = memoryview(data).nbytes
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=False,
            max_str_len=n, max_bin_len=n, max_array_len=n, max_map_len=n // 2, max_ext_len=n,
        )
    # TypeError: a map key that is an array or a map (unhashable).
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as exc:
        raise RepositoryCorrupt(f"undecodable {what}: {exc}") from exc
