"""Names users see: hosts, parts and snapshots, and their validation."""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, datetime

from index.errors import ConfigError

_HOST_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_SNAPSHOT_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})(\d{2})(\d{2})Z(?:-(\d+))?$")
SNAPSHOT_TIME_FORMAT = "%Y-%m-%dT%H%M%SZ"
LAST = "last"


def is_host_name(host: str) -> bool:
    """Whether `host` is a valid host name (section 2 of docs/FORMAT.md)."""
    return bool(_HOST_RE.fullmatch(host)) and host != LAST


def check_host(host: str) -> str:
    """Return `host` if it can name a directory of the mount, else raise."""
    if not is_host_name(host):
        raise ConfigError(
            f"invalid host name {host!r}: use letters, digits, '.', '_' and '-'"
        )
    return host


def check_part(part: str) -> str:
    """Return `part` if it can name a directory in a snapshot, else raise."""
    if not _PART_RE.match(part):
        raise ConfigError(
            f"invalid part name {part!r}: use letters, digits, '.', '_' and '-'"
        )
    return part


def snapshot_name(when: datetime, suffix: int = 0) -> str:
    """The name of a snapshot taken at `when`; `suffix` > 1 disambiguates."""
    base = when.astimezone(UTC).strftime(SNAPSHOT_TIME_FORMAT)
    return f"{base}-{suffix}" if suffix > 1 else base


def is_snapshot_name(name: str) -> bool:
    """Whether `name` is a snapshot name: the shape, and a real time no
    earlier than 1970 (the mount orders snapshots by their unix time)."""
    try:
        return snapshot_time(name).timestamp() >= 0
    except ValueError:
        return False


def snapshot_time(name: str) -> datetime:
    """The UTC time encoded in a snapshot name."""
    m = _SNAPSHOT_RE.fullmatch(name)
    if not m:
        raise ValueError(f"not a snapshot name: {name!r}")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    return datetime(y, mo, d, h, mi, s, tzinfo=UTC)


def parse_when(text: str) -> datetime:
    """A point in time from a user: a date (meaning the end of that day), a
    date and time (UTC unless an offset is given), or a snapshot name."""
    text = text.strip()
    if is_snapshot_name(text):
        return snapshot_time(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ConfigError(f"cannot read the date {text!r}: use e.g. 2026-11-14 or "
                          "2026-11-14T03:00 or 2026-11-14T03:00+01:00") from None
    if len(text) == 10:  # a date alone: as it was on that day, i.e. at its end
        when = when.replace(hour=23, minute=59, second=59)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def snapshot_sort_key(name: str) -> tuple[str, int]:
    """Orders snapshot names by time, then by suffix (so -10 follows -9)."""
    base, _, suffix = name.partition("Z-")
    return (base.rstrip("Z"), int(suffix) if suffix.isdigit() else 0)


def show_path(path: bytes) -> str:
    """A path (or name) of bytes as messages show it: UTF-8, any other
    byte as a backslash escape."""
    return path.decode("utf-8", "backslashreplace")


def json_path(path: bytes, key: str = "path") -> dict[str, str]:
    """A path as JSON output gives it: `{key: text}` when it is UTF-8, else
    `{key_b64: base64 of its bytes}` (json.dumps would write undecodable
    bytes as lone surrogates, which jq and most parsers turn into U+FFFD)."""
    try:
        return {key: path.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{key}_b64": base64.b64encode(path).decode("ascii")}


_SHOWN_BYTE_RE = re.compile(r"\\x([89a-f][0-9a-f])")


def read_shown_path(text: str) -> bytes | None:
    """The path that `show_path` shows as `text`, if `text` has the escapes
    it writes for bytes that are not UTF-8 (`\\xff`), else None. Only an
    exact inverse counts: a text whose escapes `show_path` would not have
    written (`\\xc3\\xa9` is valid UTF-8, shown as itself) stays as typed."""
    pieces = _SHOWN_BYTE_RE.split(text)
    if len(pieces) == 1:
        return None
    # split() alternates the text between escapes with each escape's digits.
    path = b"".join(bytes([int(p, 16)]) if i % 2 else os.fsencode(p)
                    for i, p in enumerate(pieces))
    return path if show_path(path) == text else None


def safe_name(name: bytes) -> bool:
    """Whether `name` (from a snapshot index) is one harmless path component."""
    return bool(name) and name not in (b".", b"..") and b"/" not in name and b"\0" not in name
