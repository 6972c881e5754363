"""Removing the snapshots a retention policy no longer keeps.

Prune only deletes snapshot index files (one atomic unlink each) and the
holds of the snapshots it removes; the chunks they used stay in their packs
until `gc` finds nothing refers to them. It holds `locks/prune.lock`, which
placing or releasing a hold also takes, so a hold placed while prune runs is
either seen by it or placed after the snapshot is gone (and then refused).

A snapshot whose index cannot be read still counts by its name and time,
and is removed when the policy no longer keeps it, as it would be if it
were whole; it never takes the place of a readable one, which is kept as
if the damaged one did not exist (`plan_around_damage`). Damage can make
prune keep more, never remove more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from index.errors import SnapshotDamaged, SnapshotNotFound
from index.holds import HOLDS_DIR, forget_holds, held_snapshots
from index.names import snapshot_time
from index.repository import Repository, SnapshotRef
from writer.retention import Decision, Policy, plan_around_damage

PRUNE_LOCK = "prune"


@dataclass
class PruneItem:
    """One snapshot and what the policy decided for it."""

    ref: SnapshotRef
    decision: Decision
    damaged: str | None = None
    """Why its index cannot be read; only known of snapshots the policy keeps
    (see `plan_around_damage`)."""


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
            damage: dict[str, str | None] = {}
            decisions = plan_around_damage([(r.name, snapshot_time(r.name)) for r in refs],
                                           policy, held, _damage_of(repo, host, damage))
            for ref, decision in zip(refs, decisions, strict=True):
                items.append(PruneItem(ref, decision, damage.get(ref.name)))
                if not decision.keep and not dry_run:
                    repo.storage.delete(ref.relpath)
                    forget_holds(repo.storage, host, ref.name)
            if not dry_run:
                _forget_orphan_holds(repo, host, {r.name for r in repo.snapshots(host)})
        return items
    finally:
        lock.release()


def _damage_of(repo: Repository, host: str,
               found: dict[str, str | None]) -> Callable[[str], str | None]:
    """A function saying why the index of snapshot `name` of `host` cannot
    be read (None if it can), remembering each answer in `found`."""
    def damaged(name: str) -> str | None:
        found[name] = None
        try:
            with repo.open_snapshot(SnapshotRef(host, name)):
                pass
        except SnapshotDamaged as exc:
            found[name] = exc.reason
        except SnapshotNotFound:
            pass
        return found[name]
    return damaged


def _forget_orphan_holds(repo: Repository, host: str, names: set[str]) -> None:
    """Holds of snapshots that are gone (a prune interrupted between the two
    deletions); safe under the prune lock, as holds are only placed on
    snapshots that exist."""
    for name in list(repo.storage.listdir(f"{HOLDS_DIR}/{host}")):
        if name not in names:
            forget_holds(repo.storage, host, name)
