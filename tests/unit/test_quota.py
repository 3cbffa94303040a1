"""The limits of the reference, over an injected clock: nothing here waits."""

from __future__ import annotations

import pytest

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
