"""What the edge saw during one scenario, read back from the records and the store.

``Observation`` is the window of one scenario: its SMTP sessions (each a ``SessionView`` with
its commands, replies by stage, TLS facts and AUTH outcomes), the DNS queries, and the copies
stored. Checks read it; nothing here judges.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fakes.exo.names import TLS_VERSIONS, WELL_KNOWN_PORTS, tls_at_least
from fakes.store import StoredMessage

__all__ = ["TLS_VERSIONS", "Exchange", "Observation", "SessionView", "tls_at_least", "without_suffix"]



_SUFFIX = re.compile(r" \[[A-Za-z0-9.-]+( \S+Z [0-9A-F]{16})?\]$")


def without_suffix(line: str) -> str:
    """A reply without Exchange's ``[HOST timestamp id]`` tail: what a sentence should quote."""
    return _SUFFIX.sub("", line)


@dataclass(frozen=True)
class Exchange:
    """One reply, as the edge recorded it: the stage it answered (banner, ehlo, starttls, auth,
    mail, rcpt, data, message, rset, noop, quit, other), its code, enhanced code and catalog name."""

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
    events: list[dict[str, Any]]
    peer: str = ""
    exchanges: list[Exchange] = field(default_factory=list)

    @classmethod
    def build(cls, session_id: str, events: list[dict[str, Any]]) -> SessionView:
        first = events[0]
        view = cls(session_id, first.get("endpoint", "?"), events, (first.get("peer") or ["?"])[0])
        command = ""
        for event in events:
            kind = event["kind"]
            if kind == "command":
                command = event["line"]
            elif kind == "message":
                command = "<end of data>"
            elif kind == "reply":
                line = event["line"]
                if line[3:4] == "-":  # continuation lines of a multi-line reply
                    continue
                view.exchanges.append(Exchange(event.get("stage", "other"), command, int(event["code"]), line,
                                               event["t"], event.get("enhanced"), event.get("name")))
        return view

    @property
    def port(self) -> int | None:
        return WELL_KNOWN_PORTS.get(self.endpoint)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    @property
    def tls_version(self) -> str | None:
        tls = self.kinds("tls")
        return tls[-1]["version"] if tls else None

    @property
    def client_hello(self) -> dict[str, Any] | None:
        hellos = self.kinds("client_hello")
        return hellos[-1] if hellos else None

    @property
    def sni(self) -> str | None:
        hello = self.client_hello
        return hello.get("sni") if hello else None

    @property
    def auths(self) -> list[dict[str, Any]]:
        return self.kinds("auth")

    def commands(self) -> list[str]:
        return [e["line"] for e in self.kinds("command")]

    def index_of(self, kind: str, predicate: Any = None) -> int | None:
        for i, event in enumerate(self.events):
            if event["kind"] == kind and (predicate is None or predicate(event)):
                return i
        return None

    @property
    def sent_credentials(self) -> bool:
        return any(c.upper().startswith("AUTH") for c in self.commands())

    @property
    def mail_attempts(self) -> list[Exchange]:
        return [x for x in self.exchanges if x.stage == "mail"]


@dataclass
class Observation:
    events: list[dict[str, Any]]
    sessions: list[SessionView]
    dns: list[dict[str, Any]]
    stored: list[StoredMessage]
    expected_host: str
    harness_faults: list[dict[str, Any]]
    identity: list[dict[str, Any]] = field(default_factory=list)  # requests to login.microsoftonline.com

    @classmethod
    def build(cls, events: list[dict[str, Any]], stored: list[StoredMessage], expected_host: str) -> Observation:
        grouped: dict[str, list[dict[str, Any]]] = {}
        dns, identity = [], []
        for event in events:
            if event["kind"] in ("dns_query", "dns_malformed"):
                dns.append(event)
            elif event["kind"] == "identity":
                identity.append(event)
            else:
                grouped.setdefault(event["session"], []).append(event)
        sessions = [SessionView.build(sid, evs) for sid, evs in grouped.items() if evs[0]["kind"] == "connect"]
        ids = {s.id for s in sessions}
        return cls(
            events=events,
            sessions=sessions,
            dns=dns,
            stored=[m for m in stored if m.session in ids],
            expected_host=expected_host,
            harness_faults=[e for e in events if e["kind"] == "harness_fault"],
            identity=identity,
        )

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
        if any(e["kind"] == "fault" and e.get("drop") for e in self.events):
            return "the edge dropped the connection before answering (an injected fault) and it was not retried"
        failed = [e for e in self.events if e["kind"] == "tls_failed"]
        if failed:
            return f"the TLS handshake failed ({failed[-1].get('reason')})"
        if any(s.endpoint == "implicit-tls" for s in self.sessions):
            return "the sender tried implicit TLS on port 465, where nothing is served"
        if not self.sessions:
            return "the sender never connected"
        return "the sender did not complete a transaction"

    def messages(self) -> list[StoredMessage]:
        return [m for m in self.stored if m.kind == "message"]


def sender_facts(obs: Observation) -> dict[str, Any]:
    hellos = [s.client_hello for s in obs.sessions if s.client_hello]
    offered = sorted({v for h in hellos for v in h.get("versions", []) if v in TLS_VERSIONS},
                     key=TLS_VERSIONS.index)
    before_tls = False
    for session in obs.smtp:
        tls_at = session.index_of("tls")
        auth_at = session.index_of("auth")
        before_tls = before_tls or (auth_at is not None and (tls_at is None or auth_at < tls_at))
    return {
        "endpoints": sorted({s.endpoint for s in obs.sessions}),
        "tls_offered": offered,
        "tls_negotiated": sorted({v for s in obs.sessions if (v := s.tls_version)}, key=TLS_VERSIONS.index),
        "starttls": any(c.upper().startswith("STARTTLS") for s in obs.smtp for c in s.commands()),
        "auth_mechanisms": sorted({a["mechanism"] for s in obs.smtp for a in s.auths}),
        "auth_before_tls": before_tls,
        "client_certificate": any(t.get("client_certificate") for s in obs.sessions for t in s.kinds("tls")),
        "identity_requests": len(obs.identity),
        "sources": sorted({s.peer for s in obs.sessions}),
        "recipient_domains": sorted({_domain_of(c) for s in obs.smtp for c in s.commands()
                                     if c[:8].upper() == "RCPT TO:" and "@" in c}),
    }


def _domain_of(rcpt: str) -> str:
    return rcpt.split("@", 1)[1].split(">", 1)[0].strip().lower()
