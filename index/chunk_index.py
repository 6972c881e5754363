"""The local deduplication index: which chunks the repository already has.

It is a cache on a local disk (LMDB must not be written over NFS) that can
be rebuilt from the repository alone: `sync` reads the table of every pack it
does not know yet and forgets packs that have gone. Entries are added only
for packs that are already durable, so the cache never promises a chunk that
a crash could lose.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import lmdb

from index import garbage
from index.errors import RepositoryCorrupt
from index.local_space import Reservation, make_lock_file, reporting_full
from index.pack import PackedChunk, list_packs, location, read_stored_table
from index.snapshot_format import decode_location, encode_location
from index.storage import Storage
from index.types import ChunkId, ChunkLocation, PackId

_MAP_SIZE = 1 << 36
_WHAT = "the deduplication index"
# A row: a 32-byte chunk id, its location and LMDB's node header, about 64
# bytes, in pages that splits leave half full.
_ROW_BYTES = 2 * 64
_SPARE = 1 << 16


class ChunkIndex:
    """chunk id -> location, for every chunk in a published pack."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        make_lock_file(Path(f"{path}-lock"))
        with reporting_full(path.parent, _WHAT):
            self._env = lmdb.open(
                str(path), subdir=False, map_size=_MAP_SIZE, max_dbs=4,
                sync=False, metasync=False, readahead=False,
            )
            try:
                self._chunks = self._env.open_db(b"chunks")
                self._packs = self._env.open_db(b"packs")
                self._room = Reservation(self._env, path, _WHAT)
            except BaseException:
                self._env.close()
                raise
        self.garbage_seen: set[str] = set()

    def close(self) -> None:
        """Flush and close."""
        self._room.close()
        try:
            with self._room.writing():
                self._env.sync(True)
        finally:
            self._env.close()

    def get(self, cid: ChunkId) -> ChunkLocation | None:
        """Where the repository stores `cid`, if it does."""
        with self._env.begin(db=self._chunks) as txn:
            raw = txn.get(cid)
        return None if raw is None else _location_or_none(raw)

    def get_many(self, cids: Iterable[ChunkId]) -> dict[ChunkId, ChunkLocation]:
        """Locations of those of `cids` the repository stores, in one transaction."""
        found: dict[ChunkId, ChunkLocation] = {}
        with self._env.begin(db=self._chunks) as txn:
            for cid in cids:
                raw = txn.get(cid)
                loc = None if raw is None else _location_or_none(raw)
                if loc is not None:
                    found[cid] = loc
        return found

    def add_pack(self, pack_id: PackId, rows: list[PackedChunk]) -> None:
        """Record the chunks of a durable pack."""
        self._room.ensure(len(rows) * _ROW_BYTES + _SPARE)
        with self._room.writing(), self._env.begin(write=True) as txn:
            cur = txn.cursor(db=self._chunks)
            for row in rows:
                cur.put(row.chunk_id, encode_location(location(pack_id, row)), overwrite=False)
            txn.put(pack_id, str(len(rows)).encode(), db=self._packs)

    def known_packs(self) -> set[PackId]:
        """Packs whose chunks are recorded."""
        with self._env.begin(db=self._packs) as txn:
            return {PackId(bytes(k)) for k in txn.cursor().iternext(values=False)}

    def sync(self, storage: Storage) -> tuple[int, int]:
        """Bring the cache in line with the repository's packs.

        Packs named by a garbage list count as absent: nothing new may come
        to depend on them. The names of the garbage lists taken into account
        are left in `garbage_seen`. Returns (packs added, packs forgotten).
        """
        self.garbage_seen = garbage.list_names(storage)
        doomed = garbage.doomed_packs(storage, self.garbage_seen)
        present = set(list_packs(storage)) - doomed
        known = self.known_packs()
        added = present - known
        gone = known - present
        # Forget first: a chunk that gc copied out of a listed pack into a
        # new one must end up pointing at the new one.
        if gone:
            with self._room.writing(), self._env.begin(write=True) as txn:
                cur = txn.cursor(db=self._chunks)
                for key, value in list(cur.iternext()):
                    loc = _location_or_none(value)
                    if loc is None or loc.pack_id in gone:
                        txn.delete(key, db=self._chunks)
                for pack_id in gone:
                    txn.delete(pack_id, db=self._packs)
        indexed = 0
        for pack_id in sorted(added):
            try:
                rows = read_stored_table(storage, pack_id)
            except (FileNotFoundError, RepositoryCorrupt):
                # A damaged pack is not trusted for deduplication: its
                # chunks are stored again; `check` reports the damage.
                continue
            self.add_pack(pack_id, rows)
            indexed += 1
        return indexed, len(gone)


def _location_or_none(raw: bytes) -> ChunkLocation | None:
    # The cache is rebuilt from the packs' tables: a damaged row only means
    # that its chunk is not known to be stored (it is stored again).
    try:
        return decode_location(raw)
    except RepositoryCorrupt:
        return None
