"""Laws every SMTP endpoint keeps whatever a client sends, checked by Hypothesis over generated
byte streams: the framer and the session together, fed as the adapter feeds them (no sockets).

Submission (smtp.office365.com), smtp-legacy and the tenant's MX, with commands, AUTH, DATA,
BDAT chunks (pipelined or not), junk, timeouts and injected faults (a reply, a drop, a delay).
Port 465 runs no session (the edge records the ClientHello or the plaintext and closes);
``tests/adapters/test_tls.py`` holds it. The laws:

- every command gets exactly one reply (continuation lines, then one last line), or a drop;
- message octets and a chunk's start get none, nor does the TLS handshake;
- nothing is said after the session closed (QUIT, a timeout, 421, a drop);
- every reply is one of the catalog's (``fakes/exo/replies.py``), rendered with its codes;
- a message is stored once, only with a 250 and only at the end of its data;
- a closed session holds no connection slot and no concurrency slot.
"""

from __future__ import annotations

import base64
import itertools

from hypothesis import event as hypothesis_event
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from fakes.exo import replies as R
from fakes.exo.events import Closed, Decision, Fault, TimedOut, TlsEstablished
from fakes.exo.observed import FaultInjected
from fakes.exo.quota import QuotaLedger
from fakes.exo.session import Session
from fakes.exo.state import EdgeState
from fakes.exo.tenant import default_tenant
from fakes.exo.tokens import TokenAuthority, generate_issuer_key, xoauth2_payload
from fakes.exo.wire import BodyData, ChunkEnd, ChunkStart, DataEnd, Framer, Line, LineTooLong, Mode, NeedData

KEY = generate_issuer_key()
NOW = 1_800_000_000.0
PEER = "127.0.0.9"
MAILBOX, PASSWORD = "scanner@contoso.com", "Scan-2026!"
COMMANDS = (Line, LineTooLong, DataEnd, ChunkEnd)  # each is owed one reply


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Fault replies a scenario may give: whole texts (no field left to fill)
FAULT_REPLIES = [reply for reply in R.CATALOG.values() if "{" not in reply.text and reply.code >= 400]
faults = st.lists(st.builds(
    Fault, stage=st.sampled_from(["ehlo", "starttls", "auth", "mail", "rcpt", "data", "message"]),
    reply=st.one_of(st.none(), st.sampled_from(FAULT_REPLIES)), remaining=st.sampled_from([1, 2]),
    close=st.booleans(), drop=st.booleans(), delay=st.sampled_from([0.0, 2.5])), max_size=3)
names = st.sampled_from(["printer.lab", "MFP-4020", "[127.0.0.9]", "bad name!", ""])
senders = st.sampled_from([MAILBOX, "reception@contoso.com", "fax@fabrikam.example", "", "no-at-sign", "<>"])
recipients = st.sampled_from(["alice@contoso.com", "ghost@contoso.com", "x@example.org", "bad", "ünï@contoso.com"])
mail_params = st.sampled_from(["", " SIZE=120", " BODY=8BITMIME", " BODY=BINARYMIME", " SMTPUTF8",
                               " SIZE=999999999999", " NOTIFY=NEVER", " SIZE=x"])
bodies = st.sampled_from([
    b"From: scanner@contoso.com\r\nSubject: scan\r\n\r\npage 1\r\n",
    b"From: ceo@contoso.com\r\nSubject: s\r\n\r\nbare\nlf\r\n",
    b"Subject: no from\r\n\r\n..dot-stuffed\r\n",
    b"From: scanner@contoso.com\r\n\r\n",
])
junk = st.sampled_from([b"NOOP", b"RSET", b"XYZZY", b"VRFY alice", b"\xff\xfe\xfd", b"AUTH CRAM-MD5",
                        b"MAIL", b"RCPT TO:", b"DATA", b"BDAT", b"BDAT x", b"STARTTLS",
                        b"c2Nhbm5lckBjb250b3NvLmNvbQ==", b"HELP", b"ETRN contoso.com"])


class EdgeLaws(RuleBasedStateMachine):
    @initialize(endpoint=st.sampled_from(["submission", "legacy", "mx"]), injected=faults,
                tarpit=st.sampled_from([0.0, 5.0]))
    def start(self, endpoint: str, injected: list[Fault], tarpit: float) -> None:
        tenant = default_tenant().with_overrides({"limits": {"max_recipients_per_message": 3}})
        ids = itertools.count()
        self.clock = NOW
        self.endpoint = endpoint
        self.state = EdgeState(
            tenant=tenant, ledger=QuotaLedger(tenant.limits), clock=lambda: self.clock,
            new_id=lambda: f"{next(ids):016X}", tokens=TokenAuthority(KEY, "tid"), faults=injected,
            tarpit=tarpit)
        self.stored: set[str] = set()
        self.message_ends = 0
        self.connect()

    def connect(self) -> None:
        self.session = Session(self.state, self.endpoint, PEER)  # type: ignore[arg-type]
        self.framer = Framer()
        self.closed = False
        self.last: Decision | None = None
        greeting = self.session.greeting()
        assert greeting.lines and greeting.lines[0].startswith(("220 ", "421 4.3.2 ")), greeting.lines
        self.closed = greeting.close

    # -- the laws, for each event and its decision ------------------------------------------------

    def feed(self, data: bytes, version: str = "TLSv1.2") -> Decision | None:
        """Bytes from the client; the decision for the last event they completed."""
        self.framer.receive(data)
        while not self.closed:
            event = self.framer.next_event()
            if isinstance(event, NeedData):
                break
            decision = self.session.receive(event)
            self.judge(event, decision)
            self.last = decision
            if decision.close:
                self.closed = True
            if decision.read_data:
                self.framer.start_data()
            if decision.start_tls:
                self.framer.discard()  # what was pipelined behind STARTTLS is dropped, as the adapter does
                established = self.session.handle(TlsEstablished(version))
                assert established.lines == (), "the handshake was answered"
        return self.last

    def judge(self, event: object, decision: Decision) -> None:
        lines = decision.lines
        if not isinstance(event, COMMANDS):
            assert lines == (), f"{event!r} was answered: {lines}"
            return
        if not lines:
            assert decision.close and any(isinstance(n, FaultInjected) and n.drop for n in decision.notes), \
                f"{event!r} got no reply"
            return
        assert all(line[3] == "-" for line in lines[:-1]) and lines[-1][3:4] in (" ", ""), lines
        if decision.reply is None:  # the greeting's answer is built from the EHLO/HELO templates
            assert isinstance(event, Line) and event.raw[:4].upper() in (b"EHLO", b"HELO"), lines
            assert lines[-1].startswith("250"), lines
        else:
            reply = decision.reply
            assert R.CATALOG.get(reply.name) is reply, f"{reply} is not in the catalog"
            head = f"{reply.code} {reply.enhanced} " if reply.enhanced else f"{reply.code} "
            assert lines[-1].startswith(head) or lines[-1] == head.strip(), (lines[-1], reply)
        if decision.accepted is not None:
            assert decision.code == 250, "stored without a 250"
            assert isinstance(event, DataEnd) or (isinstance(event, ChunkEnd) and event.last), event
            assert decision.accepted.message_id not in self.stored, "stored twice"
            self.stored.add(decision.accepted.message_id)
        if isinstance(event, DataEnd) or (isinstance(event, ChunkEnd) and event.last):
            self.message_ends += 1
            hypothesis_event(f"{self.endpoint}: message end, {decision.code}")

    def command(self, line: str | bytes, version: str = "TLSv1.2") -> Decision | None:
        raw = line if isinstance(line, bytes) else line.encode()
        return self.feed(raw + b"\r\n", version)

    def owed_continuation(self) -> bool:
        last = self.last
        return last is not None and not self.closed and last.code == 334

    # -- the client's moves -------------------------------------------------------------------------

    @rule(version=st.sampled_from(["TLSv1.2", "TLSv1.3", "TLSv1"]),
          sender=st.sampled_from([MAILBOX, "fax@fabrikam.example", "reception@contoso.com"]),
          rcpts=st.lists(st.sampled_from(["alice@contoso.com", "x@example.org"]), min_size=1, max_size=4),
          body=bodies, via=st.sampled_from(["DATA", "BDAT", None]))
    def a_message(self, version: str, sender: str, rcpts: list[str], body: bytes, via: str | None) -> None:
        """What a client does for a message: greet, secure, sign in (not at the MX), the envelope,
        and (unless ``via`` is None) the message after DATA or in one BDAT chunk."""
        self.open()
        self.command("EHLO printer.lab")
        self.starttls(version, False)
        self.command("EHLO printer.lab")
        if self.endpoint != "mx":
            self.auth_login(True, True, False)
        self.mail(sender, "")
        for rcpt in rcpts:
            self.rcpt(rcpt)
        if via == "DATA":
            self.data(body, False)
        elif via == "BDAT":
            self.bdat(body, [], True, False)

    @rule(verb=st.sampled_from(["EHLO", "HELO", "ehlo"]), name=names)
    def hello(self, verb: str, name: str) -> None:
        self.open()
        self.command(f"{verb} {name}".rstrip())

    @rule(version=st.sampled_from(["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]), pipelined=st.booleans())
    def starttls(self, version: str, pipelined: bool) -> None:
        self.open()
        self.feed(b"STARTTLS\r\n" + (b"EHLO smuggled\r\n" if pipelined else b""), version)

    @rule(good=st.booleans(), initial=st.booleans(), cancel=st.booleans())
    def auth_login(self, good: bool, initial: bool, cancel: bool) -> None:
        self.open()
        self.command(f"AUTH LOGIN {b64(MAILBOX)}" if initial else "AUTH LOGIN")
        if self.owed_continuation() and not initial:
            self.command(b64(MAILBOX))
        if self.owed_continuation():
            self.command("*" if cancel else b64(PASSWORD if good else "wrong"))

    @rule(good=st.booleans(), expired=st.booleans(), initial=st.booleans())
    def auth_xoauth2(self, good: bool, expired: bool, initial: bool) -> None:
        self.open()
        authority = self.state.tokens
        assert authority is not None
        token = authority.mint(now=self.clock, mailbox=MAILBOX, expires_in=-5 if expired else 600)
        payload = xoauth2_payload(MAILBOX if good else "alice@contoso.com", token)
        self.command(f"AUTH XOAUTH2 {payload}" if initial else "AUTH XOAUTH2")
        if self.owed_continuation():
            self.command(payload)

    @rule(sender=senders, params=mail_params)
    def mail(self, sender: str, params: str) -> None:
        self.open()
        path = sender if sender == "<>" else f"<{sender}>"
        self.command(f"MAIL FROM:{path}{params}")

    @rule(rcpt=recipients)
    def rcpt(self, rcpt: str) -> None:
        self.open()
        self.command(f"RCPT TO:<{rcpt}>")

    @rule(body=bodies, whole=st.booleans())
    def data(self, body: bytes, whole: bool) -> None:
        self.open()
        stuffed = body.replace(b"\r\n.", b"\r\n..")
        if whole:  # pipelined behind DATA, as a client that does not wait for the 354 would
            self.feed(b"DATA\r\n" + stuffed + b".\r\n")
            return
        decision = self.command("DATA")
        if decision is not None and decision.read_data and not self.closed:
            self.feed(stuffed)
            self.feed(b".\r\n")

    @rule(body=bodies, cuts=st.lists(st.integers(1, 40), max_size=3), last=st.booleans(),
          pipelined=st.booleans())
    def bdat(self, body: bytes, cuts: list[int], last: bool, pipelined: bool) -> None:
        chunks, rest = [], body
        for cut in cuts:
            chunks.append(rest[:cut])
            rest = rest[cut:]
        chunks.append(rest)
        wire = [f"BDAT {len(c)}{' LAST' if last and i == len(chunks) - 1 else ''}\r\n".encode() + c
                for i, c in enumerate(chunks)]
        if pipelined:
            self.feed(b"".join(wire))
        else:
            for piece in wire:
                self.feed(piece)

    @rule(line=junk)
    def other(self, line: bytes) -> None:
        self.open()
        self.command(line)

    @rule(size=st.integers(2000, 9000))
    def overlong(self, size: int) -> None:
        self.open()
        self.feed(b"NOOP " + b"x" * size + b"\r\n")

    @rule(seconds=st.sampled_from([1.0, 30.0, 700.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock += seconds

    @rule()
    def times_out(self) -> None:
        self.open()
        decision = self.session.handle(TimedOut())
        assert decision.close and decision.lines[-1].startswith("421 4.4.1 "), decision.lines
        self.closed = True

    @rule()
    def quit(self) -> None:
        self.open()
        if self.framer.mode is not Mode.COMMAND:  # inside a message QUIT is text: end the message first
            self.feed(b"\r\n.\r\n" if self.framer.mode is Mode.DATA else b"x" * self.framer._chunk_left)
        decision = self.command("QUIT")
        assert self.closed and decision is not None
        injected = any(isinstance(note, FaultInjected) for note in decision.notes)
        assert injected or decision.lines[-1].startswith("221 2.0.0 "), decision.lines

    def open(self) -> None:
        """Before each move: a closed session answers nothing more (the client that talks on after
        the end is not answered); then the client leaves and comes back."""
        if not self.closed:
            return
        for event in (Line(b"NOOP"), Line(b"QUIT"), ChunkStart(3, True, b"BDAT 3 LAST"), BodyData(b"abc"),
                      ChunkEnd(3, True), DataEnd(), LineTooLong(5000)):
            assert self.session.receive(event).lines == (), f"answered {event!r} after the end"
        self.session.handle(Closed())
        self.connect()

    # -- what holds between moves -------------------------------------------------------------------

    @invariant()
    def stored_only_at_ends(self) -> None:
        if hasattr(self, "stored"):
            assert len(self.stored) <= self.message_ends

    @invariant()
    def slots(self) -> None:
        if not hasattr(self, "state"):
            return
        count = self.state.open_connections[PEER]
        assert count == (0 if self.closed else 1) or (self.closed and count <= 1)
        assert 0 <= self.state.ledger.concurrent(MAILBOX) <= (0 if self.closed else 1)


TestEdgeLaws = EdgeLaws.TestCase
TestEdgeLaws.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)


def test_starttls_and_auth_in_a_transaction_are_bad_sequences() -> None:
    """RFC 5321 4.3.2 and RFC 3207: STARTTLS or AUTH once MAIL is accepted is a bad sequence
    (503 5.5.1), not a missing hello (5.5.2). At the MX, AUTH is not offered at all."""
    machine = EdgeLaws()
    machine.start("submission", [], 0.0)
    machine.command("EHLO printer.lab")
    machine.starttls("TLSv1.2", False)
    machine.command("EHLO printer.lab")
    machine.auth_login(True, True, False)
    assert machine.command(f"MAIL FROM:<{MAILBOX}>").code == 250
    decision = machine.command("STARTTLS")
    assert decision is not None and decision.reply is R.BAD_SEQUENCE, decision
    assert decision.lines[-1].startswith("503 5.5.1 Bad sequence of commands [")
    assert machine.command("AUTH LOGIN").reply is R.ALREADY_AUTHENTICATED  # RFC 4954 4, before the sequence
    machine = EdgeLaws()
    machine.start("mx", [], 0.0)
    machine.command("EHLO mta.fabrikam.example")
    assert machine.command("MAIL FROM:<fax@fabrikam.example>").code == 250
    decision = machine.command("AUTH LOGIN")
    assert decision is not None and decision.reply is R.BAD_SEQUENCE, decision
    machine.command("RCPT TO:<alice@contoso.com>")
    assert machine.command("STARTTLS").reply is R.BAD_SEQUENCE
