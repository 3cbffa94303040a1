"""Exchange Online's sending limits for one tenant, over a clock the caller passes in.

- messages per minute (30): the excess is accepted and its delivery carried over to the
  following minutes (SUB: "carried over to the following minutes");
- recipients per rolling 24 hours (10,000): beyond it, 554 5.2.0;
- concurrent submitting connections per mailbox (3): the fourth gets 432 4.3.2.

State can be seeded ("this mailbox already sent 9,998 recipients today"), so nothing waits.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field

from .tenant import Limits

DAY = 24 * 3600.0
MINUTE = 60.0


@dataclass
class _MailboxUse:
    # recipients by the minute they were sent in, oldest first, and their running total: the
    # daily check costs the same after a million messages (a minute's precision at the edge of
    # the 24 hours)
    recipients: deque[list[int]] = field(default_factory=deque)
    recipients_total: int = 0
    # when the latest deliveries were scheduled, at most messages_per_minute of them: the rate is
    # a sliding minute (no minute boundary for a burst to straddle)
    scheduled: deque[float] = field(default_factory=deque)
    sessions: list[str] = field(default_factory=list)


class QuotaLedger:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._use: dict[str, _MailboxUse] = defaultdict(_MailboxUse)

    # -- concurrency ------------------------------------------------------------------------

    def open_session(self, mailbox: str, session: str) -> None:
        sessions = self._use[mailbox.lower()].sessions
        if session not in sessions:
            sessions.append(session)

    def close_session(self, session: str) -> None:
        for use in self._use.values():
            if session in use.sessions:
                use.sessions.remove(session)

    def concurrent(self, mailbox: str) -> int:
        return len(self._use[mailbox.lower()].sessions)

    def over_concurrency(self, mailbox: str, session: str) -> bool:
        """True for a session beyond the first N of this mailbox still connected."""
        sessions = self._use[mailbox.lower()].sessions
        if session not in sessions:
            return False
        return sessions.index(session) >= self.limits.concurrent_connections_per_mailbox

    # -- recipients per day -----------------------------------------------------------------

    def recipients_today(self, mailbox: str, now: float) -> int:
        use = self._use[mailbox.lower()]
        window = use.recipients
        while window and (window[0][0] + 1) * MINUTE <= now - DAY:
            use.recipients_total -= window.popleft()[1]
        return use.recipients_total

    @staticmethod
    def _count(use: _MailboxUse, now: float, recipients: int) -> None:
        minute = int(now // MINUTE)
        if use.recipients and use.recipients[-1][0] == minute:
            use.recipients[-1][1] += recipients
        else:
            use.recipients.append([minute, recipients])
        use.recipients_total += recipients

    def would_exceed_daily(self, mailbox: str, recipients: int, now: float) -> bool:
        return self.recipients_today(mailbox, now) + recipients > self.limits.recipients_per_day

    # -- messages per minute ----------------------------------------------------------------

    def record_submission(self, mailbox: str, recipients: int, now: float) -> float:
        """Count an accepted message; returns when it may be delivered (``now`` unless throttled)."""
        use = self._use[mailbox.lower()]
        self._count(use, now, recipients)
        return self._schedule(use, now)

    def _schedule(self, use: _MailboxUse, now: float) -> float:
        """At most N deliveries in any minute: the N+1st waits until a minute after the first
        of the last N (carried over, never refused)."""
        limit = self.limits.messages_per_minute
        scheduled = use.scheduled
        # a delivery a minute old or more holds back none to come: forgotten (a tenant with a
        # limit of thousands keeps a minute's worth, not every message since it started)
        while scheduled and scheduled[0] <= now - MINUTE:
            scheduled.popleft()
        when = now if len(scheduled) < limit else max(now, scheduled[-limit] + MINUTE)
        scheduled.append(when)
        while len(scheduled) > limit:
            scheduled.popleft()
        return when

    # -- seeding ------------------------------------------------------------------------------

    def seed(
        self,
        mailbox: str,
        *,
        now: float,
        recipients_today: int = 0,
        messages_this_minute: int = 0,
    ) -> None:
        if recipients_today < 0 or messages_this_minute < 0:
            raise ValueError("quota seeds must be >= 0")
        use = self._use[mailbox.lower()]
        if recipients_today:
            self._count(use, now, recipients_today)
        if messages_this_minute:
            for _ in range(min(messages_this_minute, self.limits.messages_per_minute)):
                self._schedule(use, now)

    def reset(self) -> None:
        sessions = {box: use.sessions for box, use in self._use.items()}
        self._use = defaultdict(_MailboxUse)
        for box, live in sessions.items():
            self._use[box].sessions = live
