"""The expectation vocabulary: named checks over what the edge saw, each with a sentence.

A check is a pydantic model (its parameters, with ``check: Literal[name]``, so scenario files are
validated and the JSON Schema is generated) and an ``evaluate(obs)`` that returns an ``Outcome``:
passed or not (``None``: not applicable to what the sender did) and a sentence a firmware
engineer understands. ``CHECKS`` is the registry; ``Check`` is the union scenario files use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import Field, model_validator

from fakes.exo import observed as O
from fakes.exo import replies
from fakes.exo.names import MINIMUM_TLS, WELL_KNOWN_PORTS
from harness.check_base import Outcome, _Check
from harness.checks_oauth import (
    OAuthAppOnly,
    OAuthDeviceFlow,
    OAuthNoPasswordGrant,
    OAuthPollingPace,
    OAuthRefreshed,
    OAuthRefreshTokenKept,
    OAuthScope,
    OAuthSignInAgain,
    OAuthStopsWhenRefused,
    OAuthTenantAuthority,
)
from harness.observation import TLS_VERSIONS, Exchange, Observation, tls_at_least, without_suffix

TlsVersion = Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
Stage = Literal["banner", "ehlo", "starttls", "auth", "mail", "rcpt", "data", "message", "any"]
FolderName = Literal["Inbox", "Sent Items", "Junk", "Outbound"]


def _no_connection(check: _Check) -> Outcome:
    return check.outcome(None, "the sender made no SMTP connection")


class Connected(_Check):
    """The sender reached the edge at all."""

    check: Literal["connected"] = "connected"

    def evaluate(self, obs: Observation) -> Outcome:
        if obs.sessions:
            return self.outcome(True, f"{len(obs.sessions)} connection(s)")
        return self.outcome(False, "the sender never connected")


class Port(_Check):
    """Every connection went to an allowed port; 465 (implicit TLS) was never tried."""

    check: Literal["port"] = "port"
    allowed: list[int] = [WELL_KNOWN_PORTS["submission"], WELL_KNOWN_PORTS["submission-25"]]

    def evaluate(self, obs: Observation) -> Outcome:
        if not obs.sessions:
            return _no_connection(self)
        ports = [s.port for s in obs.sessions]
        if WELL_KNOWN_PORTS["implicit-tls"] in ports:
            return self.outcome(False, "tried port 465 (implicit TLS): Exchange Online serves SMTP AUTH only "
                                       "with STARTTLS on 587 or 25")
        wrong = sorted({p for p in ports if p not in self.allowed}, key=str)
        if wrong:
            return self.outcome(False, f"connected to port(s) {wrong}; expected {self.allowed}")
        return self.outcome(True, f"connected to port {sorted(set(ports), key=str)[0]}")


class DnsName(_Check):
    """The sender used the endpoint's DNS name (a lookup seen, or SNI naming it), not an IP literal."""

    check: Literal["dns_name"] = "dns_name"

    def evaluate(self, obs: Observation) -> Outcome:
        name = obs.expected_host
        looked_up = [q for q in obs.dns if isinstance(q, O.DnsQuery) and q.name.lower() == name.lower()]
        snis = {s.sni for s in obs.smtp if s.sni}
        if looked_up or name in snis:
            how = "looked it up in DNS" if looked_up else "named it in TLS SNI"
            return self.outcome(True, f"used {name} ({how})")
        if not obs.smtp:
            return _no_connection(self)
        return self.outcome(False, f"never looked up {name} and sent no SNI for it: the device was configured "
                                   "with an IP address, which the guide forbids")


class StartTlsBeforeAuth(_Check):
    """Credentials only ever went inside TLS."""

    check: Literal["starttls_before_auth"] = "starttls_before_auth"

    def evaluate(self, obs: Observation) -> Outcome:
        authed = [s for s in obs.smtp if s.sent_credentials or s.mail_attempts]
        if not authed:
            return self.outcome(None, "the sender neither authenticated nor sent")
        for session in authed:
            tls = session.index_of(O.Tls)
            first = session.index_of(O.Command, lambda e: e.verb in ("AUTH", "MAIL"))
            if first is not None and (tls is None or first < tls):
                command = session.events[first]
                what = command.verb if isinstance(command, O.Command) else "?"
                return self.outcome(False, f"sent {what} before STARTTLS")
        return self.outcome(True, "issued STARTTLS before AUTH and MAIL")


class Tls(_Check):
    """Negotiated (and offered) TLS versions."""

    check: Literal["tls"] = "tls"
    minimum: TlsVersion = MINIMUM_TLS
    offered_minimum: TlsVersion | None = None  # the highest version offered must reach this
    required: bool = True  # a session without TLS fails

    def evaluate(self, obs: Observation) -> Outcome:
        if not obs.smtp:
            return _no_connection(self)
        for session in obs.smtp:
            hello = session.client_hello
            offered = hello.highest_version if hello else None
            if self.offered_minimum and hello and offered and not tls_at_least(offered, self.offered_minimum):
                return self.outcome(False, f"offered {', '.join(hello.versions)} only; the edge requires "
                                           f"{self.offered_minimum} or later")
            version = session.tls_version
            if version is None:
                if hello is None and self.required:
                    return self.outcome(False, "never started TLS")
                if self.required and offered and not tls_at_least(offered, self.minimum):
                    return self.outcome(False, f"offered {offered} at most; the edge refused the handshake "
                                               f"({self.minimum} or later is required)")
                continue
            if not tls_at_least(version, self.minimum):
                return self.outcome(False, f"negotiated {version}; {self.minimum} or later is required")
        versions = sorted({s.tls_version for s in obs.smtp if s.tls_version}, key=TLS_VERSIONS.index)
        if not versions:
            if self.required:
                return self.outcome(False, "no TLS session was established")
            return self.outcome(True, "sent without TLS (allowed here)")
        return self.outcome(True, f"negotiated {', '.join(versions)}")


# What a server sees when the client itself refuses the certificate: the client's alert
# (OpenSSL's reason names it), or the client closing right after the server's first flight.
_CLIENT_REFUSALS = ("ALERT_UNKNOWN_CA", "ALERT_BAD_CERTIFICATE", "ALERT_CERTIFICATE_UNKNOWN",
                    "ALERT_CERTIFICATE_EXPIRED", "ALERT_UNSUPPORTED_CERTIFICATE", "ALERT_ACCESS_DENIED",
                    "ALERT_CERTIFICATE_REVOKED", "UNEXPECTED_EOF", "CLIENT CLOSED DURING THE TLS HANDSHAKE")


def client_refused(reason: str | None) -> bool:
    """A failed handshake the client ended over the certificate (not for a version or a cipher)."""
    upper = (reason or "").upper()
    return any(mark in upper for mark in _CLIENT_REFUSALS)


class CertificateVerified(_Check):
    """Given a certificate it must not trust, the sender refused it: its own alert, or its close
    right after the server's certificate, and no credentials or mail inside that session. Applies
    only when the sender tried TLS; a handshake that failed for a version or a cipher proves
    nothing about the certificate."""

    check: Literal["certificate_verified"] = "certificate_verified"

    def evaluate(self, obs: Observation) -> Outcome:
        if not obs.smtp:
            return _no_connection(self)
        refused, other = 0, []
        for session in obs.smtp:
            tls = session.index_of(O.Tls)
            if tls is not None:
                after = [e.verb for e in session.events[tls:] if isinstance(e, O.Command)]
                leaked = [c for c in after if c in ("AUTH", "MAIL")]
                if leaked:
                    return self.outcome(False, f"accepted a certificate it could not verify and went on to "
                                               f"{leaked[0]}")
                other.append("completed the handshake and then sent nothing")
                continue
            for failed in session.of(O.TlsFailed):
                if session.client_hello is not None and client_refused(failed.reason):
                    refused += 1
                else:
                    other.append(f"the handshake failed for another reason ({failed.reason})")
        if refused:
            return self.outcome(True, f"refused the certificate ({refused} handshake(s) it aborted)")
        if other:
            return self.outcome(None, f"never refused the certificate itself: {other[0]}")
        return self.outcome(None, "never started TLS, so the certificate was never put to it")


class AuthMechanism(_Check):
    check: Literal["auth_mechanism"] = "auth_mechanism"
    allowed: list[str] = ["LOGIN", "XOAUTH2"]
    succeeded: bool = False  # also require one successful AUTH with an allowed mechanism

    def evaluate(self, obs: Observation) -> Outcome:
        auths = [a for s in obs.smtp for a in s.auths]
        if not auths:
            return self.outcome(False if self.succeeded else None, "the sender did not authenticate")
        wrong = [a.mechanism for a in auths if a.mechanism not in self.allowed]
        if wrong:
            return self.outcome(False, f"tried AUTH {wrong[0]}; Exchange Online offers {' and '.join(self.allowed)}")
        ok = [a for a in auths if a.outcome == "success"]
        if self.succeeded and not ok:
            return self.outcome(False, f"AUTH {auths[-1].mechanism} failed: {auths[-1].reason}")
        used = sorted({a.mechanism for a in auths})
        return self.outcome(True, f"authenticated with {', '.join(used)}")


class NoAuth(_Check):
    """No AUTH attempted (direct send and relay are anonymous)."""

    check: Literal["no_auth"] = "no_auth"

    def evaluate(self, obs: Observation) -> Outcome:
        if not obs.smtp:
            return _no_connection(self)
        tried = [s for s in obs.smtp if s.sent_credentials]
        if tried:
            return self.outcome(False, "tried to authenticate at the MX, which offers no AUTH")
        if not any(s.mail_attempts for s in obs.smtp):
            return self.outcome(None, "the sender neither authenticated nor began a message")
        return self.outcome(True, "sent without authenticating")


class ReplyCheck(_Check):
    """A reply was (or, with ``seen: false``, never was) given at a stage: by its code (and enhanced
    code), or by ``name``, the edge's own name for it (``SEND_AS_DENIED``), so that the case judges
    what the service decided, whatever words and codes Microsoft gives that decision this year."""

    check: Literal["reply"] = "reply"
    code: int | None = Field(None, ge=200, le=599)
    enhanced: str | None = Field(None, pattern=r"^\d\.\d{1,3}\.\d{1,3}$")
    name: str | None = Field(None, pattern=r"^[A-Z][A-Z0-9_]*$")
    stage: Stage = "any"
    seen: bool = True

    @model_validator(mode="after")
    def _one_way(self) -> ReplyCheck:
        if (self.code is None) == (self.name is None):
            raise ValueError("give the reply's code or its name, one of them")
        if self.name is not None and self.name not in replies.CATALOG:
            raise ValueError(f"{self.name} is not a reply of the edge (fakes/exo/replies.py)")
        return self

    def evaluate(self, obs: Observation) -> Outcome:
        hits = [x for _, x in obs.exchanges()
                if (x.name == self.name if self.name else
                    x.code == self.code and (self.enhanced is None or x.enhanced == self.enhanced))
                and self.stage in ("any", x.stage)]
        label = self.name or f"{self.code} {self.enhanced or ''}".strip()
        where = "" if self.stage == "any" else f" at {self.stage.upper()}"
        if self.seen:
            if hits:
                return self.outcome(True, f"the edge answered {label}{where}: {without_suffix(hits[0].line)}")
            return self.outcome(False, f"the edge never answered {label}{where}")
        if hits:
            return self.outcome(False, f"got {without_suffix(hits[0].line)}{where}")
        return self.outcome(True, f"never got {label}")


class Stored(_Check):
    """Copies stored in a folder: ``count`` exactly (``None``: at least one)."""

    check: Literal["stored"] = "stored"
    folder: FolderName = "Inbox"
    mailbox: str | None = None
    count: int | None = Field(None, ge=0)
    delayed: bool | None = None

    def evaluate(self, obs: Observation) -> Outcome:
        copies = [m for m in obs.messages() if m.folder == self.folder
                  and (self.mailbox is None or m.mailbox == self.mailbox.lower())]
        where = self.folder + (f" of {self.mailbox}" if self.mailbox else "")
        if self.count is None and not copies:
            return self.outcome(False, f"nothing reached {where}: {obs.why_nothing_arrived()}")
        if self.count is not None and len(copies) != self.count:
            extra = " (a retry after a 250 stored it twice)" if len(copies) > self.count > 0 else ""
            if len(copies) < self.count:
                extra = f": {obs.why_nothing_arrived()}"
            return self.outcome(False, f"{len(copies)} cop{'y' if len(copies) == 1 else 'ies'} in {where}; "
                                       f"expected {self.count}{extra}")
        if self.delayed is not None and any(m.delayed != self.delayed for m in copies):
            return self.outcome(False, f"delivery to {where} was {'not ' if self.delayed else ''}delayed")
        return self.outcome(True, f"{len(copies)} in {where}" + (" (delayed, not lost)" if self.delayed else ""))


def _attempts_after(obs: Observation, predicate: Callable[[Exchange], bool]) -> tuple[float | None, list[float]]:
    """Time of the first reply matching ``predicate`` and of every MAIL FROM after it."""
    first = None
    for _, x in sorted(obs.exchanges(), key=lambda p: p[1].t):
        if predicate(x):
            first = x.t
            break
    if first is None:
        return None, []
    later = sorted(x.t for _, x in obs.exchanges() if x.stage == "mail" and x.t > first)
    return first, later


class RetriedAfterTransient(_Check):
    """After a 4xx (or a connection the edge dropped) the sender tried again within ``within`` seconds."""

    check: Literal["retried_after_transient"] = "retried_after_transient"
    within: float = 30

    def evaluate(self, obs: Observation) -> Outcome:
        first, later = _attempts_after(obs, lambda x: 400 <= x.code < 500 and x.stage in ("mail", "rcpt", "data",
                                                                                           "message"))
        drops = [e.t for e in obs.of(O.FaultInjected) if e.drop]
        if drops and (first is None or drops[0] < first):
            first = drops[0]
            later = sorted(x.t for _, x in obs.exchanges() if x.stage == "mail" and x.t > first)
        if first is None:
            return self.outcome(None, "no transient (4xx) reply was given and no connection was dropped")
        if not later:
            return self.outcome(False, "gave up after a transient failure; Exchange expects a retry")
        if later[0] - first > self.within:
            return self.outcome(False, f"retried only after {later[0] - first:.1f} s (limit {self.within} s)")
        return self.outcome(True, f"retried {later[0] - first:.2f} s after the transient failure")


class NoRetryAfterPermanent(_Check):
    """After a 5xx to MAIL, RCPT or the message, the sender did not send the same thing again."""

    check: Literal["no_retry_after_permanent"] = "no_retry_after_permanent"
    max_attempts: int = Field(1, ge=1)

    def evaluate(self, obs: Observation) -> Outcome:
        first, later = _attempts_after(obs, lambda x: x.code >= 500 and x.stage in ("mail", "rcpt", "data",
                                                                                   "message"))
        if first is None:
            return self.outcome(None, "no permanent (5xx) reply was given")
        if len(later) + 1 > self.max_attempts:
            return self.outcome(False, f"tried {len(later)} more time(s) after a permanent 5xx reply")
        return self.outcome(True, "did not retry after the permanent failure")


class NoAuthStorm(_Check):
    """After a failed AUTH the sender stops: at most ``max_attempts`` AUTH attempts in the window."""

    check: Literal["no_auth_storm"] = "no_auth_storm"
    max_attempts: int = Field(3, ge=1)

    def evaluate(self, obs: Observation) -> Outcome:
        attempts = [a for s in obs.smtp for a in s.auths if a.outcome != "unsupported"]
        failures = [a for a in attempts if a.outcome == "failure"]
        if not failures:
            return self.outcome(None, "no AUTH failed")
        if len(attempts) > self.max_attempts:
            return self.outcome(False, f"{len(attempts)} AUTH attempts after a failure: a retry storm that "
                                       "gets a device's account locked or throttled")
        return self.outcome(True, f"stopped after {len(attempts)} AUTH attempt(s): {failures[0].reason}")


class WaitsForReplies(_Check):
    """The sender waited for every reply it was owed: Exchange answers an error about 5 s after the
    command (its tarpit), and a device whose timeout is shorter drops the connection first."""

    check: Literal["waits_for_replies"] = "waits_for_replies"

    def evaluate(self, obs: Observation) -> Outcome:
        abandoned = [e for s in obs.smtp for e in s.of(O.Abandoned)]
        if abandoned:
            first = abandoned[0]
            return self.outcome(False, f"left {len(abandoned)} time(s) before the reply it was owed "
                                       f"({without_suffix(first.line)}, given after {first.waited:g} s, as "
                                       "Exchange Online's tarpit does): its reply timeout is too short")
        errors = [x for _, x in obs.exchanges() if x.code >= 400 and x.stage != "banner"]
        if not errors:
            return self.outcome(None, "the edge gave no error reply to wait for")
        return self.outcome(True, f"waited for {len(errors)} error reply(ies), e.g. {without_suffix(errors[0].line)}")


class WellFormed(_Check):
    """The message as sent: Date, Message-ID and From (RFC 5322); CRLF only; lines within 998 octets;
    SIZE declared when it is large."""

    check: Literal["well_formed"] = "well_formed"
    size_declared_over: int = 1_000_000

    def evaluate(self, obs: Observation) -> Outcome:
        problems: list[str] = []
        messages = [(s, e) for s in obs.smtp for e in s.of(O.MessageSeen)]
        if not messages:
            return self.outcome(None, "no message was sent to inspect")
        for session, facts in messages:
            missing = [name for name, present in (("Date", facts.has_date), ("Message-ID", facts.has_message_id),
                                                  ("From", facts.has_from)) if not present]
            if missing:
                problems.append(f"no {', '.join(missing)} header")
            if facts.bare_lf:
                problems.append("bare LF line endings (Exchange refuses them with 5.6.11)")
            if facts.longest_line > 998:
                problems.append(f"a line of {facts.longest_line} octets (RFC 5322 allows 998)")
            mails = [c for c in session.commands() if c.verb == "MAIL"]
            if facts.size > self.size_declared_over and not any("SIZE" in m.params for m in mails):
                problems.append(f"sent {facts.size} bytes without declaring SIZE=")
        if problems:
            return self.outcome(False, "; ".join(dict.fromkeys(problems)))
        return self.outcome(True, "Date, Message-ID and From present; CRLF lines within 998 octets")


Check = Annotated[
    Connected | Port | DnsName | StartTlsBeforeAuth | Tls | CertificateVerified | AuthMechanism | NoAuth
    | ReplyCheck | Stored | RetriedAfterTransient | NoRetryAfterPermanent | NoAuthStorm | WaitsForReplies | WellFormed
    | OAuthDeviceFlow
    | OAuthPollingPace | OAuthRefreshed | OAuthSignInAgain | OAuthAppOnly | OAuthScope | OAuthStopsWhenRefused
    | OAuthRefreshTokenKept | OAuthNoPasswordGrant | OAuthTenantAuthority,
    Field(discriminator="check"),
]
CHECKS: dict[str, type[_Check]] = {
    cls.model_fields["check"].default: cls
    for cls in (Connected, Port, DnsName, StartTlsBeforeAuth, Tls, CertificateVerified, AuthMechanism, NoAuth,
                ReplyCheck, Stored, RetriedAfterTransient, NoRetryAfterPermanent, NoAuthStorm, WaitsForReplies,
                WellFormed, OAuthDeviceFlow, OAuthPollingPace, OAuthRefreshed, OAuthSignInAgain, OAuthAppOnly,
                OAuthScope, OAuthStopsWhenRefused, OAuthRefreshTokenKept, OAuthNoPasswordGrant, OAuthTenantAuthority)
}
