"""The limits of the reference, over an injected clock: nothing here waits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes.exo.quota import DAY, QuotaLedger
from fakes.exo.tenant import Limits

T0 = 1_800_000_000.0


def test_thirty_a_minute_then_carried_over_to_the_next_minutes():
    ledger = QuotaLedger(Limits())
    start = T0 - T0 % 60 + 59  # one second before a minute boundary: the burst is still held back
    times = [ledger.record_submission("a@x.com", 1, start) for _ in range(65)]
    assert times[:30] == [start] * 30
    assert times[30:60] == [start + 60] * 30
    assert times[60:] == [start + 120] * 5
    assert len(ledger._use["a@x.com"].scheduled) == 30  # no history beyond the last minute's worth


def test_rolling_24_hours_of_recipients():
    ledger = QuotaLedger(Limits(recipients_per_day=10))
    ledger.seed("a@x.com", now=T0, recipients_today=8)
    assert not ledger.would_exceed_daily("a@x.com", 2, T0 + 1)
    assert ledger.would_exceed_daily("a@x.com", 3, T0 + 1)
    assert ledger.would_exceed_daily("a@x.com", 3, T0 + DAY - 1)
    assert not ledger.would_exceed_daily("a@x.com", 10, T0 + DAY + 60)  # rolled out (to the minute)


def test_concurrency_counts_live_sessions_in_order():
    ledger = QuotaLedger(Limits())
    for sid in "abcd":
        ledger.open_session("Box@x.com", sid)
    assert [ledger.over_concurrency("box@x.com", sid) for sid in "abcd"] == [False] * 3 + [True]
    ledger.close_session("a")
    assert not ledger.over_concurrency("box@x.com", "d")
    assert ledger.concurrent("box@x.com") == 3


def test_seeds_must_not_be_negative():
    with pytest.raises(ValueError):
        QuotaLedger(Limits()).seed("a@x.com", now=T0, recipients_today=-1)


def test_the_daily_count_forgets_what_is_older_than_a_day_and_keeps_no_history_per_message():
    from fakes.exo.quota import DAY, QuotaLedger
    from fakes.exo.tenant import default_tenant

    ledger = QuotaLedger(default_tenant().limits)
    start = 1_800_000_000.0
    for i in range(10_000):  # a message every 10 s for a day and more
        ledger.record_submission("scanner@contoso.com", 1, start + 10 * i)
    now = start + 10 * 9_999
    assert ledger.recipients_today("scanner@contoso.com", now) == pytest.approx(DAY / 10, abs=7)
    assert len(ledger._use["scanner@contoso.com"].recipients) <= 24 * 60 + 1  # one bucket a minute


def _unforgetting(limit: int, gaps: list[float]) -> list[float]:
    """The sliding minute as first written: the last ``limit`` deliveries kept, however old."""
    scheduled: list[float] = []
    out, now = [], T0
    for gap in gaps:
        now += gap
        when = now if len(scheduled) < limit else max(now, scheduled[-limit] + 60.0)
        scheduled = (scheduled + [when])[-limit:]
        out.append(when)
    return out


@settings(max_examples=200, deadline=None)
@given(limit=st.integers(1, 40), gaps=st.lists(st.sampled_from([0.0, 0.5, 1.0, 7.0, 30.0, 59.9, 60.0, 61.0, 600.0]),
                                                 max_size=120))
def test_forgetting_deliveries_a_minute_old_schedules_every_message_as_before(limit, gaps):
    ledger = QuotaLedger(Limits(messages_per_minute=limit))
    now, whens = T0, []
    for gap in gaps:
        now += gap
        whens.append(ledger.record_submission("a@x.com", 1, now))
    assert whens == _unforgetting(limit, gaps)


def test_a_tenant_with_a_high_rate_limit_keeps_a_minutes_worth_of_deliveries():
    """A limit of thousands a minute (a load test's tenant) holds the last minute, not every message."""
    ledger = QuotaLedger(Limits(messages_per_minute=1_000_000))
    for i in range(20_000):  # 100 a second for 200 s
        ledger.record_submission("a@x.com", 1, T0 + i / 100)
    assert len(ledger._use["a@x.com"].scheduled) <= 60 * 100 + 1
