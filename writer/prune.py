"""Removing the snapshots a retention policy no longer keeps.

Prune only deletes snapshot index files (one atomic unlink each) and the
holds of the snapshots it removes; the chunks they used stay in their packs
until `gc` finds nothing refers to them. It holds `locks/prune.lock`, which
placing or releasing a hold also takes (`hold`, `release`), so a hold placed
while prune runs is either seen by it or placed after the snapshot is gone
(and then refused).

A snapshot whose index cannot be read still counts by its name and time,
and is removed when the policy no longer keeps it, as it would be if it
were whole; it never takes the place of a readable one, which is kept as
if the damaged one did not exist (`plan_around_damage`). Damage can make
prune keep more, never remove more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from index.errors import ConfigError, SnapshotDamaged, SnapshotNotFound
from index.format.names import is_snapshot_name, snapshot_time
from index.model.repository import Repository, SnapshotRef
from index.store.holds import (
    HOLDS_DIR,
    Hold,
    active_holds,
    forget_holds,
    held_snapshots,
    place_hold,
    release_holds,
)
from writer.retention import Decision, Policy, plan_around_damage

PRUNE_LOCK = "prune"
HOLD_LOCK_WAIT = 300.0
"""How long placing or releasing a hold waits for a running prune (seconds)."""


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
                    _remove(repo, ref)
            if not dry_run:
                _forget_orphan_holds(repo, host, {r.name for r in repo.snapshots(host)})
        return items
    finally:
        lock.release()


def forget(repo: Repository, host: str | None, names: list[str], dry_run: bool = False,
           lock_wait: float = 60.0) -> list[SnapshotRef]:
    """Remove the snapshots `names` (each a name or "last") of `host`
    (None: the one host that has each) as prune removes those its policy
    does not keep, unless `dry_run`; returns them in the order given, each
    once. Every name is checked first: raises SnapshotNotFound, or
    ConfigError for a held snapshot (with its holds' reasons), before
    removing any."""
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
                _remove(repo, ref)
        return refs
    finally:
        lock.release()


def _remove(repo: Repository, ref: SnapshotRef) -> None:
    """Remove snapshot `ref` (under the prune lock): one atomic unlink of
    its index, then its holds. Its chunks stay in their packs until gc
    finds nothing refers to them."""
    repo.storage.delete(ref.relpath)
    forget_holds(repo.storage, ref.host, ref.name)


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


@dataclass(frozen=True)
class Released:
    """What `release` did."""

    ref: SnapshotRef
    holds: list[Hold]
    """The holds released; none when there was nothing to release."""
    exists: bool
    """Whether the snapshot exists (it may have been pruned already)."""


def hold(repo: Repository, host: str, snapshot: str, reason: str) -> tuple[SnapshotRef, Hold]:
    """Hold `snapshot` (a name or "last") of `host` with `reason`, under the
    prune lock: it cannot be pruned between the check that it exists and
    the hold."""
    lock = repo.lock(PRUNE_LOCK, f"hold on {host}")
    lock.acquire(wait=HOLD_LOCK_WAIT)
    with lock:
        ref = repo.select(host, snapshot)
        return ref, place_hold(repo.storage, ref.host, ref.name, reason)


def release(repo: Repository, host: str, snapshot: str, reason: str) -> Released:
    """Release the holds with `reason` of `snapshot` (a name or "last") of
    `host`, under the prune lock. A well-formed name of a snapshot of a
    known host that is not there (any more) is not an error: its holds, if
    any are left, are released too."""
    lock = repo.lock(PRUNE_LOCK, f"release on {host}")
    lock.acquire(wait=HOLD_LOCK_WAIT)
    with lock:
        try:
            ref, exists = repo.select(host, snapshot), True
        except SnapshotNotFound:
            if not (is_snapshot_name(snapshot) and host in repo.hosts()):
                raise
            ref, exists = SnapshotRef(host, snapshot), False
        return Released(ref, release_holds(repo.storage, ref.host, ref.name, reason), exists)
