"""The staging area of a backup: records keyed by path, in a local LMDB.

Files finish in any order (threads, rescans of directories that changed
during the walk); the staging database sorts them. Keys are the path's
components joined by NUL, which no name can contain, so key order is
exactly depth-first order with each directory's names sorted.

LMDB keys are at most 511 bytes and a path can be far longer (PATH_MAX is
no limit on how deep a tree goes), so a record is stored under its parent
directory's number and its name, and `items` walks the directories depth
first, names sorted: the same order as that of the whole keys.
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import lmdb

from index.format import carried, codec
from index.format.carried import CarriedFile
from index.format.types import ChunkId, Extent, Kind
from index.store.local_space import Reservation, reporting_full
from index.store.private import FILE_MODE

SEP = b"\0"
_MAP_SIZE = 1 << 38
_BATCH = 2000
_BATCH_BYTES = 256 << 10
_WHAT = "the backup's staging database"
# Bytes of a record besides its key and value (LMDB's node header, the
# page's slot).
_RECORD_OVERHEAD = 16
_COMMIT_PAGES = 16
_TOKEN = struct.Struct(">Q")
# First byte of a carried record and of a run of them (Carried): bytes
# msgpack never begins with, whereas a StagedEntry is a msgpack array.
_CARRIED = 0xC1
_RUN = 0xC2


Link = tuple[int, int]
"""(device, inode) of a file with more than one name."""
_LINK = struct.Struct(">QQ")


def link_key(link: Link) -> bytes:
    """The key of a file with hard links in the staging database."""
    return _LINK.pack(*link)


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
        """Inverse of `encode`; a carried record (Carried) decoded."""
        if Carried.is_carried(raw):
            [(_, file)] = Carried.decode(raw, b"")
            return Carried.staged(file)
        r = codec.unpack(raw, "staged entry")
        return cls(
            kind=Kind(r[0]), mode=r[1], uid=r[2], gid=r[3], size=r[4], mtime_ns=r[5],
            ctime_ns=r[6], atime_ns=r[7], rdev=r[8], stored_bytes=r[9], data=r[10],
            extents=[Extent(o, n, ChunkId(c) if c is not None else None) for o, n, c in r[11]],
            xattrs=[(k, v) for k, v in r[12]], source_ino=r[13],
            link_group=(r[14][0], r[14][1]) if r[14] else None, link_owner=r[15],
        )


class Carried:
    """How files unchanged since the previous snapshot are staged: one
    carried record (index.format.carried) alone, or a run of them."""

    @staticmethod
    def encode_one(file: CarriedFile) -> bytes:
        """Bytes for the staging database: one file."""
        return bytes((_CARRIED,)) + codec.pack(file)

    @staticmethod
    def encode_run(files: list[tuple[bytes, CarriedFile]]) -> bytes:
        """Bytes for the staging database: unchanged files of one directory
        whose names follow each other in its listing, staged under the
        first name (what each would cost as a record of its own was a good
        part of an unchanged file's cost). No other name of the directory
        may be staged between the first and the last: `Staging.split_runs`
        stages them one by one before a directory is listed again."""
        return bytes((_RUN,)) + codec.pack(files)

    @staticmethod
    def is_carried(raw: bytes | memoryview) -> bool:
        """Whether the staged bytes `raw` are a carried record or a run."""
        return raw[0] in (_CARRIED, _RUN)

    @staticmethod
    def decode(raw: bytes | memoryview, name: bytes) -> list[tuple[bytes, CarriedFile]]:
        """The files staged in `raw` (that of `name`, or a run) as (name,
        file). msgpack gives their tuples back as lists: read them by
        unpacking, or make them CarriedFile."""
        if raw[0] == _CARRIED:
            return [(name, codec.unpack(raw[1:], "staged carried file"))]
        files: list[tuple[bytes, CarriedFile]] = codec.unpack(raw[1:], "staged run")
        return files

    @staticmethod
    def staged(file: CarriedFile) -> StagedEntry:
        """A carried file as a StagedEntry."""
        e, extents = carried.as_entry(CarriedFile(*file))
        return StagedEntry(
            kind=e.kind, mode=e.mode, uid=e.uid, gid=e.gid, size=e.size, mtime_ns=e.mtime_ns,
            ctime_ns=e.ctime_ns, atime_ns=e.atime_ns, rdev=e.rdev,
            stored_bytes=e.stored_bytes, data=None, extents=extents, xattrs=list(e.xattrs),
            source_ino=e.source_ino)


class Staging:
    """A temporary LMDB in the local cache, deleted when closed."""

    def __init__(self, path: Path) -> None:
        """Open a new staging database at `path`, a work file of the cache
        (LocalCache.work_file)."""
        self.path = path
        # No writemap: on a full disk a write through the map is a SIGBUS
        # (see index/store/local_space.py); plain writes fail with ENOSPC.
        with reporting_full(path.parent, _WHAT):
            self._env = lmdb.open(
                str(self.path), subdir=False, map_size=_MAP_SIZE, sync=False,
                metasync=False, writemap=False, lock=False, mode=FILE_MODE, max_dbs=2,
            )
        try:
            self._records = self._env.open_db(b"records")
            # (device, inode) of a file with hard links -> its names so far,
            # the key of the first and the counter it adds to.
            self._links = self._env.open_db(b"links")
            self._room = Reservation(self._env, self.path, _WHAT)
        except BaseException:
            self._env.close()
            self.path.unlink(missing_ok=True)
            raise
        self._txn: lmdb.Transaction | None = None
        self._pending = 0
        self._pending_bytes = 0
        # Directory key -> the number its children are stored under, and
        # back; numbers of keys that are currently staged as directories.
        self._tokens: dict[bytes, bytes] = {b"": _TOKEN.pack(0)}
        self._dir_keys: list[bytes] = [b""]
        self._live_dirs: set[bytes] = {_TOKEN.pack(0)}

    def _token(self, dir_key: bytes, create: bool) -> bytes | None:
        token = self._tokens.get(dir_key)
        if token is None and create:
            token = self._tokens[dir_key] = _TOKEN.pack(len(self._dir_keys))
            self._dir_keys.append(dir_key)
        return token

    def _db_key(self, key: bytes, create: bool = False) -> bytes | None:
        parent, _, name = key.rpartition(SEP)
        token = self._token(parent, create)
        return None if token is None else token + name

    def put(self, key: bytes, entry: StagedEntry | bytes) -> None:
        """Store or replace the record of `key` (writer thread only): an
        entry, or a carried record or run encoded by `Carried`."""
        txn = self._write()
        db_key = self._db_key(key, create=True)
        assert db_key is not None
        if isinstance(entry, StagedEntry) and entry.kind == Kind.DIRECTORY:
            token = self._token(key, create=True)
            assert token is not None
            self._live_dirs.add(token)
        else:
            self._forget_dir(key)
        value = entry if isinstance(entry, bytes) else entry.encode()
        try:
            txn.put(db_key, value)
        except lmdb.Error as exc:
            # A transaction too big for memory writes pages out early.
            self._room.raise_if_full(exc)
            raise
        self._pending += 1
        self._pending_bytes += len(db_key) + len(value) + _RECORD_OVERHEAD
        if self._pending >= _BATCH or self._pending_bytes >= _BATCH_BYTES:
            self.commit()

    def _write(self) -> lmdb.Transaction:
        if self._txn is None:
            self._txn = self._env.begin(write=True, db=self._records)
        return self._txn

    def link_name(self, link: Link, key: bytes) -> tuple[bytes, str | None]:
        """Count `key` as one more name of the file `link` (with hard
        links); returns the key of its first name and the counter that one
        added to (None: not yet known)."""
        txn = self._write()
        raw = txn.get(link_key(link), db=self._links)
        count, first, category = (0, key, None) if raw is None else codec.unpack(raw, "link")
        txn.put(link_key(link), codec.pack([count + 1, first, category]), db=self._links)
        return first, category

    def link_counted(self, link: Link, category: str) -> None:
        """Remember the counter the first name of `link` added to."""
        txn = self._write()
        raw = txn.get(link_key(link), db=self._links)
        count, first, _ = (0, b"", None) if raw is None else codec.unpack(raw, "link")
        txn.put(link_key(link), codec.pack([count, first, category]), db=self._links)

    def _forget_dir(self, key: bytes) -> None:
        # Records below a key that is no longer a directory stay, and are
        # listed last by `items` (the index builder reports them as orphans).
        token = self._tokens.get(key)
        if token is not None:
            self._live_dirs.discard(token)

    def delete(self, key: bytes) -> None:
        """Forget the record of `key` (writer thread only)."""
        db_key = self._db_key(key)
        if db_key is None:
            return
        self._forget_dir(key)
        self._write().delete(db_key)

    def children(self, prefix: bytes) -> list[tuple[bytes, StagedEntry]]:
        """Staged records directly below `prefix` (a key followed by SEP),
        those of runs one by one."""
        found: list[tuple[bytes, StagedEntry]] = []
        for name, raw in self._raw_children(prefix[:-1]):
            if Carried.is_carried(raw):
                found.extend((prefix + n, Carried.staged(f)) for n, f in Carried.decode(raw, name))
            else:
                found.append((prefix + name, StagedEntry.decode(raw)))
        return found

    def _raw_children(self, dir_key: bytes) -> list[tuple[bytes, bytes]]:
        """(name, encoded record) of what is staged directly below `dir_key`."""
        self.commit()
        found: list[tuple[bytes, bytes]] = []
        token = self._tokens.get(dir_key)
        if token is None:
            return found
        with self._env.begin(db=self._records, buffers=False) as txn:
            cur = txn.cursor()
            if not cur.set_range(token):
                return found
            for key, raw in cur:
                if key[:_TOKEN.size] != token:
                    break
                found.append((key[_TOKEN.size:], raw))
        return found

    def split_runs(self, dir_key: bytes) -> None:
        """Stage the files of the runs below `dir_key` one by one, so that
        each name can be looked for, replaced and deleted."""
        prefix = dir_key + SEP
        for name, raw in self._raw_children(dir_key):
            if raw[0] == _RUN:
                self.delete(prefix + name)
                for n, f in Carried.decode(raw, name):
                    self.put(prefix + n, Carried.encode_one(f))

    def contains(self, key: bytes) -> bool:
        """Whether `key` is staged."""
        self.commit()
        db_key = self._db_key(key)
        if db_key is None:
            return False
        with self._env.begin(db=self._records) as txn:
            return txn.get(db_key) is not None

    def commit(self) -> None:
        """Make pending puts visible to readers."""
        if self._txn is not None:
            # New pages for the records, and copies of the pages they change.
            self._room.ensure(2 * self._pending_bytes + _COMMIT_PAGES * self._room.page)
            txn, self._txn = self._txn, None
            with self._room.writing():
                txn.commit()
            self._pending = 0
            self._pending_bytes = 0

    def used_bytes(self) -> int:
        """Bytes of the database's file that records occupy."""
        self.commit()
        return self._room.used()

    def items(self) -> StagedItems:
        """All records; iterate `.cursor()` for (key, record) in key order."""
        self.commit()
        return StagedItems(self, self._env.begin(db=self._records, buffers=False))

    def close(self) -> None:
        """Discard the staging area."""
        if self._txn is not None:
            self._txn.abort()
            self._txn = None
        self._room.close()
        self._env.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class StagedItems:
    """A read view of a staging area (a context manager, like a transaction)."""

    def __init__(self, staging: Staging, txn: lmdb.Transaction) -> None:
        self._staging = staging
        self._txn = txn

    def __enter__(self) -> StagedItems:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._txn.abort()

    def link_count(self, link: Link) -> int:
        """How many names the file `link` (with hard links) has."""
        raw = self._txn.get(link_key(link), db=self._staging._links)
        return 1 if raw is None else int(codec.unpack(raw, "link")[0])

    def get(self, key: bytes) -> bytes | None:
        """The encoded record of `key`, or None."""
        db_key = self._staging._db_key(key)
        raw = None if db_key is None else self._txn.get(db_key)
        return None if raw is None else bytes(raw)

    def cursor(self) -> Iterator[tuple[bytes, bytes]]:
        """(key, encoded record) in key order: directories depth first,
        names sorted; then, sorted, records whose parent is not staged as a
        directory."""
        tokens, live = self._staging._tokens, self._staging._live_dirs
        size = _TOKEN.size
        cur = self._txn.cursor()
        visited: set[bytes] = set()
        # (directory key, its number, the last name listed in it)
        stack: list[tuple[bytes, bytes, bytes | None]] = [(b"", tokens[b""], None)]
        visited.add(tokens[b""])
        at: bytes | None = None  # where the cursor is
        while stack:
            dir_key, token, after = stack.pop()
            if after is None:
                found = cur.set_range(token)
            elif at == token + after:
                found = cur.next()
            else:
                # Listing a subdirectory moved the cursor: find the place again.
                found = cur.set_range(token + after)
                if found and cur.key() == token + after:
                    found = cur.next()
            at = bytes(cur.key()) if found else None
            if at is None or at[:size] != token:
                continue
            raw = bytes(cur.value())
            name = at[size:]
            key = dir_key + SEP + name if dir_key else name
            stack.append((dir_key, token, name))
            yield key, raw
            child = tokens.get(key)
            if child is not None and child in live:
                visited.add(child)
                stack.append((key, child, None))
        orphans: list[tuple[bytes, bytes]] = []
        for number, dir_key in enumerate(self._staging._dir_keys):
            token = _TOKEN.pack(number)
            if token in visited or not cur.set_range(token):
                continue
            for db_key, value in cur:
                if db_key[:size] != token:
                    break
                orphans.append((dir_key + SEP + bytes(db_key[size:]), bytes(value)))
        yield from sorted(orphans)
