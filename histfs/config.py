"""The TOML configuration file and how command-line values override it."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.errors import ConfigError

_TOP_KEYS = {"repository", "host", "compression", "part"}
_PART_KEYS = {"name", "path", "exclude", "enabled", "chunk_size"}
_UNITS = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20}
CHUNK_SIZE_RANGE = (4 << 10, 4 << 20)


@dataclass(frozen=True)
class PartConfig:
    """One `[[part]]` table."""

    name: str
    path: Path
    exclude: tuple[str, ...] = ()
    enabled: bool = True
    chunk_size: int | None = None


@dataclass(frozen=True)
class FileConfig:
    """A parsed configuration file; None where the file is silent."""

    source: Path | None = None
    repository: Path | None = None
    host: str | None = None
    compression: int | None = None
    parts: list[PartConfig] = field(default_factory=list)


def _get(table: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if (value is not None and not isinstance(value, kind)) or (
        kind is int and isinstance(value, bool)
    ):
        raise ConfigError(f"{where}{key}: expected {kind.__name__}, got {value!r}")
    return value


def check_compression(value: int, where: str = "compression") -> int:
    """zstd levels 1-22, or 0 for none."""
    if not 0 <= value <= 22:
        raise ConfigError(f"{where}: must be 0 (off) to 22, got {value}")
    return value


def parse_chunk_size(value: object, where: str) -> int:
    """An average chunk size: bytes, or a string such as "8KiB" or "1MiB"."""
    size: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str):
        text = value.strip().upper().replace(" ", "")
        digits = text.rstrip("KMIB")
        unit = _UNITS.get(text[len(digits):])
        if digits.isdigit() and unit is not None:
            size = int(digits) * unit
    lo, hi = CHUNK_SIZE_RANGE
    if size is None:
        raise ConfigError(f"{where}chunk_size: expected a size such as \"8KiB\", got {value!r}")
    if not lo <= size <= hi:
        raise ConfigError(f"{where}chunk_size: must be 4KiB to 4MiB, got {value!r}")
    return size


def load_config(path: Path) -> FileConfig:
    """Read and check a configuration file; errors name the file and key."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    where = f"{path}: "
    for key in doc:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{where}unknown key {key!r}")
    repo = _get(doc, "repository", str, where)
    host = _get(doc, "host", str, where)
    compression = _get(doc, "compression", int, where)
    if compression is not None:
        check_compression(compression, f"{path}: compression")
    raw_parts = doc.get("part", [])
    if not isinstance(raw_parts, list):
        raise ConfigError(f"{where}part: expected [[part]] tables")
    parts: list[PartConfig] = []
    for i, table in enumerate(raw_parts):
        pw = f"{path}: part[{i}]."
        if not isinstance(table, dict):
            raise ConfigError(f"{pw[:-1]}: expected a table")
        for key in table:
            if key not in _PART_KEYS:
                raise ConfigError(f"{pw}{key}: unknown key")
        name = _get(table, "name", str, pw)
        src = _get(table, "path", str, pw)
        if name is None or src is None:
            raise ConfigError(f"{pw[:-1]}: needs both name and path")
        exclude = _get(table, "exclude", list, pw) or []
        if not all(isinstance(x, str) for x in exclude):
            raise ConfigError(f"{pw}exclude: expected a list of strings")
        enabled = _get(table, "enabled", bool, pw)
        chunk_size = table.get("chunk_size")
        parts.append(PartConfig(name, Path(src), tuple(exclude),
                                True if enabled is None else enabled,
                                None if chunk_size is None
                                else parse_chunk_size(chunk_size, pw)))
    return FileConfig(path, Path(repo) if repo else None, host, compression, parts)


def parse_part_args(args: list[str], exclude: list[str]) -> list[PartConfig]:
    """`NAME=PATH` arguments as parts."""
    parts = []
    for arg in args:
        name, sep, src = arg.partition("=")
        if not sep or not name or not src:
            raise ConfigError(f"part {arg!r}: expected NAME=PATH, e.g. mail=/var/spool/imap")
        parts.append(PartConfig(name, Path(src), tuple(exclude)))
    return parts
