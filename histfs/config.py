"""The TOML configuration file and how command-line values override it."""

from __future__ import annotations

import re
import socket
import tomllib
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from histfs.config_values import get_names, get_value, parse_chunk_size
from histfs.part_kinds import DIRECTORY_KEYS, EXCLUDE_KEYS, PART_KEYS, dump_part
from index.errors import ConfigError
from index.model.location import as_location
from writer.excludes import check_marker_name, patterns_from_file
from writer.parts import Part
from writer.retention import Policy

_TOP_KEYS = {"repository", "host", "compression", "min_interval", "mountpoint", "metrics_file",
             "part", "retention", "hooks", *EXCLUDE_KEYS}
_RETENTION_COUNTS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly",
                     "keep_yearly")
_RETENTION_KEYS = {*_RETENTION_COUNTS, "keep_within", "keep_ages"}
_HOOK_KEYS = {"before", "after", "after_success", "timeout"}
_DURATION_RE = re.compile(r"([0-9]{1,12})\s*([smhdw])", re.ASCII)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DEFAULT_HOOK_TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class Hooks:
    """Commands run around a backup (`[hooks]`); each a shell command line."""

    before: str | None = None
    after: str | None = None
    after_success: str | None = None
    timeout: timedelta = DEFAULT_HOOK_TIMEOUT


@dataclass(frozen=True)
class FileConfig:
    """A parsed configuration file; None where the file is silent."""

    source: Path | None = None
    repository: Path | str | None = None
    host: str | None = None
    compression: int | None = None
    parts: list[Part] = field(default_factory=list)
    min_interval: timedelta | None = None
    mountpoint: Path | None = None
    metrics_file: Path | None = None
    retention: Policy | None = None
    hooks: Hooks = field(default_factory=Hooks)


def short_host_name() -> str:
    """This machine's host name without its domain: the default host of
    its snapshots."""
    return socket.gethostname().split(".")[0]


def check_compression(value: int, where: str = "compression") -> int:
    """zstd levels 1-22, or 0 for none."""
    if not 0 <= value <= 22:
        raise ConfigError(f"{where}: must be 0 (off) to 22, got {value}")
    return value


_MAX_DURATION = 100 * 366 * 86400


def parse_duration(value: object, where: str) -> timedelta:
    """A duration such as "1d", "36h", "2w", "1d12h" or "90m" (s m h d w)."""
    text = value.strip().lower() if isinstance(value, str) else ""
    pos, seconds = 0, 0
    for m in _DURATION_RE.finditer(text):
        if text[pos:m.start()].strip():
            break
        seconds += int(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    else:
        # A hundred years is longer than any interval means.
        if pos and not text[pos:].strip() and seconds <= _MAX_DURATION:
            return timedelta(seconds=seconds)
    raise ConfigError(f"{where}: expected a duration such as \"1d\", \"36h\" or \"2w\", "
                      f"got {value!r}")


@dataclass(frozen=True)
class ExcludeSettings:
    """`exclude_from`, `exclude_caches`, `exclude_if_present` and
    `one_file_system`, of the top level, a part or the command line; None
    where unset. Lists add up, a part's yes or no overrides the top level's."""

    patterns: tuple[str, ...] = ()
    """The patterns of the `exclude_from` files, read."""
    exclude_caches: bool | None = None
    exclude_if_present: tuple[str, ...] = ()
    one_file_system: bool | None = None

    def over(self, base: ExcludeSettings) -> ExcludeSettings:
        """These settings on top of `base`."""
        return ExcludeSettings(
            base.patterns + self.patterns,
            base.exclude_caches if self.exclude_caches is None else self.exclude_caches,
            base.exclude_if_present + self.exclude_if_present,
            base.one_file_system if self.one_file_system is None else self.one_file_system)

    def apply(self, part: Part) -> Part:
        """`part` with these settings added."""
        return replace(
            part, exclude=part.exclude + self.patterns,
            exclude_caches=bool(self.exclude_caches) or part.exclude_caches,
            exclude_if_present=part.exclude_if_present + self.exclude_if_present,
            one_file_system=bool(self.one_file_system) or part.one_file_system)


def exclude_settings(table: dict[str, Any], where: str, base: Path) -> ExcludeSettings:
    """The exclude settings of a table of the configuration file (`where`
    names it); `exclude_from` files are found from `base`."""
    files = [base / f for f in get_names(table, "exclude_from", where)]
    markers = [check_marker_name(m, f"{where}exclude_if_present")
               for m in get_names(table, "exclude_if_present", where)]
    return ExcludeSettings(
        tuple(p for f in files for p in patterns_from_file(f)),
        get_value(table, "exclude_caches", bool, where), tuple(markers),
        get_value(table, "one_file_system", bool, where))


def _check_table(table: object, name: str, allowed: set[str], where: str) -> dict[str, Any]:
    """`table` if it is a TOML table with only `allowed` keys, else raise."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}{name}: expected a table")
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}{name}.{key}: unknown key")
    return table


def _load_retention(raw: object, where: str) -> Policy:
    table = _check_table(raw, "retention", _RETENTION_KEYS, where)
    counts = {}
    for key in _RETENTION_COUNTS:
        value = get_value(table, key, int, f"{where}retention.")
        if value is not None and value < 0:
            raise ConfigError(f"{where}retention.{key}: must be 0 or more, got {value}")
        counts[key] = value or 0
    within = table.get("keep_within")
    ages = get_value(table, "keep_ages", list, f"{where}retention.") or []
    policy = Policy(
        **counts,
        keep_within=None if within is None
        else parse_duration(within, f"{where}retention.keep_within"),
        keep_ages=tuple(parse_duration(a, f"{where}retention.keep_ages") for a in ages),
    )
    if policy.is_empty():
        raise ConfigError(f"{where}retention: no rule is set; a policy must keep something")
    return policy


def _load_hooks(raw: object, where: str) -> Hooks:
    table = _check_table(raw, "hooks", _HOOK_KEYS, where)
    commands = {k: get_value(table, k, str, f"{where}hooks.") for k in ("before", "after",
                                                                    "after_success")}
    raw = table.get("timeout")
    timeout = DEFAULT_HOOK_TIMEOUT if raw is None else parse_duration(raw,
                                                                      f"{where}hooks.timeout")
    if not timeout:
        # A hook given no time at all would be killed as it starts.
        raise ConfigError(f"{where}hooks.timeout: must be more than 0, got {raw!r}")
    return Hooks(**commands, timeout=timeout)


def load_config(path: Path) -> FileConfig:
    """Read and check a configuration file; errors name the file and key."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 at byte {exc.start}") from None
    # ValueError: TOMLDecodeError, and integers of thousands of digits.
    except ValueError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deep") from None
    where = f"{path}: "
    for key in doc:
        if key not in _TOP_KEYS:
            raise ConfigError(f"{where}unknown key {key!r}")
    repo = get_value(doc, "repository", str, where)
    host = get_value(doc, "host", str, where)
    compression = get_value(doc, "compression", int, where)
    if compression is not None:
        check_compression(compression, f"{path}: compression")
    raw_parts = doc.get("part", [])
    if not isinstance(raw_parts, list):
        raise ConfigError(f"{where}part: expected [[part]] tables")
    top = exclude_settings(doc, where, path.parent)
    parts: list[Part] = []
    for i, table in enumerate(raw_parts):
        pw = f"{path}: part[{i}]."
        if not isinstance(table, dict):
            raise ConfigError(f"{pw[:-1]}: expected a table")
        if table.get("kind", "directory") != "directory":
            parts.append(dump_part(table, pw, path.parent))
            continue
        for key in table:
            if key not in DIRECTORY_KEYS:
                raise ConfigError(f"{pw}{key}: " + ("unknown key" if key not in PART_KEYS else
                                                    "not a key of a part of kind \"directory\""))
        name = get_value(table, "name", str, pw)
        src = get_value(table, "path", str, pw)
        if name is None or src is None:
            raise ConfigError(f"{pw[:-1]}: needs both name and path")
        exclude = get_value(table, "exclude", list, pw) or []
        if not all(isinstance(x, str) for x in exclude):
            raise ConfigError(f"{pw}exclude: expected a list of strings")
        enabled = get_value(table, "enabled", bool, pw)
        chunk_size = table.get("chunk_size")
        part = Part(name, Path(src), tuple(exclude), True if enabled is None else enabled,
                    None if chunk_size is None else parse_chunk_size(chunk_size, pw))
        parts.append(exclude_settings(table, pw, path.parent).over(top).apply(part))
    interval = doc.get("min_interval")
    mountpoint = get_value(doc, "mountpoint", str, where)
    metrics_file = get_value(doc, "metrics_file", str, where)
    return FileConfig(
        path, as_location(repo) if repo else None, host, compression, parts,
        min_interval=None if interval is None else parse_duration(interval,
                                                                  f"{path}: min_interval"),
        mountpoint=Path(mountpoint) if mountpoint else None,
        metrics_file=Path(metrics_file) if metrics_file else None,
        retention=_load_retention(doc["retention"], where) if "retention" in doc else None,
        hooks=_load_hooks(doc["hooks"], where) if "hooks" in doc else Hooks(),
    )


def parse_part_args(args: list[str], exclude: list[str]) -> list[Part]:
    """`NAME=PATH` arguments as parts."""
    parts = []
    for arg in args:
        name, sep, src = arg.partition("=")
        if not sep or not name or not src:
            raise ConfigError(f"part {arg!r}: expected NAME=PATH, e.g. mail=/var/spool/imap")
        parts.append(Part(name, Path(src), tuple(exclude)))
    return parts
