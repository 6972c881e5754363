"""The one exception hierarchy of histfs.

Every error that the packages raise on purpose derives from `HistfsError`;
the command line maps each class to a one-line message and an exit status,
the FUSE adapter maps them to errnos. Anything else is a bug.

    HistfsError
    ├── RepositoryError              the repository as a whole
    │   ├── RepositoryNotFound       no repository at that location
    │   ├── RepositoryExists         `init` on a non-empty location
    │   ├── FormatTooNew             written by a newer histfs
    │   ├── RepositoryCorrupt        a file of the repository is damaged
    │   │   ├── CorruptChunk         a blob whose bytes do not hash to its id
    │   │   ├── MissingChunk         a chunk that the index names is absent
    │   │   ├── SnapshotDamaged      a snapshot whose index cannot be read
    │   │   ├── UnexpectedFile       a symlink (or other type) in place of a file or directory
    │   │   └── EncryptionMismatch   a sealed object in a clear repository, or the reverse
    │   └── Locked                   another process holds the lock
    ├── SnapshotNotFound             no snapshot of that name
    ├── PathNotFound                 no such path inside a snapshot
    ├── ConfigError                  a bad configuration file or argument
    ├── CacheError                   the local cache cannot be written
    │   └── CacheFull                no room left in the local cache
    └── SourceError                  a backup source that cannot be read at all
"""

from __future__ import annotations


def shown(value: object) -> str:
    """`value` as a damage message shows it: its repr, cut short so that
    the message stays one short line (damaged values can be long)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class HistfsError(Exception):
    """Base of every error histfs raises deliberately."""


class RepositoryError(HistfsError):
    """Something is wrong with a repository."""


class RepositoryNotFound(RepositoryError):
    """There is no histfs repository at the given location."""


class RepositoryExists(RepositoryError):
    """`init` was asked to create a repository where files already are."""


class FormatTooNew(RepositoryError):
    """The repository (or one of its files) uses a newer format version."""


class RepositoryCorrupt(RepositoryError):
    """A repository file does not have the structure its format promises."""


class CorruptChunk(RepositoryCorrupt):
    """A stored blob is damaged: wrong header, undecodable, or wrong hash."""


class MissingChunk(RepositoryCorrupt):
    """A chunk named by an index is not where the index says it is."""


class SnapshotDamaged(RepositoryCorrupt):
    """A published snapshot whose index cannot be read: damaged, truncated,
    replaced by garbage or (encrypted) failing authentication. Commands that
    go through many snapshots name it and go on with the others."""

    def __init__(self, host: str, name: str, reason: str) -> None:
        super().__init__(f"snapshot {host}/{name} is damaged: {reason}")
        self.host = host
        self.name = name
        self.reason = reason


class UnexpectedFile(RepositoryCorrupt):
    """A symbolic link, or a file of another type, where the repository
    format has a directory or a regular file: histfs never follows it."""


class EncryptionMismatch(RepositoryCorrupt):
    """An object is sealed where the config says the repository is not
    encrypted, or the reverse."""


class Locked(RepositoryError):
    """Another process holds a lock that this operation needs."""


class SnapshotNotFound(HistfsError):
    """No snapshot with the requested host and name exists."""


class PathNotFound(HistfsError):
    """The requested path does not exist inside a snapshot."""


class ConfigError(HistfsError):
    """A configuration file or command-line value is invalid."""


class CacheError(HistfsError):
    """A file of the local cache cannot be written (a full disk, permissions)."""


class SourceError(HistfsError):
    """A backup source cannot be used at all (missing, not a directory)."""


class CacheFull(CacheError):
    """The local cache's disk has no room for what a command must write there."""
