"""The local deduplication index: which chunks the repository already has.

It is a cache on a local disk (LMDB must not be written over NFS) that can
be rebuilt from the repository alone: `sync` reads the table of every pack it
does not know yet and forgets packs that have gone or changed size. Entries
are added only for packs that are already durable, so the cache never
promises a chunk that a crash could lose. One cache serves one repository
instance (`Repository.chunk_cache_path`): two copies of a repository share
an id, never a cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import lmdb

from index.errors import EncryptionMismatch, RepositoryCorrupt
from index.format.blob import ENCRYPTION_NONE
from index.format.pack import PackedChunk, location
from index.format.snapshot_format import CHUNK_LOCATION, decode_location, encode_location
from index.format.types import ChunkId, ChunkLocation, PackId
from index.store import garbage
from index.store.local_space import Reservation, make_lock_file, reporting_full
from index.store.packs import list_pack_sizes, read_stored_table
from index.store.private import FILE_MODE, private_dir
from index.store.storage import Storage

_MAP_SIZE = 1 << 36
_WHAT = "the deduplication index"
# A row: a 32-byte chunk id, its location and LMDB's node header, about 64
# bytes, in pages that splits leave half full.
_ROW_BYTES = 2 * 64
_SPARE = 1 << 16
_ROWS_PER_TXN = 256
# The record of a pack whose chunks are being added: no size (see add_pack).
_ADDING = b"adding"


class ChunkIndex:
    """chunk id -> location, for every chunk in a published pack."""

    def __init__(self, path: Path) -> None:
        self.path = path
        private_dir(path.parent)
        make_lock_file(Path(f"{path}-lock"))
        with reporting_full(path.parent, _WHAT):
            self._env = lmdb.open(
                str(path), subdir=False, map_size=_MAP_SIZE, max_dbs=4,
                sync=False, metasync=False, readahead=False, mode=FILE_MODE,
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

    def get_many_raw(self, cids: list[ChunkId]) -> dict[ChunkId, bytes]:
        """Those of `cids` the repository stores, each with its location as
        this index holds it: the bytes of a snapshot's `chunks` value."""
        with self._env.begin(db=self._chunks, buffers=False) as txn:
            return {ChunkId(key): value for key, value in txn.cursor().getmulti(cids)
                    if len(value) == CHUNK_LOCATION.size}

    def add_pack(self, pack_id: PackId, rows: list[PackedChunk], size: int) -> None:
        """Record the chunks of a durable pack of `size` bytes.

        A transaction keeps every page it changes in memory (and LMDB keeps
        that memory for the next ones), and thousands of chunk ids change
        as many pages: the rows go in a few thousand at a time. Until the
        last, the pack is recorded without a size, which `sync` takes for
        a pack to read again (after a crash in between)."""
        self._room.ensure(len(rows) * _ROW_BYTES + _SPARE)
        with self._room.writing():
            if len(rows) > _ROWS_PER_TXN:
                with self._env.begin(write=True) as txn:
                    txn.put(pack_id, _ADDING, db=self._packs)
            for start in range(0, max(len(rows), 1), _ROWS_PER_TXN):
                with self._env.begin(write=True) as txn:
                    txn.cursor(db=self._chunks).putmulti(
                        [(row.chunk_id, encode_location(location(pack_id, row)))
                         for row in rows[start : start + _ROWS_PER_TXN]], overwrite=False)
                    if start + _ROWS_PER_TXN >= len(rows):
                        txn.put(pack_id, f"{len(rows)} {size}".encode(), db=self._packs)

    def known_packs(self) -> set[PackId]:
        """Packs whose chunks are recorded."""
        return set(self._known_sizes())

    def _known_sizes(self) -> dict[PackId, int | None]:
        """Recorded packs and the size each had (None: not recorded)."""
        with self._env.begin(db=self._packs) as txn:
            return {PackId(bytes(k)): _recorded_size(bytes(v)) for k, v in txn.cursor()}

    def sync(self, storage: Storage, encryption: int | None = None) -> tuple[int, int]:
        """Bring the cache in line with the repository's packs.

        A pack counts as known only if the repository has a pack of that
        name and of the size recorded: one that is gone, or has another
        size (damaged, or another repository's), is forgotten with its
        chunks before anything relies on them, and read again if present.
        This costs one listing of the packs with their sizes, nothing per
        chunk. Packs named by a garbage list count as absent: nothing new
        may come to depend on them. The names of the garbage lists taken
        into account are left in `garbage_seen`. Returns (packs added,
        packs forgotten).

        `encryption` is the blob encryption byte of the repository: a new
        pack whose blobs have another one is not used, and in a repository
        whose config says it is unencrypted it stops everything
        (`EncryptionMismatch`): sealed data there means that the config was
        replaced, and nothing may be written in the clear.
        """
        self.garbage_seen = garbage.list_names(storage)
        doomed = garbage.doomed_packs(storage, self.garbage_seen)
        present = {p: size for p, size in list_pack_sizes(storage).items() if p not in doomed}
        known = self._known_sizes()
        changed = {p for p, size in known.items() if p in present and present[p] != size}
        added = (present.keys() - known.keys()) | changed
        gone = (known.keys() - present.keys()) | changed
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
                rows = read_stored_table(storage, pack_id, encryption)
            except EncryptionMismatch as exc:
                if encryption == ENCRYPTION_NONE:
                    raise EncryptionMismatch(
                        f"{exc}, but the config of {storage} says the repository is not "
                        "encrypted: refusing to write in the clear (the config may have "
                        "been replaced)") from None
                continue
            except (FileNotFoundError, RepositoryCorrupt):
                # A damaged pack is not trusted for deduplication: its
                # chunks are stored again; `check` reports the damage.
                continue
            self.add_pack(pack_id, rows, present[pack_id])
            indexed += 1
        return indexed, len(gone)


def _recorded_size(value: bytes) -> int | None:
    # "<chunks> <size>"; a damaged value only means the pack is read again.
    fields = value.split()
    return int(fields[1]) if len(fields) == 2 and fields[1].isdigit() else None


def _location_or_none(raw: bytes) -> ChunkLocation | None:
    # The cache is rebuilt from the packs' tables: a damaged row only means
    # that its chunk is not known to be stored (it is stored again).
    try:
        return decode_location(raw)
    except RepositoryCorrupt:
        return None
