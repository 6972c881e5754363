"""The staging area of a backup: records keyed by path, in a local LMDB.

Files finish in any order (threads, rescans of directories that changed
during the walk); the staging database sorts them. Keys are the path's
components joined by NUL, which no name can contain, so key order is
exactly depth-first order with each directory's names sorted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import lmdb

from index import codec
from index.types import ChunkId, Extent, Kind

SEP = b"\0"
_MAP_SIZE = 1 << 38
_BATCH = 2000


@dataclass(slots=True)
class StagedEntry:
    """One path as the backup saw it."""

    kind: Kind
    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    atime_ns: int
    rdev: int
    stored_bytes: int
    data: bytes | None
    """Symlink target; for regular files unused (see `extents`)."""
    extents: list[Extent]
    xattrs: list[tuple[bytes, bytes]]
    source_ino: int
    link_group: tuple[int, int] | None = None
    link_owner: bytes | None = None
    """Key of the staged path whose content this hard link shares."""

    @classmethod
    def from_stat(cls, kind: Kind, st: os.stat_result) -> StagedEntry:
        """A record with `st`'s metadata and no content yet."""
        return cls(
            kind=kind, mode=st.st_mode & 0o7777, uid=st.st_uid, gid=st.st_gid,
            size=st.st_size if kind in (Kind.REGULAR, Kind.SYMLINK) else 0,
            mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, atime_ns=st.st_atime_ns,
            rdev=st.st_rdev if kind in (Kind.CHAR_DEVICE, Kind.BLOCK_DEVICE) else 0,
            stored_bytes=0, data=None, extents=[], xattrs=[], source_ino=st.st_ino,
        )

    def encode(self) -> bytes:
        """Bytes for the staging database."""
        return codec.pack([
            int(self.kind), self.mode, self.uid, self.gid, self.size, self.mtime_ns,
            self.ctime_ns, self.atime_ns, self.rdev, self.stored_bytes, self.data,
            [[e.offset, e.length, e.chunk_id] for e in self.extents],
            [list(x) for x in self.xattrs], self.source_ino,
            list(self.link_group) if self.link_group else None, self.link_owner,
        ])

    @classmethod
    def decode(cls, raw: bytes | memoryview) -> StagedEntry:
        """Inverse of `encode`."""
        r = codec.unpack(raw, "staged entry")
        return cls(
            kind=Kind(r[0]), mode=r[1], uid=r[2], gid=r[3], size=r[4], mtime_ns=r[5],
            ctime_ns=r[6], atime_ns=r[7], rdev=r[8], stored_bytes=r[9], data=r[10],
            extents=[Extent(o, n, ChunkId(c) if c is not None else None) for o, n, c in r[11]],
            xattrs=[(k, v) for k, v in r[12]], source_ino=r[13],
            link_group=(r[14][0], r[14][1]) if r[14] else None, link_owner=r[15],
        )


def remove_stale_files(cache_dir: Path) -> int:
    """Delete staging and index builds left by processes that died.

    Their names carry the pid of the process that made them.
    """
    removed = 0
    for path in cache_dir.glob("*-*-*.lmdb*"):
        prefix, _, rest = path.name.partition("-")
        pid = rest.partition("-")[0]
        if prefix not in ("staging", "index") or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        path.unlink(missing_ok=True)
        removed += 1
    return removed


class Staging:
    """A temporary LMDB in the local cache, deleted when closed."""

    def __init__(self, cache_dir: Path) -> None:
        self.path = cache_dir / f"staging-{os.getpid()}-{secrets.token_hex(4)}.lmdb"
        self._env = lmdb.open(
            str(self.path), subdir=False, map_size=_MAP_SIZE, sync=False,
            metasync=False, writemap=True, lock=False,
        )
        self._txn: lmdb.Transaction | None = None
        self._pending = 0

    def put(self, key: bytes, entry: StagedEntry) -> None:
        """Store or replace the record of `key` (writer thread only)."""
        if self._txn is None:
            self._txn = self._env.begin(write=True)
        self._txn.put(key, entry.encode())
        self._pending += 1
        if self._pending >= _BATCH:
            self.commit()

    def delete(self, key: bytes) -> None:
        """Forget the record of `key` (writer thread only)."""
        if self._txn is None:
            self._txn = self._env.begin(write=True)
        self._txn.delete(key)

    def children(self, prefix: bytes) -> list[tuple[bytes, StagedEntry]]:
        """Staged records directly below `prefix` (a key followed by SEP)."""
        self.commit()
        found: list[tuple[bytes, StagedEntry]] = []
        with self._env.begin() as txn:
            cur = txn.cursor()
            if not cur.set_range(prefix):
                return found
            for key, raw in cur:
                if not key.startswith(prefix):
                    break
                if SEP not in key[len(prefix):]:
                    found.append((bytes(key), StagedEntry.decode(raw)))
        return found

    def contains(self, key: bytes) -> bool:
        """Whether `key` is staged."""
        self.commit()
        with self._env.begin() as txn:
            return txn.get(key) is not None

    def commit(self) -> None:
        """Make pending puts visible to readers."""
        if self._txn is not None:
            self._txn.commit()
            self._txn = None
            self._pending = 0

    def items(self) -> lmdb.Transaction:
        """A read transaction; iterate `txn.cursor()` for sorted records."""
        self.commit()
        return self._env.begin(buffers=False)

    def close(self) -> None:
        """Discard the staging area."""
        if self._txn is not None:
            self._txn.abort()
            self._txn = None
        self._env.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
