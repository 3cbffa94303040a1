"""One SMTP connection at the edge, as a state machine: an event goes in, a ``Decision`` comes out.

The adapter (``fakes.smtp``) only moves bytes: it feeds them to a ``fakes.exo.wire.Framer``,
hands each wire event to ``Session.receive``, writes the decision's lines, upgrades to TLS when
told, stores an accepted message before it writes the 250, and closes when told. Everything
Exchange Online would decide is decided here, for the submission endpoint (smtp.office365.com,
and smtp-legacy) and for the tenant MX: commands, AUTH, the message after DATA or over BDAT
chunks (RFC 3030), limits, and when a connection is refused or ended.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from msgspec.structs import replace

from . import acceptance, rules
from . import replies as R
from .commands import (
    BARE_MAIL,
    MALFORMED_PATH,
    mail_parameter_refusal,
    parse_command,
    rcpt_parameter_refusal,
    valid_helo_name,
)
from .errors import InternalError
from .events import (
    SILENT,
    Auth,
    AuthLine,
    BodyData,
    ChunkEnd,
    ChunkStart,
    Closed,
    Data,
    DataEnd,
    Decision,
    Event,
    Fault,
    Hello,
    LineTooLong,
    MailFrom,
    Malformed,
    MessageBody,
    Noop,
    Quit,
    RcptTo,
    Reset,
    StartTls,
    TimedOut,
    TlsEstablished,
    Unknown,
)
from .message import (
    Headers,
    MessageBuffer,
    has_bare_lf,
    header_block,
    message_facts,
    read_headers,
)
from .names import LEGACY_TLS_VERSIONS, Endpoint, is_address
from .observed import Attribution, AuthOutcome, FaultInjected, LegacyTls, Observed, Refused
from .phases import AUTH_PHASES, MAX_PROTOCOL_ERRORS, PROTOCOL_ERRORS, SEQUENCE, STAGES, Phase
from .replies import Reply, ReplyContext
from .secrets import unknown_user
from .state import EdgeState
from .tenant import Mailbox
from .tokens import TokenCheck, parse_xoauth2
from .wire import Line, WireEvent


class Session:
    """The edge's side of one connection."""

    def __init__(self, state: EdgeState, endpoint: Endpoint, peer_ip: str, session_id: str | None = None):
        self.state = state
        self.endpoint = endpoint
        self.peer_ip = peer_ip
        self.id = session_id or state.new_id()
        self.phase = Phase.CONNECTED
        self.tls_version: str | None = None
        self.certificate_names: tuple[str, ...] = ()
        self.user: Mailbox | None = None
        self.auth_mechanism: str | None = None
        self._login_user = ""
        self._legacy_refused = False
        self._pending_delay = 0.0
        self.mail_from: str | None = None
        self.mail_params: dict[str, str | None] = {}
        self.recipients: list[str] = []
        self.attribution = rules.attribute(state.tenant, peer_ip, None, None)
        self.started = state.clock()
        self.protocol_errors = 0
        self._admitted = False
        self._released = False
        self._body: MessageBuffer | None = None
        self._chunk_refusal: Reply | None = None  # the answer owed after the current BDAT chunk
        self._chunk_fault: Fault | None = None  # the data stage's injected fault, due after the first chunk
        self._chunks = 0
        self.parsed: Event | None = None  # the latest line, as read: a command or an answer to a 334
        self.stage = "banner"  # what the latest reply answers: ehlo, auth, mail, rcpt, data, message…

    # -- naming -----------------------------------------------------------------------------

    @property
    def is_mx(self) -> bool:
        return self.endpoint == "mx"

    @property
    def host(self) -> str:
        return self.state.mx_server_host if self.is_mx else self.state.submission_host

    def context(self) -> ReplyContext:
        host = self.state.mx_suffix_host if self.is_mx else self.state.suffix_host
        return ReplyContext(host=host, now=self.state.clock(), session_id=self.id)

    @property
    def in_auth_exchange(self) -> bool:
        """The next line is an answer to a 334, not a command."""
        return self.phase in AUTH_PHASES

    def greeting(self) -> Decision:
        """The banner, or 421 4.3.2 when the connection is one too many."""
        refusal = self.state.admit(self.peer_ip)
        if refusal is not None:
            self.phase = Phase.CLOSED
            return Decision((refusal.render(),), reply=refusal, close=True,
                            notes=(Refused(reason="connection limit", peer=self.peer_ip),))
        self._admitted = True
        return Decision((R.banner(self.host, self.state.clock(), self.id),))

    def _injected(self, stage: str) -> Decision | None:
        """An injected fault at this stage, as a decision; a delay alone rides on the next answer."""
        fault = self.state.take_fault(stage)
        return None if fault is None else self._fault_decision(fault)

    def _fault_decision(self, fault: Fault) -> Decision | None:
        note = (FaultInjected(stage=fault.stage, reply=fault.reply.render() if fault.reply else None,
                              drop=fault.drop, delay=fault.delay),)
        if fault.drop:
            self.phase = Phase.CLOSED
            self._release()
            return Decision((), close=True, delay=fault.delay, notes=note)
        if fault.reply is not None:
            decision = self.say(fault.reply, close=fault.close, notes=note)
            return replace(decision, delay=decision.delay + fault.delay)
        self._pending_delay += fault.delay
        return None

    def say(self, reply: Reply, *, close: bool = False, **fields: Any) -> Decision:
        notes: tuple[Observed, ...] = fields.pop("notes", ())
        if reply in PROTOCOL_ERRORS:
            self.protocol_errors += 1
            if self.protocol_errors > MAX_PROTOCOL_ERRORS:
                reply, close, fields = R.TOO_MANY_ERRORS, True, {}
                self.phase = Phase.CLOSED
                self._release()
        if close:  # whatever ends the session ends it here: nothing is answered after it
            self.phase = Phase.CLOSED
            self._release()
        if "{hostname}" in reply.text:
            fields.setdefault("hostname", self.context().host)
        text = reply.render(self.context(), **fields)
        # the tarpit: an error reply that leaves the connection open is given after a pause
        delay = self.state.tarpit if reply.code >= 400 and not close else 0.0
        return Decision((text,), reply=reply, close=close, notes=notes, delay=delay)

    # -- dispatch -----------------------------------------------------------------------------

    def _stage_of(self, event: Event) -> str:
        if isinstance(event, ChunkEnd):
            return "message" if event.last else "data"
        if isinstance(event, LineTooLong) and self.in_auth_exchange:
            return "auth"
        return STAGES.get(type(event), "other")

    def receive(self, event: WireEvent) -> Decision:
        """A wire event from ``fakes.exo.wire.Framer``: a line is a command, or the answer to a 334
        (``parsed`` holds what the line was read as, for the record)."""
        if isinstance(event, Line):
            if self.in_auth_exchange:
                self.parsed = AuthLine(event.raw.decode("utf-8", "replace"))
            else:
                self.parsed = parse_command(event.raw)
            return self.handle(self.parsed)
        return self.handle(event)

    def handle(self, event: Event) -> Decision:
        if not isinstance(event, BodyData | Closed):
            self.stage = self._stage_of(event)
        if isinstance(event, Closed):
            return self._closed()
        if self.phase is Phase.CLOSED:
            return SILENT
        anywhere = ANY_PHASE.get(type(event))  # taken whatever the phase: octets, chunks, the handshake, a timeout
        if anywhere is not None:
            return anywhere(self, event)
        refusal = self._out_of_turn(event)
        if refusal is not None:
            return refusal
        decision: Decision = HANDLERS[type(event)](self, event)
        if self._pending_delay:
            decision = replace(decision, delay=decision.delay + self._pending_delay)
            self._pending_delay = 0.0
        return decision

    def _out_of_turn(self, event: Event) -> Decision | None:
        """The answer to a command this phase does not take (SEQUENCE's reply, or the one its
        special case gives), or None when its handler answers it."""
        if self._legacy_refused and not isinstance(event, Quit):
            return self.say(R.LEGACY_TLS, close=True)
        if isinstance(event, LineTooLong):
            if self.in_auth_exchange:  # an over-long AUTH answer ends the exchange; commands go on
                self.phase = Phase.READY
                return self.say(R.LINE_TOO_LONG, notes=self._auth_note(self.auth_mechanism or "", "",
                                                                       "failure", "line too long"))
            return self.say(R.LINE_TOO_LONG)
        if self.in_auth_exchange:
            return self._auth_line(event.line) if isinstance(event, AuthLine) else self.say(R.SYNTAX_ERROR)
        if isinstance(event, AuthLine):
            return self.say(R.UNRECOGNIZED_COMMAND, length=str(len(event.line.split(" ", 1)[0])))
        if isinstance(event, Malformed):
            return self.say(R.UNREADABLE_COMMAND if event.unreadable else R.SYNTAX_ERROR)
        if self.phase is Phase.CHUNKING and isinstance(event, Data | MailFrom | RcptTo):
            return self.say(R.BDAT_SEQUENCE)
        rule = SEQUENCE.get(type(event))
        if rule and self.phase not in rule[0]:
            if self.phase is Phase.CONNECTED and not isinstance(event, StartTls):
                return self.say(R.NEED_HELO)
            if isinstance(event, Auth) and self.user is not None:
                return self.say(R.ALREADY_AUTHENTICATED)
            return self.say(rule[1])
        return None

    def _body_data(self, event: BodyData) -> Decision:
        if self._body is not None and self._chunk_refusal is None:
            self._body.add(event.data)
        return SILENT

    def _message_body(self, event: MessageBody) -> Decision:
        self.handle(BodyData(event.content))
        return self.handle(DataEnd())

    def _timed_out(self, event: TimedOut) -> Decision:
        minutes, seconds = divmod(int(self.state.clock() - self.started), 60)
        return self.say(R.TIMED_OUT, close=True, duration=f"{minutes // 60:02d}:{minutes % 60:02d}:{seconds:02d}")

    # -- greeting and TLS -----------------------------------------------------------------------

    def _on_Hello(self, event: Hello) -> Decision:
        injected = self._injected("ehlo")
        if injected:
            return injected
        if not valid_helo_name(event.name):
            return self.say(R.INVALID_DOMAIN)
        self._reset_transaction()
        self.phase = Phase.READY
        if event.verb == "HELO":
            return Decision((R.helo_line(self.host, self.peer_ip),))
        if self.is_mx:
            extensions = R.MX_EXTENSIONS_TLS if self.tls_version else R.MX_EXTENSIONS_PLAIN
        else:
            extensions = R.SUBMISSION_EXTENSIONS_TLS if self.tls_version else R.SUBMISSION_EXTENSIONS_PLAIN
        return Decision(tuple(R.ehlo_lines(self.host, self.peer_ip, extensions)))

    def _on_StartTls(self, event: StartTls) -> Decision:
        if self.tls_version:
            return self.say(R.TLS_ALREADY)
        if self.phase is Phase.CONNECTED:
            return self.say(R.NEED_HELO)
        injected = self._injected("starttls")
        if injected:
            return injected
        decision = self.say(R.STARTTLS_READY)
        return Decision(decision.lines, reply=R.STARTTLS_READY, start_tls=True)

    def _tls_established(self, event: TlsEstablished) -> Decision:
        self.tls_version = event.version
        self.certificate_names = event.certificate_names
        self.phase = Phase.CONNECTED  # RFC 3207: the client must say EHLO again
        self._reset_transaction()
        notes: tuple[Observed, ...] = ()
        if self.is_mx:
            self.attribution = rules.attribute(
                self.state.tenant, self.peer_ip, event.certificate_names or None, event.version
            )
            notes = (self.attribution_note(),)
        elif event.version in LEGACY_TLS_VERSIONS and not (
            self.endpoint == "legacy" and self.state.tenant.org.allow_legacy_tls_clients
        ):
            # The handshake completes, as the real one does; the next command gets 4.7.66.
            self._legacy_refused = True
            notes = (LegacyTls(value=event.version),)
        return Decision((), notes=notes)

    def attribution_note(self) -> Attribution:
        connector = self.attribution.connector
        return Attribution(connector=connector.name if connector else None, reason=self.attribution.reason)

    # -- authentication -------------------------------------------------------------------------

    def _on_Auth(self, event: Auth) -> Decision:
        mechanism = event.mechanism.upper()
        if self.is_mx or not self.tls_version or mechanism not in ("LOGIN", "XOAUTH2"):
            # AUTH is advertised only after STARTTLS, and only LOGIN and XOAUTH2.
            return self.say(R.UNRECOGNIZED_AUTH, notes=self._auth_note(mechanism, "", "unsupported"))
        if self.user is not None:
            return self.say(R.ALREADY_AUTHENTICATED)
        injected = self._injected("auth")
        if injected:
            return injected
        self.auth_mechanism = mechanism
        login = mechanism == "LOGIN"
        self.phase = Phase.AUTH_LOGIN_USER if login else Phase.AUTH_XOAUTH2
        if event.initial:  # the initial response (RFC 4954): no 334 first
            return self._auth_line(event.initial)
        prompt = R.LOGIN_USERNAME if login else R.XOAUTH2_CONTINUE
        return Decision((prompt.render(),), reply=prompt)

    def _auth_note(self, mechanism: str, user: str, outcome: str, reason: str = "") -> tuple[Observed, ...]:
        return (AuthOutcome(mechanism=mechanism, user=user, outcome=outcome, reason=reason),)

    def _auth_line(self, line: str) -> Decision:
        mechanism = self.auth_mechanism or ""
        if line.strip() == "*":
            self.phase = Phase.READY
            return self.say(R.AUTH_CANCELLED, notes=self._auth_note(mechanism, "", "cancelled"))
        try:
            decoded = base64.b64decode(line.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            self.phase = Phase.READY
            if mechanism == "XOAUTH2":
                return self.say(R.XOAUTH2_MALFORMED,
                                 notes=self._auth_note(mechanism, "", "failure", "not base64"))
            return self.say(R.AUTH_CANCELLED, notes=self._auth_note(mechanism, "", "failure", "not base64"))
        if self.phase is Phase.AUTH_LOGIN_USER:
            self._login_user = decoded
            self.phase = Phase.AUTH_LOGIN_PASSWORD
            return Decision((R.LOGIN_PASSWORD.render(),), reply=R.LOGIN_PASSWORD)
        self.phase = Phase.READY
        if mechanism == "LOGIN":
            return self._finish_login(self._login_user, decoded)
        return self._finish_xoauth2(decoded)

    def _finish_login(self, user: str, password: str) -> Decision:
        tenant = self.state.tenant
        box = tenant.mailbox(user)
        refusal = rules.basic_auth_refusal(tenant, box, password)
        if refusal:
            # a user name that is no mailbox may be a password typed in the wrong field: kept as a hash
            named = user if box is not None else unknown_user(user)
            return self.say(refusal, notes=self._auth_note("LOGIN", named, "failure", refusal.text))
        if box is None:
            raise InternalError("expected box is not None")
        return self._authenticated(box, "LOGIN", "password")

    def _finish_xoauth2(self, decoded: str) -> Decision:
        parsed = parse_xoauth2(decoded)
        if parsed is None:
            return self.say(R.XOAUTH2_MALFORMED,
                             notes=self._auth_note("XOAUTH2", "", "failure", "malformed XOAUTH2 data"))
        user, token = parsed
        tenant = self.state.tenant
        box = tenant.mailbox(user)
        authority = self.state.tokens
        if authority is None:
            return self.say(R.AUTH_BAD_TOKEN, notes=self._auth_note("XOAUTH2", user, "failure",
                                                                    "the edge has no token issuer"))
        check = authority.check(token, user=user, now=self.state.clock())
        if check.ok and box is None:
            check = TokenCheck(False, f"{user} is not a mailbox of the tenant")
        elif check.ok and box is not None and check.kind == "app" and check.app_id not in box.apps:
            check = TokenCheck(False, f"app {check.app_id} has no FullAccess to {user}")
        reason = check.reason
        if not check.ok:
            return self.say(R.AUTH_BAD_TOKEN, notes=self._auth_note("XOAUTH2", user, "failure", reason))
        if box is None:
            raise InternalError("expected box is not None")
        refusal = rules.smtp_auth_refusal(tenant, box)
        if refusal:
            return self.say(refusal, notes=self._auth_note("XOAUTH2", user, "failure", refusal.text))
        return self._authenticated(box, "XOAUTH2", check.reason)

    def _authenticated(self, box: Mailbox, mechanism: str, how: str) -> Decision:
        self.user = box
        self.state.ledger.open_session(box.address, self.id)
        return self.say(R.AUTH_OK, notes=self._auth_note(mechanism, box.address, "success", how))

    # -- the transaction ------------------------------------------------------------------------

    def _on_MailFrom(self, event: MailFrom) -> Decision:
        address = event.address.strip()
        if event.address == BARE_MAIL and self.is_mx:
            return self.say(R.MX_BARE_MAIL)
        if event.address in (MALFORMED_PATH, BARE_MAIL) or (address and not is_address(address)):
            return self.say(R.BAD_ADDRESS)
        params = {k.upper(): v for k, v in event.params}
        if not self.is_mx:
            if not self.tls_version:
                return self.say(R.STARTTLS_REQUIRED)
            if self.user is None:
                return self.say(R.NOT_AUTHENTICATED)
        elif self.attribution.connector and self.attribution.connector.require_tls and not self.tls_version:
            return self.say(R.CONNECTOR_REQUIRES_TLS)
        refusal = mail_parameter_refusal(params)
        if refusal:
            return self.say(refusal)
        if not address.isascii() and "SMTPUTF8" not in params:
            return self.say(R.NEEDS_SMTPUTF8)
        size = params.get("SIZE")
        if size is not None and int(size) > self.state.tenant.limits.max_message_size:
            return self.say(R.MESSAGE_TOO_LARGE)
        injected = self._injected("mail")
        if injected:
            return injected
        self.mail_from = address.lower()
        self.mail_params = params
        self.phase = Phase.MAIL
        return self.say(R.SENDER_OK)

    def _on_RcptTo(self, event: RcptTo) -> Decision:
        address = event.address.strip().lower()
        if not is_address(address):
            return self.say(R.BAD_ADDRESS)
        refusal = rcpt_parameter_refusal({k.upper(): v for k, v in event.params})
        if refusal:
            return self.say(refusal)
        if not address.isascii() and "SMTPUTF8" not in self.mail_params:
            return self.say(R.NEEDS_SMTPUTF8)
        if address in self.recipients:  # named twice: accepted again, delivered once
            return self.say(R.RECIPIENT_OK)
        if len(self.recipients) >= self.state.tenant.limits.max_recipients_per_message:
            return self.say(R.TOO_MANY_RECIPIENTS)
        if self.is_mx:
            refusal = rules.mx_recipient_refusal(
                self.state.tenant, self.attribution, self.mail_from or "", address,
                bool(self.certificate_names),
            )
            if refusal:
                return self.say(refusal, notes=(self.attribution_note(),))
        injected = self._injected("rcpt")
        if injected:
            return injected
        self.recipients.append(address)
        self.phase = Phase.RCPT
        return self.say(R.RECIPIENT_OK)

    def _on_Data(self, event: Data) -> Decision:
        if (self.mail_params.get("BODY") or "").upper() == "BINARYMIME":
            return self.say(R.BINARYMIME_NEEDS_BDAT)
        injected = self._injected("data")
        if injected:
            return injected
        self.phase = Phase.DATA
        self._body = MessageBuffer(self.state.tenant.limits.max_message_size)
        return Decision((R.START_MAIL_INPUT.render(),), reply=R.START_MAIL_INPUT, read_data=True)

    def _on_DataEnd(self, event: DataEnd) -> Decision:
        return self._finish_message(via_bdat=False)

    def _chunk_start(self, event: ChunkStart) -> Decision:
        """``BDAT n``: the n octets are read whatever happens; the answer comes after them."""
        self._chunk_refusal = None
        if self.phase is Phase.RCPT:  # the first chunk of the message: the data stage's fault, if any
            self._chunk_fault = self.state.take_fault("data")
            self._body = MessageBuffer(self.state.tenant.limits.max_message_size)
            self._chunks = 0
        elif self.phase is not Phase.CHUNKING:
            self._chunk_refusal = {Phase.CONNECTED: R.NEED_HELO, Phase.READY: R.NEED_MAIL,
                                   Phase.MAIL: R.NEED_RCPT}.get(self.phase, R.BDAT_SEQUENCE)
        return SILENT

    def _chunk_end(self, event: ChunkEnd) -> Decision:
        refusal, self._chunk_refusal = self._chunk_refusal, None
        if refusal is not None:
            return self.say(refusal)
        fault, self._chunk_fault = self._chunk_fault, None
        if fault is not None:  # as after DATA: a reply ends the transaction, a drop the session
            injected = self._fault_decision(fault)
            if injected is not None:
                self._end_transaction()
                return injected
        if self._body is None:
            raise InternalError("expected self._body is not None")
        self._chunks += 1
        self.phase = Phase.CHUNKING
        if self._body.over_limit:
            self._end_transaction()
            return self.say(R.MESSAGE_TOO_LARGE)
        if not event.last:
            decision = Decision((R.CHUNK_RECEIVED.render(size=str(event.size)),), reply=R.CHUNK_RECEIVED)
        else:
            decision = self._finish_message(via_bdat=True)
        if self._pending_delay:  # a fault's delay alone: the chunk's answer comes that much later
            decision = replace(decision, delay=decision.delay + self._pending_delay)
            self._pending_delay = 0.0
        return decision

    # -- the message ----------------------------------------------------------------------------

    def _finish_message(self, *, via_bdat: bool) -> Decision:
        body, self._body = self._body, None
        if body is None:
            raise InternalError("expected body is not None")
        headers = read_headers(body.data)  # once: for the record and for the judgement
        facts = message_facts(body.data, headers, size=body.size, via="BDAT" if via_bdat else "DATA",
                              chunks=self._chunks if via_bdat else None)
        decision = self._judge_message(body, via_bdat, headers)
        self._end_transaction()
        return replace(decision, notes=(facts, *decision.notes))

    def _end_transaction(self) -> None:
        self._body = None
        self._reset_transaction()
        if self.phase is not Phase.CLOSED:  # an injected drop closes the session for good
            self.phase = Phase.READY

    def _judge_message(self, body: MessageBuffer, via_bdat: bool, headers: Headers) -> Decision:
        limits = self.state.tenant.limits
        content = body.data
        if body.over_limit:
            return self.say(R.MESSAGE_TOO_LARGE)
        if len(header_block(content)) > limits.max_header_size:
            return self.say(R.HEADERS_TOO_LARGE)
        if not via_bdat and has_bare_lf(content):  # BDAT carries octets as they are (RFC 3030)
            return self.say(R.BARE_LF)
        injected = self._injected("message")
        if injected:
            return injected
        if self.mail_from is None:
            raise InternalError("expected a MAIL FROM before the message")
        transaction = acceptance.Transaction(
            state=self.state, session_id=self.id, peer_ip=self.peer_ip, host=self.host, is_mx=self.is_mx,
            user=self.user, mail_from=self.mail_from, recipients=tuple(self.recipients),
            tls_version=self.tls_version, attribution=self.attribution)
        judge = acceptance.at_mx if self.is_mx else acceptance.at_submission
        answer = judge(transaction, content, headers)
        fields: dict[str, Any] = dict(answer.fields)
        decision = self.say(answer.reply, **fields)
        return replace(decision, accepted=answer.accepted, notes=(*decision.notes, *answer.notes))

    # -- the rest -------------------------------------------------------------------------------

    def _on_Reset(self, event: Reset) -> Decision:
        self._body = None
        self._reset_transaction()
        if self.phase is not Phase.CONNECTED:
            self.phase = Phase.READY
        return self.say(R.RESET)

    def _on_Noop(self, event: Noop) -> Decision:
        return self.say(R.OK)

    def _on_Quit(self, event: Quit) -> Decision:
        self.phase = Phase.CLOSED
        self._release()
        return self.say(R.CLOSING, close=True)

    def _on_Unknown(self, event: Unknown) -> Decision:
        return self.say(R.UNRECOGNIZED_COMMAND, length=str(len(event.verb)))

    def _closed(self) -> Decision:
        self.phase = Phase.CLOSED
        self._body = None
        self._release()
        return SILENT

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        self.state.ledger.close_session(self.id)
        if self._admitted:
            self.state.release(self.peer_ip)

    def _reset_transaction(self) -> None:
        self.mail_from = None
        self.mail_params = {}
        self.recipients = []


# Which method answers each command event once SEQUENCE allowed it in the phase: the one table of
# dispatch (no lookup by name)
HANDLERS: dict[type, Callable[[Session, Any], Decision]] = {
    Hello: Session._on_Hello, StartTls: Session._on_StartTls, Auth: Session._on_Auth,
    MailFrom: Session._on_MailFrom, RcptTo: Session._on_RcptTo, Data: Session._on_Data,
    DataEnd: Session._on_DataEnd, Reset: Session._on_Reset, Noop: Session._on_Noop, Quit: Session._on_Quit,
    Unknown: Session._on_Unknown,
}
# Events taken in any phase (but after the end): message octets, BDAT chunks, the end of a TLS
# handshake, the idle timeout
ANY_PHASE: dict[type, Callable[[Session, Any], Decision]] = {
    BodyData: Session._body_data, MessageBody: Session._message_body, ChunkStart: Session._chunk_start,
    ChunkEnd: Session._chunk_end, TimedOut: Session._timed_out, TlsEstablished: Session._tls_established,
}
