"""The keys of a `[[part]]` of `kind = "sqlite"` and the settings they make
(see writer/sqlite_dumps.py for what the backup runs)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from histfs.config_values import get_names
from index.errors import ConfigError
from index.format.names import safe_name
from writer.sqlite_dumps import SqliteDumps

SQLITE_KEYS = frozenset({"paths"})


def sqlite_source(table: dict[str, Any], pw: str, base: Path) -> SqliteDumps:
    """The settings of a part of kind "sqlite"; a relative path is found
    from `base` (the configuration file's directory). Each database is
    stored under its base name, which two may not share."""
    seen: dict[str, Path] = {}
    for name in get_names(table, "paths", pw):
        path = base / name
        if "\0" in name or not safe_name(os.fsencode(path.name)):
            raise ConfigError(f"{pw}paths: expected paths of database files, got {name!r}")
        if path.name in seen:
            part = table.get("name")
            raise ConfigError(f"{pw}paths: {seen[path.name]} and {path} would both be "
                              f"{part}/{path.name}; put them in parts of their own")
        seen[path.name] = path
    return SqliteDumps(tuple(seen.values()))
