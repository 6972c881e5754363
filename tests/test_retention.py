"""The retention policy on generated histories (a fake clock: snapshot times
are given, nothing reads the real one): exactly the expected snapshots are
kept, each with the rules that keep it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from index.errors import ConfigError
from writer.retention import Decision, Policy, plan

DAY = timedelta(days=1)
ISSUE_POLICY = Policy(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=6,
                      keep_within=2 * DAY, keep_ages=(7 * DAY, 15 * DAY, 30 * DAY))


def _daily(first: datetime, days: int) -> list[tuple[str, datetime]]:
    return [(f"s{i:03}", first + i * DAY) for i in range(days)]


def _kept(decisions: list[Decision]) -> set[str]:
    return {d.time.strftime("%m-%d") for d in decisions if d.keep}


@pytest.mark.timeout(30)
def test_120_daily_snapshots_keep_exactly_the_policy() -> None:
    # 2026-01-01 .. 2026-04-30, every day at 03:00 UTC; the newest is Thursday 30 April.
    history = _daily(datetime(2026, 1, 1, 3, tzinfo=UTC), 120)
    assert history[-1][1] == datetime(2026, 4, 30, 3, tzinfo=UTC)
    decisions = plan(history, ISSUE_POLICY)
    # Worked out by hand from the calendar:
    #   last 3: 04-28..30; daily 7: 04-24..30; within 2d: 04-28..30;
    #   weekly 4 (ISO weeks from Monday): 04-30, 04-26, 04-19, 04-12;
    #   monthly 6 (only four months exist): 04-30, 03-31, 02-28, 01-31;
    #   ages 7d / 15d / 30d before 04-30 03:00: 04-23, 04-15, 03-31.
    assert _kept(decisions) == {
        "04-24", "04-25", "04-26", "04-27", "04-28", "04-29", "04-30",
        "04-23", "04-19", "04-15", "04-12", "03-31", "02-28", "01-31",
    }
    reasons = {d.time.strftime("%m-%d"): d.reasons for d in decisions}
    assert reasons["04-30"] == ["last", "daily 2026-04-30", "weekly 2026-W18",
                                "monthly 2026-04", "within 2d"]
    assert reasons["04-26"] == ["daily 2026-04-26", "weekly 2026-W17"]
    assert reasons["03-31"] == ["monthly 2026-03", "age 30d"]
    assert reasons["04-23"] == ["age 7d"]
    assert reasons["04-22"] == []


@pytest.mark.timeout(30)
def test_two_snapshots_in_a_day_keep_the_later_one_for_that_day() -> None:
    history = [
        ("a", datetime(2026, 3, 1, 3, tzinfo=UTC)),
        ("b", datetime(2026, 3, 2, 3, tzinfo=UTC)),
        ("c", datetime(2026, 3, 2, 15, tzinfo=UTC)),
        ("d", datetime(2026, 3, 3, 3, tzinfo=UTC)),
        ("e", datetime(2026, 3, 3, 3, 0, 1, tzinfo=UTC)),
    ]
    decisions = plan(history, Policy(keep_daily=3))
    assert [d.name for d in decisions if d.keep] == ["a", "c", "e"]


@pytest.mark.timeout(30)
def test_gaps_are_skipped_not_counted() -> None:
    # Backups on days 0-2, none for ten days, then days 13-14.
    history = [(f"d{i}", datetime(2026, 5, 1, 3, tzinfo=UTC) + i * DAY)
               for i in (0, 1, 2, 13, 14)]
    assert [d.name for d in plan(history, Policy(keep_daily=4)) if d.keep] == \
        ["d1", "d2", "d13", "d14"]
    # Durations count back from the newest snapshot, not from the clock.
    assert [d.name for d in plan(history, Policy(keep_within=2 * DAY)) if d.keep] == \
        ["d13", "d14"]
    # The newest snapshot at least 5 days older than the newest is day 2.
    assert [d.name for d in plan(history, Policy(keep_ages=(5 * DAY,))) if d.keep] == \
        ["d2", "d14"]


@pytest.mark.timeout(30)
def test_utc_days_whatever_the_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    history = [("late", datetime(2026, 6, 1, 23, 30, tzinfo=UTC)),
               ("early", datetime(2026, 6, 2, 0, 30, tzinfo=UTC))]
    for zone in ("UTC", "Pacific/Kiritimati", "America/Los_Angeles"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        decisions = plan(history, Policy(keep_daily=2))
        assert [d.reasons for d in decisions] == [["daily 2026-06-01"], ["daily 2026-06-02"]]
    monkeypatch.delenv("TZ")
    time.tzset()


@pytest.mark.timeout(30)
def test_holds_and_the_newest_are_always_kept() -> None:
    history = _daily(datetime(2026, 1, 1, 3, tzinfo=UTC), 10)
    decisions = plan(history, Policy(keep_ages=(365 * DAY,)), {"s002": ["tape", "legal"]})
    assert [(d.name, d.reasons) for d in decisions if d.keep] == [
        ("s002", ["hold: tape", "hold: legal"]), ("s009", ["newest"])]


@pytest.mark.timeout(30)
def test_an_empty_or_negative_policy_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty"):
        Policy().check()
    with pytest.raises(ConfigError, match="keep_daily"):
        Policy(keep_daily=-1, keep_last=1).check()
    assert plan([], ISSUE_POLICY) == []
