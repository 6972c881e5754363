"""Values of a table of the configuration file, typed and checked: each
refusal one line naming the file and key (`where` is "FILE: " or
"FILE: part[N].")."""

from __future__ import annotations

from typing import Any

from index.errors import ConfigError

_UNITS = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20}
CHUNK_SIZE_RANGE = (4 << 10, 4 << 20)


def get_value(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    """`table[key]` if it is of type `kind`, None if absent."""
    value = table.get(key)
    if (value is not None and not isinstance(value, kind)) or (
        kind is int and isinstance(value, bool)
    ):
        raise ConfigError(f"{where}{key}: expected {kind.__name__}, got {value!r}")
    return value


def get_names(table: dict[str, Any], key: str, where: str) -> list[str]:
    """A string or a list of strings; [] if absent."""
    value = table.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return list(value)
    raise ConfigError(f"{where}{key}: expected a string or a list of strings, got {value!r}")


def parse_chunk_size(value: object, where: str) -> int:
    """An average chunk size: bytes, or a string such as "8KiB" or "1MiB"."""
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        digits = text.rstrip("KMIB")
        unit = _UNITS.get(text[len(digits):])
        # isdigit() alone accepts "²"; a size has a dozen digits at most.
        if digits.isascii() and digits.isdigit() and len(digits) <= 12 and unit is not None:
            size = int(digits) * unit
    lo, hi = CHUNK_SIZE_RANGE
    if size is None:
        raise ConfigError(f"{where}chunk_size: expected a size such as \"8KiB\", got {value!r}")
    if not lo <= size <= hi:
        raise ConfigError(f"{where}chunk_size: must be 4KiB to 4MiB, got {value!r}")
    return size
