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
    │   │   └── MissingChunk         a chunk that the index names is absent
    │   └── Locked                   another process holds the lock
    ├── SnapshotNotFound             no snapshot of that name
    ├── PathNotFound                 no such path inside a snapshot
    ├── ConfigError                  a bad configuration file or argument
    ├── SourceError                  a backup source that cannot be read at all
    ├── HookFailed                   a `before` hook failed
    └── CacheFull                    no room left in the local cache
"""

from __future__ import annotations


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


class Locked(RepositoryError):
    """Another process holds a lock that this operation needs."""


class SnapshotNotFound(HistfsError):
    """No snapshot with the requested host and name exists."""


class PathNotFound(HistfsError):
    """The requested path does not exist inside a snapshot."""


class ConfigError(HistfsError):
    """A configuration file or command-line value is invalid."""


class SourceError(HistfsError):
    """A backup source cannot be used at all (missing, not a directory)."""


class HookFailed(HistfsError):
    """A `before` hook failed, so the backup did not run."""


class CacheFull(HistfsError):
    """The local cache's disk has no room for what a command must write there."""
