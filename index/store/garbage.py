"""Garbage lists: packs that garbage collection is about to delete.

`gc` never deletes a pack in the step that finds it unused. It first
publishes a garbage list, a small immutable JSON object,

    garbage/<YYYYmmddTHHMMSSZ>-<8 hex>.json
        {"time": <unix seconds when written>, "machine": ..., "pid": ...,
         "packs": [<64 hex>, ...]}

and deletes the packs only once every backup that might have deduplicated
against them has finished and no snapshot published since refers to them.
While a list exists, backups do not deduplicate against its packs (the
local chunk index treats them as absent), and a backup that finds a new list
when it is about to publish moves the chunks it needs out of the listed
packs first. docs/FORMAT.md section 13 has the whole protocol.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import time
from dataclasses import dataclass

from index.errors import RepositoryCorrupt
from index.format.types import PackId
from index.store.storage import Storage

GARBAGE_DIR = "garbage"
GARBAGE_SUFFIX = ".json"


@dataclass(frozen=True)
class GarbageList:
    """One published garbage list."""

    name: str
    time: float
    packs: frozenset[PackId]

    @property
    def relpath(self) -> str:
        """Where it is in the repository."""
        return f"{GARBAGE_DIR}/{self.name}"


def list_names(storage: Storage) -> set[str]:
    """Names of the garbage lists that exist now."""
    return {n for n in storage.listdir(GARBAGE_DIR) if n.endswith(GARBAGE_SUFFIX)}


def read_lists(storage: Storage, names: set[str] | None = None) -> list[GarbageList]:
    """The garbage lists (those named, or all), oldest first."""
    found = []
    for name in sorted(list_names(storage) if names is None else names):
        try:
            doc = json.loads(storage.read(f"{GARBAGE_DIR}/{name}"))
            packs = frozenset(_pack_id(h) for h in doc["packs"])
            when = doc["time"]
            # gc compares the time with lock times: it must be a real number.
            if not isinstance(when, int | float) or isinstance(when, bool) \
                    or not math.isfinite(when):
                raise ValueError(f"time {when!r:.40} is not a number of seconds")
            found.append(GarbageList(name, float(when), packs))
        except FileNotFoundError:
            continue  # processed by a gc meanwhile
        # RecursionError: JSON nested thousands deep; OverflowError: an
        # integer time too large for a float.
        except (OSError, ValueError, KeyError, TypeError, RecursionError,
                OverflowError) as exc:
            raise RepositoryCorrupt(f"garbage list {name} is unreadable: {exc}") from None
    return found


def _pack_id(text: object) -> PackId:
    if not isinstance(text, str) or len(text) != 64:
        raise ValueError(f"{text!r:.70} is not a pack id")
    return PackId(bytes.fromhex(text))


def doomed_packs(storage: Storage, names: set[str] | None = None) -> set[PackId]:
    """Every pack named by a garbage list (those named, or all)."""
    packs: set[PackId] = set()
    for g in read_lists(storage, names):
        packs |= g.packs
    return packs


def write_list(storage: Storage, packs: set[PackId]) -> GarbageList:
    """Publish a new garbage list naming `packs`."""
    name = (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)
            + GARBAGE_SUFFIX)
    now = time.time()
    doc = {"time": now, "machine": socket.gethostname(), "pid": os.getpid(),
           "packs": sorted(p.hex() for p in packs)}
    storage.makedirs(GARBAGE_DIR)
    storage.write_atomic(f"{GARBAGE_DIR}/{name}", json.dumps(doc).encode() + b"\n")
    return GarbageList(name, now, frozenset(packs))
