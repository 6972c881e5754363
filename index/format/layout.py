"""The names a repository may hold, directory by directory (docs/FORMAT.md
sections 2, 9 and 13).

A repository is untrusted input: whoever can write it (another machine
sharing it) can put anything there. So storage lists, writes and deletes only
paths of the forms below, checks that each is of the type the format gives it
(a directory, or a regular file), and never follows a symbolic link. This
module is the one place that knows those forms.
"""

from __future__ import annotations

import re
from enum import Enum

from index.format.names import is_host_name, is_snapshot_name


class Expect(Enum):
    """What the format puts at a path."""

    DIRECTORY = "directory"
    FILE = "regular file"


TMP_DIR = "tmp"
ROOT_FILES = frozenset({"config", "README", "key"})
PRIVATE_FILES = frozenset({"key"})
"""Files only their owner may read (mode 0600): the key can be attacked
offline by anyone who can read it."""

_HEX2 = re.compile(r"^[0-9a-f]{2}$")
_PACK = re.compile(r"^[0-9a-f]{64}$")
_HOLD = re.compile(r"^\d{8}T\d{6}\.\d{9}Z-[0-9a-f]{8}\.(hold|release)$")
_GARBAGE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}\.json$")
_LOCK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,249}\.lock$")
_TMP = re.compile(r"^\.[0-9a-f]{24}\.tmp$")
_EXCLUSIVE_TMP = re.compile(r"^\.(?P<name>.+)\.\d{1,10}\.[0-9a-f]{8}\.tmp$")
_SNAPSHOT_SUFFIX = ".idx"


def is_tmp_name(name: str) -> bool:
    """Whether `name` is a file being written in `tmp/` (`.<24 hex>.tmp`)."""
    return bool(_TMP.fullmatch(name))


def exclusive_tmp_name(name: str, pid: int, token: str) -> str:
    """The temporary name under which a file created exclusively (a lock)
    is written beside its final name `name`."""
    return f".{name}.{pid}.{token}.tmp"


def _is_snapshot_file(name: str) -> bool:
    return name.endswith(_SNAPSHOT_SUFFIX) and is_snapshot_name(name[: -len(_SNAPSHOT_SUFFIX)])


def expected(relpath: str) -> Expect | None:
    """What the format has at `relpath` ("" is the repository itself), or
    None if it defines no such name."""
    if relpath == "":
        return Expect.DIRECTORY
    parts = relpath.split("/")
    top, depth = parts[0], len(parts)
    if depth == 1:
        if top in ROOT_FILES:
            return Expect.FILE
        if top in ("packs", "snapshots", "holds", "garbage", "locks", "tmp"):
            return Expect.DIRECTORY
        return None
    leaf = parts[-1]
    if top == "packs":
        if not _HEX2.fullmatch(parts[1]):
            return None
        if depth == 2:
            return Expect.DIRECTORY
        if depth == 3 and _PACK.fullmatch(leaf) and leaf[:2] == parts[1]:
            return Expect.FILE
        return None
    if top in ("snapshots", "holds"):
        if not is_host_name(parts[1]):
            return None
        if depth == 2:
            return Expect.DIRECTORY
        if top == "snapshots":
            return Expect.FILE if depth == 3 and _is_snapshot_file(leaf) else None
        if not is_snapshot_name(parts[2]):
            return None
        if depth == 3:
            return Expect.DIRECTORY
        return Expect.FILE if depth == 4 and _HOLD.fullmatch(leaf) else None
    if depth != 2:
        return None
    if top == "garbage" and _GARBAGE.fullmatch(leaf):
        return Expect.FILE
    if top == "locks":
        if _LOCK.fullmatch(leaf):
            return Expect.FILE
        m = _EXCLUSIVE_TMP.fullmatch(leaf)
        return Expect.FILE if m and _LOCK.fullmatch(m["name"]) else None
    if top == "tmp" and _TMP.fullmatch(leaf):
        return Expect.FILE
    return None


def is_hold_directory(relpath: str) -> bool:
    """Whether `relpath` is `holds/<host>/<snapshot>`: the one directory the
    format lets a command delete with what it holds."""
    parts = relpath.split("/")
    return len(parts) == 3 and parts[0] == "holds" and expected(relpath) is Expect.DIRECTORY
