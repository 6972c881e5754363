"""A repository in an S3-compatible bucket (AWS S3, Ceph RGW, MinIO, ...).

The same immutable format as on a local disk: every object is written once,
whole (a PUT is atomic: readers see all of it or none), and never changed,
except locks and the key file. What a local directory gets from rename and
O_EXCL, S3 gets from conditional writes (`If-None-Match: *`, supported by
AWS S3 since 2024, Ceph RGW and MinIO): creating an object that exists
fails. Large objects (packs) are uploaded in parts on parallel connections;
reads are ranged GETs. botocore retries throttling, 5xx answers and
timeouts with exponential backoff (the "adaptive" mode, 10 attempts); what
still fails is a `RepositoryError` naming the object.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

import boto3
import boto3.s3.transfer
import botocore.config
import botocore.exceptions

from index.errors import ConfigError, RepositoryError
from index.store.storage import replacing

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 8 * 1024 * 1024
# Read this much more than asked for when reading a pack: packs hold files
# in walk order, which is the order they are read back in.
READ_AHEAD = 4 * 1024 * 1024


class S3Error(RepositoryError):
    """The object store refused or failed a request (after retries); `code`
    is the store's error code when it answered with one."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, key prefix) of `s3://bucket/some/prefix`."""
    parsed = urlparse(url)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ConfigError(f"not an S3 location: {url!r} (use s3://BUCKET/PREFIX)")
    return parsed.netloc, parsed.path.strip("/")


def _describe(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', '?')}: {err.get('Message', '')}".strip()
    return str(exc) or type(exc).__name__


def _code(exc: Exception) -> str:
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


class S3PendingFile:
    """A new object being written to a local temporary file; `commit`
    uploads it under its final key, refusing to replace an existing one."""

    def __init__(self, storage: S3Storage) -> None:
        self._storage = storage
        fd, name = tempfile.mkstemp(prefix="histfs-upload-", dir=storage.spool)
        self.tmp_path = Path(name)
        self.file: BinaryIO = os.fdopen(fd, "w+b")

    def sync(self) -> None:
        """Nothing to make durable locally: the upload is the commit."""
        self.file.flush()

    def commit(self, relpath: str) -> None:
        """Upload; the object appears whole or not at all."""
        self.file.flush()
        try:
            self._storage.upload(self.tmp_path, relpath)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the local file."""
        if not self.file.closed:
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()


class S3RangeReader:
    """Ranged reads of one object, with read-ahead (thread-safe)."""

    def __init__(self, storage: S3Storage, relpath: str) -> None:
        self._storage = storage
        self._relpath = relpath
        self._lock = threading.Lock()
        self._buf_at = 0
        self._buf = b""

    def pread(self, size: int, offset: int) -> bytes:
        """`size` bytes at `offset` (fewer at the end of the object)."""
        with self._lock:
            if self._buf_at <= offset and offset + size <= self._buf_at + len(self._buf):
                at = offset - self._buf_at
                return self._buf[at : at + size]
        data = self._storage.get_range(self._relpath, offset, size + READ_AHEAD)
        with self._lock:
            self._buf_at, self._buf = offset, data
        return data[:size]

    def close(self) -> None:
        """Drop the read-ahead buffer."""
        self._buf = b""


class S3Storage:
    """A repository at `s3://bucket/prefix` (see the module docstring)."""

    def __init__(self, url: str, endpoint: str | None = None,
                 spool: Path | None = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = url.rstrip("/")
        self.root = self.url  # shown in messages, like a local path
        self.spool = spool or Path(tempfile.gettempdir())
        config = botocore.config.Config(
            retries={"max_attempts": 10, "mode": "adaptive"},
            connect_timeout=10, read_timeout=60, max_pool_connections=16,
        )
        self._client: Any = boto3.client(
            "s3", endpoint_url=endpoint or os.environ.get("HISTFS_S3_ENDPOINT"),
            config=config)
        self._transfer = boto3.s3.transfer.TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK,
            max_concurrency=4, use_threads=True)

    def __str__(self) -> str:
        return self.url

    def _key(self, relpath: str) -> str:
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def _call(self, what: str, relpath: str, fn: Any, **kw: Any) -> Any:
        try:
            return fn(Bucket=self.bucket, **kw)
        except botocore.exceptions.NoCredentialsError:
            raise S3Error(f"{self.url}: no S3 credentials (set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)") from None
        except botocore.exceptions.ClientError as exc:
            code = _code(exc)
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"{self.url}/{relpath}") from None
            if code == "NoSuchBucket":
                raise S3Error(f"{self.url}: the bucket {self.bucket} does not exist") from None
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise S3Error(f"{self.url}: access denied ({code}) {what} {relpath}") from None
            raise S3Error(f"{self.url}: {what} {relpath} failed: {_describe(exc)}",
                          code) from None
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise S3Error(f"{self.url}: {what} {relpath} failed: {_describe(exc)}") from None

    # -- the storage interface -----------------------------------------------

    def create(self) -> S3PendingFile:
        """Start a new object; publish it with `commit`."""
        return S3PendingFile(self)

    def upload(self, local: Path, relpath: str) -> None:
        """Upload a local file to `relpath` (in parts when large)."""
        key = self._key(relpath)
        try:
            if local.stat().st_size < MULTIPART_THRESHOLD:
                with open(local, "rb") as f:
                    self._call("writing", relpath, self._client.put_object, Key=key, Body=f)
            else:
                self._client.upload_file(str(local), self.bucket, key, Config=self._transfer)
        except (botocore.exceptions.BotoCoreError, boto3.exceptions.S3UploadFailedError,
                botocore.exceptions.ClientError) as exc:
            raise S3Error(f"{self.url}: writing {relpath} failed: {_describe(exc)}") from None

    def write_atomic(self, relpath: str, data: bytes) -> None:
        """Publish a small object in one request."""
        self._call("writing", relpath, self._client.put_object, Key=self._key(relpath),
                   Body=data)

    def create_exclusive(self, relpath: str, data: bytes) -> bool:
        """Write `relpath` unless it exists; False if it did."""
        try:
            self._call("writing", relpath, self._client.put_object, Key=self._key(relpath),
                       Body=data, IfNoneMatch="*")
        except S3Error as exc:
            if exc.code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    @contextlib.contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """Errors while writing are `S3Error`s already, naming the object."""
        yield

    def read(self, relpath: str) -> bytes:
        """The whole content of an object."""
        resp = self._call("reading", relpath, self._client.get_object, Key=self._key(relpath))
        try:
            return bytes(resp["Body"].read())
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise S3Error(f"{self.url}: reading {relpath} failed: {_describe(exc)}") from None

    def get_range(self, relpath: str, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset`."""
        if size <= 0:
            return b""
        try:
            resp = self._call("reading", relpath, self._client.get_object,
                              Key=self._key(relpath), Range=f"bytes={offset}-{offset + size - 1}")
        except S3Error as exc:
            if exc.code == "InvalidRange":
                return b""
            raise
        return bytes(resp["Body"].read())

    def open_ranges(self, relpath: str) -> S3RangeReader:
        """A reader of byte ranges of `relpath`."""
        return S3RangeReader(self, relpath)

    def download(self, relpath: str, dest: Path) -> None:
        """Copy an object into the local file `dest` (written under a
        temporary name, then renamed), mode 0600."""
        with replacing(dest, 0o600) as tmp:
            try:
                self._client.download_file(self.bucket, self._key(relpath), str(tmp),
                                           Config=self._transfer)
            except botocore.exceptions.ClientError as exc:
                if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                    raise FileNotFoundError(f"{self.url}/{relpath}") from None
                raise S3Error(f"{self.url}: reading {relpath} failed: "
                              f"{_describe(exc)}") from None
            except botocore.exceptions.BotoCoreError as exc:
                raise S3Error(f"{self.url}: reading {relpath} failed: "
                              f"{_describe(exc)}") from None

    def stat(self, relpath: str) -> tuple[int, str, float]:
        """(size, ETag, last-modified time) of an object."""
        head = self._call("reading", relpath, self._client.head_object, Key=self._key(relpath))
        return (int(head["ContentLength"]), str(head.get("ETag", "")).strip('"'),
                head["LastModified"].timestamp())

    def open_local(self, relpath: str) -> int | None:
        """Objects are not on a file system."""
        return None

    def touch(self, relpath: str) -> None:
        """Rewrite a small object so that its time is now (locks)."""
        self.write_atomic(relpath, self.read(relpath))

    def size(self, relpath: str) -> int:
        """An object's size in bytes."""
        return self.stat(relpath)[0]

    def exists(self, relpath: str) -> bool:
        """Whether an object, or anything below `relpath/`, exists."""
        try:
            self.stat(relpath)
            return True
        except FileNotFoundError:
            pass
        return any(True for _ in self.listdir(relpath))

    def makedirs(self, relpath: str) -> None:
        """Object stores have no directories."""

    def listdir(self, relpath: str) -> Iterator[str]:
        """Names directly below `relpath` (objects and "directories")."""
        for name, _ in self._listing(relpath):
            yield name

    def list_sizes(self, relpath: str) -> Iterator[tuple[str, int]]:
        """Objects directly below `relpath` and their sizes (from the
        listing itself: no request per object)."""
        for name, size in self._listing(relpath):
            if size is not None:
                yield name, size

    def _listing(self, relpath: str) -> Iterator[tuple[str, int | None]]:
        """(name, size) below `relpath`; size None for a "directory"."""
        prefix = self._key(relpath).rstrip("/") + "/" if relpath else (
            f"{self.prefix}/" if self.prefix else "")
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for cp in page.get("CommonPrefixes", []):
                    yield cp["Prefix"][len(prefix):].rstrip("/"), None
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix):]
                    if name and not name.startswith("."):
                        yield name, int(obj["Size"])
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "NoSuchBucket":
                raise S3Error(f"{self.url}: the bucket {self.bucket} does not exist") from None
            raise S3Error(f"{self.url}: listing {relpath} failed: {_describe(exc)}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise S3Error(f"{self.url}: listing {relpath} failed: {_describe(exc)}") from None

    def usage(self) -> int:
        """Bytes in all the repository's objects (one listing, 1,000 a page)."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        total = 0
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=prefix):
                total += sum(int(obj["Size"]) for obj in page.get("Contents", []))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise S3Error(f"{self.url}: listing failed: {_describe(exc)}") from None
        return total

    def delete(self, relpath: str) -> None:
        """Remove an object (prune, gc, lock release)."""
        self._call("deleting", relpath, self._client.delete_object, Key=self._key(relpath))

    def delete_tree(self, relpath: str) -> None:
        """Remove every object below `relpath/`."""
        for name in list(self.listdir(relpath)):
            child = f"{relpath}/{name}"
            self.delete_tree(child)
            with contextlib.suppress(FileNotFoundError):
                self.delete(child)
