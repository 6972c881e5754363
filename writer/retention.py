"""Which snapshots of a host a retention policy keeps, and why.

Rules combine as a union: a snapshot is kept when any rule keeps it, and
each decision carries the rules that keep it, so `prune --dry-run` can show
them. Periods are UTC calendar days, ISO weeks, months and years. Durations
(`keep_within`, `keep_ages`) are measured back from the host's newest
snapshot, not from the clock: a host whose backups have stopped keeps what
it has until they run again. The newest snapshot and held snapshots are
always kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from index.errors import ConfigError


@dataclass(frozen=True)
class Policy:
    """How many snapshots to keep per rule; 0 or None means the rule is off."""

    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    keep_within: timedelta | None = None
    keep_ages: tuple[timedelta, ...] = ()

    def is_empty(self) -> bool:
        """True when no rule is on (such a policy would remove everything)."""
        return not (self.keep_last or self.keep_hourly or self.keep_daily or self.keep_weekly
                    or self.keep_monthly or self.keep_yearly or self.keep_within
                    or self.keep_ages)

    def check(self) -> Policy:
        """Return the policy if it is usable, else raise ConfigError."""
        for name in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly",
                     "keep_monthly", "keep_yearly"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be 0 or more, got {getattr(self, name)}")
        if self.is_empty():
            raise ConfigError("the retention policy is empty: set at least one of keep_last, "
                              "keep_daily, keep_weekly, keep_monthly, keep_within, keep_ages")
        return self


@dataclass
class Decision:
    """What the policy says about one snapshot."""

    name: str
    time: datetime
    reasons: list[str] = field(default_factory=list)

    @property
    def keep(self) -> bool:
        """Whether the snapshot stays."""
        return bool(self.reasons)


_PERIODS: list[tuple[str, Callable[[datetime], str]]] = [
    ("hourly", lambda t: t.strftime("%Y-%m-%d %H:00")),
    ("daily", lambda t: t.strftime("%Y-%m-%d")),
    ("weekly", lambda t: t.strftime("%G-W%V")),
    ("monthly", lambda t: t.strftime("%Y-%m")),
    ("yearly", lambda t: t.strftime("%Y")),
]


def format_duration(d: timedelta) -> str:
    """A duration the way the configuration writes it: 7d, 36h, 90m, 45s."""
    seconds = int(d.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def plan(snapshots: Sequence[tuple[str, datetime]], policy: Policy,
         holds: dict[str, list[str]] | None = None) -> list[Decision]:
    """Decide for each snapshot `(name, time)` of one host, given oldest
    first, whether `policy` keeps it; `holds` maps names to hold reasons.
    Returns the decisions in the order given."""
    holds = holds or {}
    decisions = [Decision(name, when) for name, when in snapshots]
    if not decisions:
        return decisions
    newest_first = decisions[::-1]
    newest = newest_first[0]
    for d in newest_first[:policy.keep_last]:
        d.reasons.append("last")
    for label, bucket_of in _PERIODS:
        count = getattr(policy, f"keep_{label}")
        seen: set[str] = set()
        for d in newest_first:
            if len(seen) >= count:
                break
            bucket = bucket_of(d.time)
            if bucket not in seen:
                seen.add(bucket)
                d.reasons.append(f"{label} {bucket}")
    if policy.keep_within is not None:
        since = newest.time - policy.keep_within
        for d in newest_first:
            if d.time < since:
                break
            d.reasons.append(f"within {format_duration(policy.keep_within)}")
    for age in policy.keep_ages:
        cutoff = newest.time - age
        oldest_enough = next((d for d in newest_first if d.time <= cutoff), None)
        if oldest_enough is not None:
            oldest_enough.reasons.append(f"age {format_duration(age)}")
    for d in decisions:
        d.reasons.extend(f"hold: {reason}" for reason in holds.get(d.name, []))
    if not newest.reasons:
        newest.reasons.append("newest")
    return decisions


def plan_around_damage(snapshots: Sequence[tuple[str, datetime]], policy: Policy,
                       holds: dict[str, list[str]] | None,
                       damaged: Callable[[str], str | None]) -> list[Decision]:
    """`plan`, where a damaged snapshot never takes the place of a readable
    one. The policy is applied to every snapshot, a damaged one counting by
    its name and time (so it expires like any other), and again to the
    readable ones alone; a snapshot that either keeps is kept. So damage
    never removes a snapshot that `plan` would keep, and never leaves a
    period with only an unreadable snapshot where a readable one was.

    `damaged(name)` says why a snapshot cannot be read, or None; it is only
    asked about snapshots that one of the two keeps (a snapshot that neither
    keeps changes no decision, damaged or not)."""
    everything = plan(snapshots, policy, holds)
    reasons: dict[str, str | None] = {}
    while True:
        readable = plan([s for s in snapshots if not reasons.get(s[0])], policy, holds)
        asked = dict.fromkeys(d.name for d in (*everything, *readable)
                              if d.keep and d.name not in reasons)
        if not asked:
            break
        for name in asked:
            reasons[name] = damaged(name)
    instead = {d.name: d.reasons for d in readable if d.keep}
    for d in everything:
        if not d.keep and d.name in instead:
            d.reasons.extend(f"{r} (among readable snapshots)" for r in instead[d.name])
    return everything
