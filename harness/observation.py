"""What the edge saw during one scenario, read back from the records and the store.

``Observation`` is the window of one scenario: its SMTP sessions (each a ``SessionView`` with
its commands, replies by stage, TLS facts and AUTH outcomes), the DNS queries, and the copies
stored. Checks read it; nothing here judges.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from fakes.exo.names import TLS_VERSIONS, WELL_KNOWN_PORTS, tls_at_least
from fakes.exo.observed import (
    AuthOutcome,
    ClientHelloSeen,
    Command,
    Connect,
    DnsMalformed,
    DnsQuery,
    FaultInjected,
    HarnessFault,
    IdentityRequest,
    MessageSeen,
    Observed,
    ReplySent,
    Tls,
    TlsFailed,
)
from fakes.tls import read_hello

if TYPE_CHECKING:  # the store (and the edge's events) only where a run's messages are judged
    from fakes.store import StoredMessage

E = TypeVar("E", bound=Observed)

__all__ = ["TLS_VERSIONS", "Exchange", "Observation", "SessionView", "tls_at_least", "without_suffix"]



_SUFFIX = re.compile(r" \[[A-Za-z0-9.-]+( \S+Z [0-9A-F]{16})?\]$")


def without_suffix(line: str) -> str:
    """A reply without Exchange's ``[HOST timestamp id]`` tail: what a sentence should quote."""
    return _SUFFIX.sub("", line)


class Exchange(NamedTuple):
    """One reply, as the edge recorded it: the stage it answered (banner, ehlo, starttls, auth,
    mail, rcpt, data, message, rset, noop, quit, other), its code, enhanced code and catalog name
    (a tuple: one is made for every reply judged)."""

    stage: str
    command: str
    code: int
    line: str
    t: float
    enhanced: str | None = None
    name: str | None = None


@dataclass
class SessionView:
    id: str
    endpoint: str
    events: list[Observed]
    peer: str = ""
    exchanges: list[Exchange] = field(default_factory=list)
    # its events by type, in one pass (the checks ask a session for the same kinds often), and the
    # number of events that pass saw
    _by_type: dict[type, list[Any]] = field(default_factory=dict, repr=False, compare=False)
    _indexed: int = field(default=-1, repr=False, compare=False)

    @classmethod
    def build(cls, session_id: str, events: list[Observed]) -> SessionView:
        first = events[0]
        endpoint, peer = (first.endpoint, first.peer[0]) if isinstance(first, Connect) else ("?", "?")
        view = cls(session_id, endpoint, events, peer)
        command = ""
        by_type = view._by_type
        for event in events:
            same = by_type.get(type(event))
            if same is None:
                by_type[type(event)] = [event]
            else:
                same.append(event)
            if isinstance(event, Command):
                command = event.line
            elif isinstance(event, MessageSeen):
                command = "<end of data>"
            elif isinstance(event, ReplySent) and event.last:  # a multi-line reply counts once
                view.exchanges.append(Exchange(event.stage, command, event.code, event.line, event.t,
                                               event.enhanced, event.name))
        view._indexed = len(events)
        return view

    @property
    def port(self) -> int | None:
        return WELL_KNOWN_PORTS.get(self.endpoint)

    def of(self, kind: type[E]) -> Sequence[E]:
        """The session's events of one type, in order (the session's own list: not to be changed)."""
        if self._indexed != len(self.events):
            self._by_type = {}
            for event in self.events:
                self._by_type.setdefault(type(event), []).append(event)
            self._indexed = len(self.events)
        if kind.__subclasses__():  # a kind of kinds: their events in the order they came
            return [e for e in self.events if isinstance(e, kind)]
        return self._by_type.get(kind, ())

    @property
    def tls_version(self) -> str | None:
        tls = self.of(Tls)
        return tls[-1].version if tls else None

    @property
    def tls_hidden(self) -> bool:
        """What went inside its TLS was not seen (a capture without the connection's keys)."""
        return any(t.hidden for t in self.of(Tls))

    @property
    def client_hello(self) -> ClientHelloSeen | None:
        hellos = self.of(ClientHelloSeen)
        return hellos[-1] if hellos else None

    @property
    def sni(self) -> str | None:
        hello = self.client_hello
        return hello.sni if hello else None

    @property
    def auths(self) -> Sequence[AuthOutcome]:
        return self.of(AuthOutcome)

    def commands(self) -> Sequence[Command]:
        return self.of(Command)

    def index_of(self, kind: type[E], predicate: Callable[[E], bool] | None = None) -> int | None:
        for i, event in enumerate(self.events):
            if isinstance(event, kind) and (predicate is None or predicate(event)):
                return i
        return None

    @property
    def sent_credentials(self) -> bool:
        return any(c.verb == "AUTH" for c in self.commands())

    @property
    def mail_attempts(self) -> list[Exchange]:
        return [x for x in self.exchanges if x.stage == "mail"]


@dataclass
class Observation:
    events: list[Observed]
    sessions: list[SessionView]
    dns: list[DnsQuery | DnsMalformed]
    stored: list[StoredMessage]
    expected_host: str
    harness_faults: list[HarnessFault]
    identity: list[IdentityRequest] = field(default_factory=list)  # requests to login.microsoftonline.com

    @classmethod
    def build(cls, events: list[Observed], stored: list[StoredMessage], expected_host: str) -> Observation:
        events = [read_hello(e) if isinstance(e, ClientHelloSeen) else e for e in events]  # as the edge kept them
        grouped: dict[str, list[Observed]] = {}
        dns: list[DnsQuery | DnsMalformed] = []
        identity: list[IdentityRequest] = []
        for event in events:
            if isinstance(event, DnsQuery | DnsMalformed):
                dns.append(event)
            elif isinstance(event, IdentityRequest):
                identity.append(event)
            else:
                grouped.setdefault(event.session, []).append(event)
        sessions = [SessionView.build(sid, evs) for sid, evs in grouped.items() if isinstance(evs[0], Connect)]
        ids = {s.id for s in sessions}
        return cls(
            events=events,
            sessions=sessions,
            dns=dns,
            stored=[m for m in stored if m.session in ids],
            expected_host=expected_host,
            harness_faults=[e for e in events if isinstance(e, HarnessFault)],
            identity=identity,
        )

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def smtp(self) -> list[SessionView]:
        return [s for s in self.sessions if s.endpoint != "implicit-tls"]

    def exchanges(self) -> list[tuple[SessionView, Exchange]]:
        return [(s, x) for s in self.sessions for x in s.exchanges]

    def why_nothing_arrived(self) -> str:
        """The edge's last refusal in the window (or a failed handshake), to explain a missing message."""
        refusals = sorted((x for _, x in self.exchanges() if x.code >= 400), key=lambda x: x.t)
        if refusals:
            return f"the edge last said {without_suffix(refusals[-1].line)}"
        if any(e.drop for e in self.of(FaultInjected)):
            return "the edge dropped the connection before answering (an injected fault) and it was not retried"
        failed = self.of(TlsFailed)
        if failed:
            return f"the TLS handshake failed ({failed[-1].reason})"
        if any(s.endpoint == "implicit-tls" for s in self.sessions):
            return "the sender tried implicit TLS on port 465, where nothing is served"
        if not self.sessions:
            return "the sender never connected"
        return "the sender did not complete a transaction"

    def messages(self) -> list[StoredMessage]:
        return [m for m in self.stored if m.kind == "message"]


def sender_facts(obs: Observation) -> dict[str, Any]:
    hellos = [h for s in obs.sessions if (h := s.client_hello)]
    offered = sorted({v for h in hellos for v in h.versions if v in TLS_VERSIONS}, key=TLS_VERSIONS.index)
    before_tls = False
    for session in obs.smtp:
        tls_at = session.index_of(Tls)
        auth_at = session.index_of(AuthOutcome)
        before_tls = before_tls or (auth_at is not None and (tls_at is None or auth_at < tls_at))
    return {
        "endpoints": sorted({s.endpoint for s in obs.sessions}),
        "tls_offered": offered,
        "tls_negotiated": sorted({v for s in obs.sessions if (v := s.tls_version)}, key=TLS_VERSIONS.index),
        "starttls": any(c.verb == "STARTTLS" for s in obs.smtp for c in s.commands()),
        "auth_mechanisms": sorted({a.mechanism for s in obs.smtp for a in s.auths}),
        "auth_before_tls": before_tls,
        "client_certificate": any(t.client_certificate for s in obs.sessions for t in s.of(Tls)),
        "identity_requests": len(obs.identity),
        "sources": sorted({s.peer for s in obs.sessions}),
        "recipient_domains": sorted({c.address.rsplit("@", 1)[1].lower() for s in obs.smtp for c in s.commands()
                                     if c.verb == "RCPT" and c.address and "@" in c.address}),
    }
