"""Pointing a published snapshot at the new home of chunks that gc moved.

A snapshot index names the pack and offset of every chunk it uses (that is
what makes it standalone). When gc copies the live chunks of a mostly empty
pack into a new pack, each snapshot that used the old pack gets a new index
(index.model.snapshot_editor) whose rows for the moved chunks name the new place.
"""

from __future__ import annotations

from index.errors import RepositoryCorrupt
from index.format.types import ChunkId, ChunkLocation, PackId
from index.model.repository import Repository, SnapshotRef
from index.model.snapshot_editor import SnapshotEditor


def relocate_snapshot(repo: Repository, ref: SnapshotRef, moved_packs: set[PackId],
                      moves: dict[ChunkId, ChunkLocation]) -> int:
    """Publish a new index of `ref` in which every chunk naming one of
    `moved_packs` names its place in `moves` instead. Returns how many
    chunks changed (0: nothing was written)."""
    with SnapshotEditor(repo, ref, repo.cache.work_file("index")) as editor:
        places: dict[ChunkId, ChunkLocation] = {}
        for cid, loc in editor.locations():
            if loc.pack_id in moved_packs:
                new = moves.get(cid)
                if new is None:
                    raise RepositoryCorrupt(f"{ref.relpath}: chunk {cid.hex()} was not moved "
                                            "with its pack")
                places[cid] = new
        if places:
            editor.update_locations(places)
            repo.indexes.publish(ref.relpath, editor.finish())
        return len(places)
