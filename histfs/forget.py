"""Removing snapshots by name (`histfs forget`), the way prune removes
those its policy no longer keeps: under the prune lock, one atomic unlink
of the snapshot's index, then its holds. The chunks stay in their packs
until `gc` finds that nothing refers to them.

Every name is checked before anything is removed: a snapshot that does
not exist, or has an active hold, stops the command with nothing done."""

from __future__ import annotations

from index.errors import ConfigError
from index.model.repository import Repository, SnapshotRef
from index.store.holds import active_holds, forget_holds
from writer.prune import PRUNE_LOCK


def forget(repo: Repository, host: str | None, names: list[str], dry_run: bool = False,
           lock_wait: float = 60.0) -> list[SnapshotRef]:
    """Remove the snapshots `names` (each a name or "last") of `host`
    (None: the one host that has each), unless `dry_run`; returns them in
    the order given, each once. Raises SnapshotNotFound or ConfigError (a
    held snapshot, named with its holds' reasons) before removing any."""
    lock = repo.lock(PRUNE_LOCK, "forget")
    lock.acquire(wait=lock_wait)
    try:
        refs = list(dict.fromkeys(repo.select(host, name) for name in names))
        for ref in refs:
            holds = active_holds(repo.storage, ref.host, ref.name)
            if holds:
                reasons = ", ".join(h.reason for h in holds)
                raise ConfigError(f"{ref.host}/{ref.name} is held ({reasons}): nothing "
                                  "removed; release it first (histfs release)")
        if not dry_run:
            for ref in refs:
                repo.storage.delete(ref.relpath)
                forget_holds(repo.storage, ref.host, ref.name)
        return refs
    finally:
        lock.release()
