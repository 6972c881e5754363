"""Where a repository is: a directory or a bucket, and the storage that reaches it."""

from __future__ import annotations

import os
from pathlib import Path

from index.model.cache import remember_endpoint, remembered_endpoint, spool_dir
from index.store.local_storage import LocalStorage
from index.store.storage import Storage


def as_location(text: str | Path) -> Path | str:
    """A repository location from a user: a Path for a directory, the URL
    as given for a bucket (a Path would fold `s3://` into `s3:/`)."""
    return str(text) if is_remote(text) else Path(text)


def is_remote(location: str | Path) -> bool:
    """Whether `location` names a bucket (s3://...) rather than a directory."""
    return str(location).startswith("s3://")


def open_storage(location: str | Path, endpoint: str | None = None) -> Storage:
    """The storage backend of a repository location: a directory, or
    `s3://bucket/prefix` (endpoint from `endpoint`, HISTFS_S3_ENDPOINT, or
    the one remembered when the repository was created here)."""
    if not is_remote(location):
        return LocalStorage(Path(location))
    from index.store.s3 import S3Storage

    url = str(location).rstrip("/")
    if endpoint is None and not os.environ.get("HISTFS_S3_ENDPOINT"):
        endpoint = remembered_endpoint(url)
    elif endpoint is not None:
        remember_endpoint(url, endpoint)
    return S3Storage(url, endpoint, spool_dir())
