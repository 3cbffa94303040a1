"""Laws of the submission session, checked by Hypothesis over generated command sequences (no sockets)."""

from __future__ import annotations

import base64
import itertools
import re

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fakes.exo import session as S
from fakes.exo.quota import QuotaLedger
from fakes.exo.tenant import default_tenant
from fakes.exo.tokens import TokenAuthority, generate_issuer_key, xoauth2_payload

KEY = generate_issuer_key()
NOW = 1_800_000_000.0
LINE = re.compile(r"^\d{3}([ -].*)?$")
SUFFIX = re.compile(r" \[\S+ \d{4}-\d\d-\d\dT[\d:.]+Z [0-9A-F]{16}\]$")
b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731

senders = st.sampled_from(["scanner@contoso.com", "reception@contoso.com", "ceo@contoso.com", "", "bogus"])
recipients = st.sampled_from(["alice@contoso.com", "ghost@contoso.com", "x@example.org", "not-an-address"])
versions = st.sampled_from(["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])


class SubmissionLaws(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        tenant = default_tenant().with_overrides({"limits": {"max_recipients_per_message": 3}})
        ids = itertools.count()
        self.clock = NOW
        self.state = S.EdgeState(
            tenant=tenant, ledger=QuotaLedger(tenant.limits), clock=lambda: self.clock,
            new_id=lambda: f"{next(ids):016X}", tokens=TokenAuthority(KEY, "tid"),
        )
        self.stored = 0
        self.told_250_after_data = 0
        self.connect()

    def connect(self) -> None:
        self.session = S.Session(self.state, "submission", "127.0.0.9")
        self.greeted = self.session.greeting()
        self.tls: str | None = None
        self.authenticated = False
        self.mail_accepted = False
        self.rcpts_accepted = 0
        self.in_data = False
        self.closed = False

    def send(self, event: S.Event) -> S.Decision:
        decision = self.session.handle(event)
        for line in decision.lines:
            assert LINE.match(line), line
        if decision.reply is not None and decision.reply.suffix:
            assert SUFFIX.search(decision.lines[-1]), decision.lines[-1]
        if decision.accepted is not None:
            assert decision.code == 250, "something was stored without a 250"
            self.stored += 1
        if isinstance(event, S.MessageBody) and decision.code == 250:
            self.told_250_after_data += 1
        if self.closed:
            assert decision.lines == (), "a closed session spoke"
            return decision
        if decision.close:
            self.closed = True
        return decision

    @precondition(lambda self: not self.closed)
    @rule(verb=st.sampled_from(["EHLO", "HELO"]))
    def hello(self, verb):
        decision = self.send(S.Hello(verb, "device"))
        if decision.code == 250:
            self.mail_accepted, self.rcpts_accepted, self.in_data = False, 0, False
            if verb == "EHLO":
                advertised = "\n".join(decision.lines)
                assert ("AUTH LOGIN XOAUTH2" in advertised) == bool(self.tls)
                assert ("STARTTLS" in advertised) == (not self.tls)

    @precondition(lambda self: not self.closed)
    @rule(version=versions)
    def starttls(self, version):
        decision = self.send(S.StartTls())
        if decision.start_tls:
            assert not self.tls
            self.send(S.TlsEstablished(version))
            self.tls = version
            self.mail_accepted, self.rcpts_accepted = False, 0

    @precondition(lambda self: not self.closed)
    @rule(version=versions)
    def greet_and_secure(self, version):
        """What every client does first: EHLO, STARTTLS, handshake, EHLO again."""
        self.hello("EHLO")
        self.starttls(version)
        self.hello("EHLO")

    @precondition(lambda self: not self.closed)
    @rule(password=st.sampled_from(["Scan-2026!", "wrong"]), initial=st.booleans())
    def auth_login(self, password, initial):
        decision = self.send(S.Auth("LOGIN", b64("scanner@contoso.com") if initial else None))
        if decision.code == 334 and not initial:
            decision = self.send(S.AuthLine(b64("scanner@contoso.com")))
        if decision.code == 334:
            decision = self.send(S.AuthLine(b64(password)))
            if decision.code == 235:
                assert password == "Scan-2026!" and self.tls in ("TLSv1.2", "TLSv1.3")
                self.authenticated = True

    @precondition(lambda self: not self.closed)
    @rule(good=st.booleans(), expired=st.booleans())
    def auth_xoauth2(self, good, expired):
        authority = self.state.tokens
        assert authority is not None
        token = authority.mint(now=NOW, mailbox="scanner@contoso.com", expires_in=-5 if expired else 600)
        user = "scanner@contoso.com" if good else "alice@contoso.com"
        decision = self.send(S.Auth("XOAUTH2", xoauth2_payload(user, token)))
        if decision.code == 235:
            assert good and not expired and self.tls in ("TLSv1.2", "TLSv1.3")
            self.authenticated = True

    @precondition(lambda self: not self.closed)
    @rule(sender=senders)
    def mail(self, sender):
        decision = self.send(S.MailFrom(sender))
        if decision.code == 250:
            assert self.tls and self.authenticated, "MAIL accepted before TLS and AUTH"
            assert not self.mail_accepted, "nested MAIL accepted"
            self.mail_accepted = True

    @precondition(lambda self: not self.closed)
    @rule(rcpt=recipients)
    def rcpt(self, rcpt):
        decision = self.send(S.RcptTo(rcpt))
        if decision.code == 250:
            assert self.mail_accepted, "250 for RCPT before MAIL"
            self.rcpts_accepted += 1
            assert self.rcpts_accepted <= 3

    @precondition(lambda self: not self.closed)
    @rule(bare_lf=st.booleans(), header_from=senders)
    def data(self, bare_lf, header_from):
        decision = self.send(S.Data())
        if decision.code != 354:
            return
        assert self.rcpts_accepted > 0, "354 without a recipient"
        ending = "\n" if bare_lf else "\r\n"
        body = f"From: {header_from}\r\nSubject: s\r\n\r\nline{ending}".encode()
        decision = self.send(S.MessageBody(body))
        if decision.code == 250:
            assert not bare_lf
        self.mail_accepted, self.rcpts_accepted = False, 0

    @precondition(lambda self: not self.closed)
    @rule(event=st.sampled_from([S.Reset(), S.Noop(), S.Unknown("XYZZY")]))
    def other(self, event):
        decision = self.send(event)
        if isinstance(event, S.Reset) and decision.code == 250:
            self.mail_accepted, self.rcpts_accepted = False, 0

    @rule(seconds=st.floats(0, 120))
    def time_passes(self, seconds):
        self.clock += seconds

    @precondition(lambda self: self.closed)
    @rule()
    def reconnect(self):
        """The device's next attempt: a new connection (the old one is gone)."""
        self.session.handle(S.Closed())
        self.connect()

    @precondition(lambda self: not self.closed)
    @rule()
    def quit(self):
        self.send(S.Quit())
        assert self.closed

    @invariant()
    def stored_only_after_250(self):
        assert self.stored == self.told_250_after_data

    @invariant()
    def quota_never_negative(self):
        ledger = self.state.ledger
        assert ledger.recipients_today("scanner@contoso.com", self.clock) >= 0
        assert 0 <= ledger.concurrent("scanner@contoso.com") <= 1

    @invariant()
    def closed_sessions_hold_no_slot(self):
        if self.closed:
            assert self.state.ledger.concurrent("scanner@contoso.com") == 0


TestSubmissionLaws = SubmissionLaws.TestCase
TestSubmissionLaws.settings = settings(max_examples=80, stateful_step_count=40, deadline=None)
