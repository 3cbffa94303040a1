"""The suffix's time, worked out once a millisecond, reads as datetime gives it for any moment."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import example, given
from hypothesis import strategies as st

from fakes.exo.replies import AUTH_BAD_TOKEN, ReplyContext


@given(now=st.floats(min_value=0, max_value=4e9, allow_nan=False))
@example(now=112993923.61099981)  # datetime rounds to the microsecond first: .611, not .610
@example(now=1764480999.9999996)  # rounded up into the next second
def test_the_suffix_time_is_datetimes_to_the_millisecond(now):
    moment = datetime.fromtimestamp(now, UTC)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    context = ReplyContext("AM0PR01CA0001.eurprd01.prod.exchangelabs.com", now, "08DE2F3A4B5C6D7E")
    assert context.timestamp == expected
    assert AUTH_BAD_TOKEN.render(context) == ("535 5.7.3 Authentication unsuccessful [AM0PR01CA0001.eurprd01.prod."
                                              f"exchangelabs.com {expected} 08DE2F3A4B5C6D7E]")
