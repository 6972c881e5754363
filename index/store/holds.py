"""Holds: reasons to keep a snapshot whatever the retention policy says.

A hold and its release are separate small immutable objects, so placing and
releasing one never rewrites a file (which is what lets them work on NFS and
object storage):

    holds/<host>/<snapshot>/<id>.hold      {"reason", "time", "machine", "pid"}
    holds/<host>/<snapshot>/<id>.release   {"time", "machine", "pid"}

A hold is active while its `.release` does not exist. Prune never removes a
snapshot with an active hold, and deletes a snapshot's holds with it.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass

from index.errors import ConfigError, RepositoryCorrupt
from index.store.storage import Storage

HOLDS_DIR = "holds"
HOLD_SUFFIX = ".hold"
RELEASE_SUFFIX = ".release"
MAX_REASON = 200


@dataclass(frozen=True)
class Hold:
    """One active hold on a snapshot."""

    hold_id: str
    reason: str
    time: str
    machine: str


def check_reason(reason: str) -> str:
    """A hold reason is one short printable line."""
    if not reason.strip() or len(reason) > MAX_REASON or not reason.isprintable():
        raise ConfigError(f"invalid hold reason {reason!r}: use one printable line "
                          f"of 1 to {MAX_REASON} characters")
    return reason.strip()


def holds_dir(host: str, name: str) -> str:
    """The repository directory with the holds of one snapshot."""
    return f"{HOLDS_DIR}/{host}/{name}"


def _stamp() -> dict[str, object]:
    return {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": socket.gethostname(), "pid": os.getpid()}


def active_holds(storage: Storage, host: str, name: str) -> list[Hold]:
    """The holds on snapshot `host/name` that have not been released, oldest first."""
    where = holds_dir(host, name)
    names = set(storage.listdir(where))
    holds = []
    for fname in sorted(names):
        if not fname.endswith(HOLD_SUFFIX):
            continue
        hold_id = fname[: -len(HOLD_SUFFIX)]
        if hold_id + RELEASE_SUFFIX in names:
            continue
        try:
            doc = json.loads(storage.read(f"{where}/{fname}"))
            holds.append(Hold(hold_id, str(doc["reason"]), str(doc.get("time", "?")),
                              str(doc.get("machine", "?"))))
        except FileNotFoundError:
            continue
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            # An unreadable hold still holds: better kept too long than lost.
            # (RecursionError: JSON nested thousands deep.)
            raise RepositoryCorrupt(f"hold {where}/{fname} is unreadable: {exc}") from None
    return holds


def held_snapshots(storage: Storage, host: str) -> dict[str, list[Hold]]:
    """Active holds of every snapshot of `host` that has one."""
    found = {}
    for name in sorted(storage.listdir(f"{HOLDS_DIR}/{host}")):
        holds = active_holds(storage, host, name)
        if holds:
            found[name] = holds
    return found


def place_hold(storage: Storage, host: str, name: str, reason: str) -> Hold:
    """Publish a new hold; the caller has checked that the snapshot exists."""
    reason = check_reason(reason)
    # Names sort in the order holds were placed (to the nanosecond), which
    # is the order `snapshots` shows them in.
    now = time.time_ns()
    hold_id = (time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 10**9))
               + f".{now % 10**9:09d}Z-{secrets.token_hex(4)}")
    doc = {"reason": reason, **_stamp()}
    storage.makedirs(holds_dir(host, name))
    storage.write_atomic(f"{holds_dir(host, name)}/{hold_id}{HOLD_SUFFIX}",
                         json.dumps(doc).encode() + b"\n")
    return Hold(hold_id, reason, str(doc["time"]), str(doc["machine"]))


def release_holds(storage: Storage, host: str, name: str, reason: str) -> list[Hold]:
    """Release every active hold on the snapshot with this reason; returns them."""
    reason = check_reason(reason)
    released = [h for h in active_holds(storage, host, name) if h.reason == reason]
    for hold in released:
        storage.write_atomic(f"{holds_dir(host, name)}/{hold.hold_id}{RELEASE_SUFFIX}",
                             json.dumps(_stamp()).encode() + b"\n")
    return released


def forget_holds(storage: Storage, host: str, name: str) -> None:
    """Delete the hold objects of a snapshot that no longer exists."""
    storage.delete_tree(holds_dir(host, name))
