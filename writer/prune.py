"""Removing the snapshots a retention policy no longer keeps.

Prune only deletes snapshot index files (one atomic unlink each) and the
holds of the snapshots it removes; the chunks they used stay in their packs
until `gc` finds nothing refers to them. It holds `locks/prune.lock`, which
placing or releasing a hold also takes, so a hold placed while prune runs is
either seen by it or placed after the snapshot is gone (and then refused).
"""

from __future__ import annotations

from dataclasses import dataclass

from index.holds import HOLDS_DIR, forget_holds, held_snapshots
from index.names import snapshot_time
from index.repository import Repository, SnapshotRef
from writer.retention import Decision, Policy, plan

PRUNE_LOCK = "prune"


@dataclass
class PruneItem:
    """One snapshot and what the policy decided for it."""

    ref: SnapshotRef
    decision: Decision


def prune(repo: Repository, policy: Policy, hosts: list[str] | None = None,
          dry_run: bool = False, lock_wait: float = 60.0) -> list[PruneItem]:
    """Apply `policy` to every snapshot of `hosts` (default: all hosts).

    Returns every snapshot looked at with its decision; unless `dry_run`,
    those not kept have been removed when this returns.
    """
    policy.check()
    lock = repo.lock(PRUNE_LOCK, "prune")
    lock.acquire(wait=lock_wait)
    try:
        items: list[PruneItem] = []
        for host in hosts if hosts is not None else repo.hosts():
            refs = repo.snapshots(host)
            held = {name: [h.reason for h in holds]
                    for name, holds in held_snapshots(repo.storage, host).items()}
            decisions = plan([(r.name, snapshot_time(r.name)) for r in refs], policy, held)
            for ref, decision in zip(refs, decisions, strict=True):
                items.append(PruneItem(ref, decision))
                if not decision.keep and not dry_run:
                    repo.storage.delete(ref.relpath)
                    forget_holds(repo.storage, host, ref.name)
            if not dry_run:
                _forget_orphan_holds(repo, host, {r.name for r in repo.snapshots(host)})
        return items
    finally:
        lock.release()


def _forget_orphan_holds(repo: Repository, host: str, names: set[str]) -> None:
    """Holds of snapshots that are gone (a prune interrupted between the two
    deletions); safe under the prune lock, as holds are only placed on
    snapshots that exist."""
    for name in list(repo.storage.listdir(f"{HOLDS_DIR}/{host}")):
        if name not in names:
            forget_holds(repo.storage, host, name)
