"""What the commands read from their arguments alike: the configuration
file, the repository (and its passphrase), the host, amounts."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from histfs.config import FileConfig, load_config, short_host_name
from histfs.passphrase import asked_for
from index.errors import ConfigError
from index.model.location import as_location
from index.model.repository import Repository, SnapshotRef


def file_config(args: argparse.Namespace) -> FileConfig:
    """The configuration file named by `--config`, or an empty one."""
    return load_config(Path(args.config)) if getattr(args, "config", None) else FileConfig()


def repo_location(args: argparse.Namespace, cfg: FileConfig | None = None,
                  option: str = "--repo") -> Path | str:
    """The repository a command means: `--repo` (or the command's `option`
    naming it, already in `args.repo`), else $HISTFS_REPO, else the
    configuration file's (`cfg`, or the file `--config` names)."""
    from_config = (cfg or file_config(args)).repository
    value = getattr(args, "repo", None) or os.environ.get("HISTFS_REPO") or from_config
    if not value:
        raise ConfigError(f"no repository given: use {option}, HISTFS_REPO or a config file")
    return as_location(value)


def config_host(args: argparse.Namespace, cfg: FileConfig) -> str | None:
    """The host a command means by `--host`, else by the configuration file."""
    return getattr(args, "host", None) or cfg.host


def open_repository(location: Path | str) -> Repository:
    """The repository at `location`, its passphrase asked for if needed
    (`with open_repository(...) as repo:` closes it)."""
    return Repository.open(location, passphrase=asked_for(location))


def select_snapshot(repo: Repository, host: str | None, name: str | None,
                    at: str | None) -> SnapshotRef:
    """The snapshot a command means: with `at` (a date, or a snapshot's
    name standing for its time) the newest taken at or before it, else
    `name` (or "last")."""
    from index.format.names import parse_when

    when = parse_when(at) if at else None
    if when is None and name is None:
        raise ConfigError("name a snapshot (or 'last'), or give --at DATE")
    return repo.select(host, None if when is not None else name, when)


def only_host(repo: Repository) -> str:
    """The host a command means when none is given: the only one in the
    repository, else this machine if it is there."""
    hosts = repo.hosts()
    if len(hosts) == 1:
        return hosts[0]
    local = short_host_name()
    if local in hosts:
        return local
    raise ConfigError(f"several hosts in the repository ({', '.join(hosts)}): use --host")


def seconds(value: float, option: str) -> float:
    """A time in seconds from the command line (see `not_negative`)."""
    return not_negative(value, option, "seconds")


def not_negative(value: float, option: str, unit: str) -> float:
    """An amount from the command line: finite and not negative (float()
    also reads "nan", "inf" and "-1")."""
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{option}: expected {unit}, 0 or more, got {value}")
    return value
