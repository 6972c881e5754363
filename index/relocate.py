"""Pointing a published snapshot at the new home of chunks that gc moved.

A snapshot index names the pack and offset of every chunk it uses (that is
what makes it standalone). When gc copies the live chunks of a mostly empty
pack into a new pack, each snapshot that used the old pack gets a new index
file: a copy whose `chunks` rows for the moved chunks name the new place,
everything else byte-for-byte the same data. It is published like any
index (written under tmp/, fsynced, renamed over the old name), so a reader
sees either the old file or the new one, and both are complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import lmdb

from index.errors import RepositoryCorrupt
from index.private import FILE_MODE, open_private
from index.repository import Repository, SnapshotRef
from index.snapshot_format import (
    ALL_DBS,
    DB_CHUNKS,
    DB_META,
    META_KEY,
    check_place,
    decode_location,
    decode_meta,
    encode_location,
)
from index.types import ChunkId, ChunkLocation, PackId


@contextlib.contextmanager
def editable_copy(repo: Repository, ref: SnapshotRef,
                  work_dir: Path) -> Iterator[lmdb.Environment]:
    """A writable LMDB copy of the index of snapshot `ref`, in `work_dir` (a
    local disk), deleted afterwards: for rewriting an index and publishing
    the result with `IndexFiles.publish`. An index that names another
    snapshot than `ref` is refused, so that none is published in a wrong
    place."""
    work = work_dir / f"index-{os.getpid()}-{secrets.token_hex(4)}.lmdb"
    try:
        fd, path, _ = repo.indexes.open(ref.relpath)
        try:
            out = open_private(work)
            try:
                offset = 0
                while sent := os.sendfile(out, fd, offset, 1 << 26):
                    offset += sent
            finally:
                os.close(out)
        finally:
            os.close(fd)
        # Room for rows that grow (new chunk ids, new places); only mapped.
        size = work.stat().st_size
        env = lmdb.open(str(work), subdir=False, map_size=max(4 * size, 1 << 30),
                        max_dbs=len(ALL_DBS) + 1, lock=False, sync=False, metasync=False,
                        mode=FILE_MODE)
        try:
            _check_meta(env, ref, path.name)
            yield env
        finally:
            env.close()
    finally:
        for p in (work, Path(str(work) + "-lock")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _check_meta(env: lmdb.Environment, ref: SnapshotRef, name: str) -> None:
    try:
        with env.begin() as txn:
            raw = txn.get(META_KEY, db=env.open_db(DB_META, txn=txn, create=False))
    except lmdb.Error as exc:
        raise RepositoryCorrupt(f"snapshot index {ref.relpath}: {exc}") from exc
    if raw is None:
        raise RepositoryCorrupt(f"snapshot index {ref.relpath}: no metadata")
    check_place(decode_meta(raw, name), ref.host, ref.name, ref.relpath)


def relocate_snapshot(repo: Repository, ref: SnapshotRef, moved_packs: set[PackId],
                      moves: dict[ChunkId, ChunkLocation], work_dir: Path) -> int:
    """Publish a new index of `ref` in which every chunk row naming one of
    `moved_packs` names its place in `moves` instead. Returns how many rows
    changed (0: nothing was written). `work_dir` is on a local disk."""
    with editable_copy(repo, ref, work_dir) as env:
        changed = _rewrite_rows(env, moved_packs, moves, ref.relpath)
        if changed:
            repo.indexes.publish(ref.relpath, lambda fd: env.copyfd(fd, compact=True))
        return changed


def _rewrite_rows(env: lmdb.Environment, moved_packs: set[PackId],
                  moves: dict[ChunkId, ChunkLocation], relpath: str) -> int:
    with env.begin(write=True) as txn:
        db = env.open_db(DB_CHUNKS, txn=txn, create=False)
        updates = []
        for key, value in txn.cursor(db):
            if decode_location(value).pack_id in moved_packs:
                cid = ChunkId(bytes(key))
                new = moves.get(cid)
                if new is None:
                    raise RepositoryCorrupt(f"{relpath}: chunk {cid.hex()} was not moved "
                                            "with its pack")
                updates.append((cid, encode_location(new)))
        for cid, value in updates:
            txn.put(cid, value, db=db)
    return len(updates)
